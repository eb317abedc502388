"""Registration, activation, rollback, refusal of corrupt bundles, following other processes."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from service.cache import LRUCache
from service.db.migrate import upgrade
from service.db.session import Database
from service.errors import Conflict, ModelLoadError, NotFound
from service.events import EventBus
from service.registry import Registry
from service.settings import Settings
from service.state import redis_client
from tests.service.factories import corrupt, make_bundle
from trainer.errors import BundleError


def make_registry(settings: Settings, client: object | None = None) -> Registry:
    db = Database(settings.database_url)
    events = EventBus(client, prefix=settings.cache_prefix)
    return Registry(settings, db, LRUCache(100), events)


@pytest.fixture
def registry(settings: Settings) -> Iterator[Registry]:
    reg = make_registry(settings)
    yield reg
    reg.stop()
    reg.db.dispose()


def wait_for(check: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return False


def test_register_records_a_ready_version_with_its_facts(
    registry: Registry, tmp_path: Path
) -> None:
    row = registry.register(make_bundle(tmp_path / "v1", n_items=120, n_users=9))
    assert (row.version, row.status, row.n_items, row.n_users) == ("v1", "ready", 120, 9)
    assert row.dataset_fingerprint == "synthetic-0" and row.model_kind == "margo"


def test_register_builds_the_index_beside_the_bundle(registry: Registry, tmp_path: Path) -> None:
    path = make_bundle(tmp_path / "v1")
    registry.register(path, build_index=True)
    assert [p.suffix for p in (path / "index").iterdir()] == [".faiss"]


def test_register_and_activate_hash_the_bundle_once(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import trainer.bundle

    path, other = make_bundle(tmp_path / "v1"), make_bundle(tmp_path / "v2")
    hashed: list[str] = []
    real = trainer.bundle.sha256_file
    monkeypatch.setattr(
        trainer.bundle, "sha256_file", lambda p, *a: hashed.append(Path(p).name) or real(p, *a)
    )
    new = registry.register_verified(path, build_index=True)
    assert new.index is not None and new.bundle.n_items == new.row.n_items
    once = sorted(hashed)
    assert "item_emb.npy" in once and len(once) == len(set(once))
    registry.activate(new.row.version, verified=new)
    assert sorted(hashed) == once  # activation reused the verified bundle and its index
    assert registry.current is not None and registry.current.bundle is new.bundle
    # without it (another process, a rollback) the bundle is verified again
    registry.activate(registry.register(other).version)
    assert len(hashed) == 3 * len(once)


def test_corrupt_bundle_is_recorded_failed(registry: Registry, tmp_path: Path) -> None:
    path = make_bundle(tmp_path / "bad")
    corrupt(path)
    with pytest.raises(BundleError, match="checksum"):
        registry.register(path)
    row = registry.get("bad")
    assert row.status == "failed" and "checksum" in (row.note or "")
    with pytest.raises(Conflict, match="failed"):
        registry.activate("bad")


def test_same_name_from_another_path_is_refused(registry: Registry, tmp_path: Path) -> None:
    registry.register(make_bundle(tmp_path / "a" / "v1"))
    with pytest.raises(Conflict, match="already registered"):
        registry.register(make_bundle(tmp_path / "b" / "v1"))


def test_startup_activates_the_newest_ready_version(registry: Registry, settings: Settings) -> None:
    make_bundle(settings.model_dir / "old", created_at="2024-01-01T00:00:00Z")
    make_bundle(settings.model_dir / "new", created_at="2024-03-01T00:00:00Z", seed=1)
    registry.startup()
    assert registry.current is not None and registry.current.version == "new"
    assert registry.get("old").status == "ready"
    # a second start does not re-register or switch
    registry.startup()
    assert registry.current.version == "new"


def test_activation_and_rollback(registry: Registry, tmp_path: Path) -> None:
    registry.register(make_bundle(tmp_path / "v1"), activate=True)
    registry.register(make_bundle(tmp_path / "v2", seed=1), activate=True)
    assert registry.current.version == "v2"
    assert registry.get("v1").status == "retired"
    registry.activate("v1")
    assert registry.current.version == "v1"
    assert [registry.get(v).status for v in ("v1", "v2")] == ["active", "retired"]
    with pytest.raises(NotFound):
        registry.activate("v9")


def test_bundle_corrupted_after_registration_is_refused(registry: Registry, tmp_path: Path) -> None:
    registry.register(make_bundle(tmp_path / "v1"), activate=True)
    registry.register(make_bundle(tmp_path / "v2", seed=1))
    corrupt(tmp_path / "v2", "user_emb.npy")
    with pytest.raises(ModelLoadError, match="still serving v1"):
        registry.activate("v2")
    assert registry.current.version == "v1"
    assert registry.get("v2").status == "failed"
    assert registry.get("v1").status == "active"


def test_another_process_follows_an_activation_by_polling(
    settings: Settings, tmp_path: Path
) -> None:
    a, b = make_registry(settings), make_registry(settings)
    try:
        a.register(make_bundle(tmp_path / "v1"), activate=True)
        a.register(make_bundle(tmp_path / "v2", seed=1))
        b.start()
        assert wait_for(lambda: b.current is not None and b.current.version == "v1")
        a.activate("v2")
        assert wait_for(lambda: b.current.version == "v2")
    finally:
        for reg in (a, b):
            reg.stop()
            reg.db.dispose()


def test_a_poll_that_read_before_an_activation_does_not_swap_it_back(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The poller reads SQL, then an activation in this process commits and swaps, then the
    poller gets the lock: it must not serve the version it read (seen under load in
    tests/service/test_hot_swap.py as responses from a model deactivated before they started)."""
    registry.register(make_bundle(tmp_path / "v1"), activate=True)
    registry.register(make_bundle(tmp_path / "v2", seed=1), activate=True)
    registry.register(make_bundle(tmp_path / "v3", seed=2))
    stale = registry._active_row()  # v2, as the poller's first read
    reads = iter([stale])
    real = registry._active_row
    # the poller's first read returns the stale row; meanwhile v3 is activated and swapped in
    registry.activate("v3")
    monkeypatch.setattr(registry, "_active_row", lambda: next(reads, None) or real())
    registry.poll_once()
    assert registry.current is not None and registry.current.version == "v3"
    assert registry.get("v3").status == "active"


