package example

import scala.collection.mutable

trait Greeter {
  def greet(name: String): String
}

class PoliteGreeter(prefix: String) extends Greeter {
  private val seen = mutable.Set.empty[String]

  def greet(name: String): String = {
    seen += name
    s"$prefix, $name"
  }

  def count: Int = seen.size
}

object Main {
  def main(args: Array[String]): Unit = {
    val g = new PoliteGreeter("Good day")
    println(g.greet("Ada"))
  }
}
