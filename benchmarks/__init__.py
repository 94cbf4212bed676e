"""ftx benchmarks stage."""
