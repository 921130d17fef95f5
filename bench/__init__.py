"""Benchmarks on the embedded AWS: `make bench`. They print figures; they assert nothing."""
