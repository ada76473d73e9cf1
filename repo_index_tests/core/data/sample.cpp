#include <string>
#include <vector>

namespace geo {
namespace shapes {

class Polygon {
 public:
  explicit Polygon(std::vector<double> sides) : sides_(std::move(sides)) {}

  double perimeter() const {
    double total = 0;
    for (double s : sides_) total += s;
    return total;
  }

  std::string name() const;

 private:
  std::vector<double> sides_;
};

std::string Polygon::name() const { return "polygon"; }

template <typename T>
T clamp(T value, T lo, T hi) {
  return value < lo ? lo : (value > hi ? hi : value);
}

}  // namespace shapes

double area(double w, double h) { return w * h; }

}  // namespace geo

int main() { return geo::area(2, 3) > 0 ? 0 : 1; }
