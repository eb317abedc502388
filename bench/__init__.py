"""Benchmarks of MARGO, run from the repository root as ``python -m bench.<name>``.

Every script shares ``bench.harness`` (run store, process pool, slot locks, machine notes,
report writer) and writes JSON + a markdown table (+ figures) to ``bench/results/``.
"""
