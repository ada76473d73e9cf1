import Foundation

protocol Shape {
    func area() -> Double
}

struct Circle: Shape {
    let radius: Double

    func area() -> Double {
        return Double.pi * radius * radius
    }
}

class Canvas {
    private var shapes: [Shape] = []

    init() {}

    func add(_ shape: Shape) {
        shapes.append(shape)
    }

    func totalArea() -> Double {
        shapes.reduce(0) { $0 + $1.area() }
    }
}

func main() {
    let c = Canvas()
    c.add(Circle(radius: 1))
    print(c.totalArea())
}
