package com.example

import kotlin.math.sqrt

data class Vec(val x: Double, val y: Double) {
    fun length(): Double = sqrt(x * x + y * y)

    operator fun plus(other: Vec): Vec = Vec(x + other.x, y + other.y)

    companion object {
        fun zero() = Vec(0.0, 0.0)
    }
}

object Registry {
    private val items = mutableListOf<Vec>()

    fun register(v: Vec) {
        items.add(v)
    }
}

fun Vec.scaled(k: Double): Vec = Vec(x * k, y * k)

fun main() {
    val v = Vec(3.0, 4.0)
    println(v.length())
}
