"""Shared test fixtures."""

from __future__ import annotations

import os
import zlib

import numpy as np
import pytest


@pytest.fixture
def fake_encoder(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Replace MiniLM with a deterministic hash embedding; returns the list of encoded batches.

    Importer tests use it so they do not pay for loading the model (one test in
    test_data_text.py runs the real one).
    """
    calls: list[list[str]] = []

    def encode(texts: list[str], batch_size: int = 256, progress: bool = True) -> np.ndarray:
        calls.append(list(texts))
        rows = [np.random.default_rng(zlib.crc32(t.encode())).standard_normal(384) for t in texts]
        out = np.asarray(rows, dtype=np.float32).reshape(len(texts), 384)
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    monkeypatch.setattr("trainer.data.text.encode_texts", encode)
    return calls


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> object:
    """In CI (MARGO_TEST_REQUIRE_SERVICES=1) a PostgreSQL/Redis test that would skip fails."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("MARGO_TEST_REQUIRE_SERVICES") == "1":
        lr = report.longrepr
        reason = str(lr[-1]) if isinstance(lr, tuple) else str(lr)
        if "MARGO_TEST_" in reason:
            report.outcome = "failed"
            report.longrepr = f"required service missing in CI: {reason}"
