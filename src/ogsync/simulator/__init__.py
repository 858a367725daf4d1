"""A faithful local Ordergroove REST API, for tests, the demo and benchmarks."""

# The simulator's bulk key, unless one is given (`--api-key`).
DEFAULT_API_KEY = "sim-bulk-key"
