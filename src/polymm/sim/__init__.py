"""Local servers that speak the real venues' formats, for tests, the demo and benchmarks."""