def test_another_process_follows_catalogue_and_interactions(
    settings: Settings, tmp_path: Path
) -> None:
    from service.db import crud

    a, b = make_registry(settings), make_registry(settings)
    try:
        a.register(make_bundle(tmp_path / "v1"), activate=True)
        b.start()
        assert wait_for(lambda: b.current is not None)
        with a.db.session() as session:
            crud.update_item(session, external_id="i7", hidden=True)
            crud.add_interactions(session, rows=[{"user_id": "u3", "item_id": "i9"}])
        row = b.current.bundle.item_index("i7")
        assert wait_for(lambda: bool(b.current.catalog.hidden[row]))
        assert wait_for(lambda: b.current.overlay.rows("u3") is not None)
        assert b.current.bundle.item_index("i9") in b.current.overlay.rows("u3").tolist()
    finally:
        for reg in (a, b):
            reg.stop()
            reg.db.dispose()


def test_redis_event_wakes_another_process_at_once(
    make_settings: Callable[..., Settings], redis_url: tuple[str, str], tmp_path: Path
) -> None:
    url, prefix = redis_url
    settings = make_settings(poll_interval_s=30.0, redis_url=url, cache_prefix=prefix)
    upgrade(settings.database_url)
    a = make_registry(settings, redis_client(url))
    b = make_registry(settings, redis_client(url))
    try:
        a.register(make_bundle(tmp_path / "v1"), activate=True)
        a.register(make_bundle(tmp_path / "v2", seed=1))
        b.start()
        assert wait_for(lambda: b.current is not None and b.current.version == "v1")
        time.sleep(0.3)  # let b subscribe
        a.activate("v2")
        # the poll interval is 30 s: only the pub/sub message can explain a quick switch
        assert wait_for(lambda: b.current.version == "v2", timeout=5.0)
    finally:
        for reg in (a, b):
            reg.stop()
            reg.db.dispose()
