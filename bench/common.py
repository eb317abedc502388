"""Old name of ``bench.harness``, kept until bench/quality.py and bench/reliability.py import
the harness directly (then this file goes)."""

from typing import Any

from bench.harness import *  # noqa: F403
from bench.harness import add_common_args as _add_common_args


def add_common_args(p: Any, *, jobs: int = 2) -> None:
    _add_common_args(p, jobs=jobs, report_only=False)  # these scripts declare --report-only
