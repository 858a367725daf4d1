"""ogsync: keep a data warehouse in step with a merchant's Ordergroove data."""

__version__ = "0.1.0"
