"""Helpers for tests and benchmarks: throwaway services to run ogsync against."""

from datetime import timedelta

# Tests and benchmarks move the simulator's clock on by hours or months: the runs they start
# trust it within ten years, unless a test sets the tolerance itself (the check has tests of its
# own).
SIMULATED_CLOCK_TOLERANCE = timedelta(days=3650)
