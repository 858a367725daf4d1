"""Helpers for tests and benchmarks: throwaway services to run ogsync against."""
