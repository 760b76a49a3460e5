"""One copy of each helper the test tiers and the benchmarks share, one module per family."""
