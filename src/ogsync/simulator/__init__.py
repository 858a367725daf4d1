"""A faithful local Ordergroove REST API, for tests, the demo and benchmarks."""
