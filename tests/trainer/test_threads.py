"""Thread choice for a run on a shared machine (trainer/threads.py, issue 17.4)."""

import os
import subprocess
import sys

import pytest

from trainer import threads


@pytest.mark.parametrize(
    ("cores", "load", "want"),
    [
        (2, 0.0, 2),  # idle: every core
        (2, 1.0, 2),  # the load is this run itself
        (2, 1.5, 1),  # half a core taken by others: 1.5 free, rounded down
        (2, 14.0, 1),  # a crowded machine: never below one
        (16, 5.0, 12),
        (1, 0.0, 1),
    ],
)
def test_auto_threads_counts_the_free_cores(cores, load, want):
    assert threads.auto_threads(cores, load) == want


def test_explicit_threads_win_and_auto_only_lowers(monkeypatch):
    monkeypatch.setattr(threads, "usable_cores", lambda: 4)
    monkeypatch.setattr(os, "getloadavg", lambda: (40.0, 40.0, 40.0))
    assert threads.choose_threads(3, current=4) == 3
    assert threads.choose_threads(None, current=4) == 1
    monkeypatch.setattr(os, "getloadavg", lambda: (0.5, 0.5, 0.5))
    assert threads.choose_threads(None, current=4) == 4
    assert threads.choose_threads(None, current=1) == 1  # a count set on purpose stands


def _policy_after_import(env: dict[str, str]) -> str:
    code = "import trainer, os; print(os.environ['OMP_WAIT_POLICY'])"
    base = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=base | env, capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


def test_importing_trainer_sets_a_passive_wait_policy_unless_the_user_chose():
    assert _policy_after_import({}) == "PASSIVE"
    assert _policy_after_import({"OMP_WAIT_POLICY": "ACTIVE"}) == "ACTIVE"
