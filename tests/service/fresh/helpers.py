"""Helpers of the fold-in tests (tests/service/test_freshness_*.py): content of the tiny
model's items, new items posted from it, two app instances on one database."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from fastapi.testclient import TestClient

from service.settings import Settings
from tests.service.conftest import start_client
from tests.service.jobs.helpers import api_key

FRESH = "fresh-label"
"""A category only the new items carry: a filter on it ranks them alone."""


@lru_cache(maxsize=4)
def dataset(data_dir: str) -> Any:
    from trainer.data import load_dataset

    return load_dataset(Path(data_dir))


def content_of(data_dir: Path, item_id: str, noise: float = 0.0, seed: int = 0) -> dict:
    """POST /items content: the raw features of a catalogue item (plus a little noise)."""
    data = dataset(str(data_dir))
    row = list(data.item_ids).index(item_id)
    rng = np.random.default_rng(seed)
    out = {}
    for m, feats in data.features.items():
        v = np.asarray(feats[row], dtype=np.float64)
        v = v + noise * rng.standard_normal(v.shape) * (np.abs(v).mean() + 1e-6)
        out[m] = {"vector": v.astype(np.float32).tolist()}
    return out


def new_item(data_dir: Path, item_id: str, like: str, **fields: Any) -> dict:
    return {
        "item_id": item_id,
        "title": f"New {item_id}",
        "categories": [FRESH],
        "content": content_of(data_dir, like, noise=0.05),
        **fields,
    }


def rec_ids(client: TestClient, user: str, **params: Any) -> list[str]:
    r = client.get(f"/users/{user}/recommendations", params={"k": 20, **params})
    assert r.status_code == 200, r.text
    return [i["item_id"] for i in r.json()["items"]]


@contextmanager
def two_apps(
    settings: Settings,
) -> Iterator[tuple[TestClient, TestClient, dict[str, str], dict[str, str]]]:
    """(app a, app b, write headers, admin headers): two API processes' worth of state
    (registry, live model, cache, job threads) on one database."""
    write, admin = api_key(settings, "write"), api_key(settings, "admin")
    with ExitStack() as stack:
        clients = []
        for _ in range(2):
            gen = start_client(settings)
            clients.append(next(gen))
            stack.callback(lambda g=gen: next(g, None))
        yield clients[0], clients[1], write, admin


def eventually(check: Callable[[], Any], timeout: float = 10.0, what: str = "it") -> Any:
    from tests.service.jobs.helpers import wait_for

    return wait_for(check, timeout=timeout, what=what)
