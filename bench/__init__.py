"""Benchmarks of MARGO (``python -m bench.<name>``), on the one harness ``bench.harness``."""
