"""One catalogue per database (SQLite and PostgreSQL): a model of another dataset is refused
with one line naming both, unless it replaces the catalogue explicitly."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from service import cli
from service.cache import NullCache
from service.db import crud
from service.db.migrate import upgrade
from service.db.session import Database
from service.db.snapshot import take_snapshot
from service.db.tables import Interaction, Item, ModelStatus, User
from service.errors import CatalogueMismatch
from service.events import EventBus
from service.registry import Registry
from service.settings import Settings
from tests.service.factories import make_bundle


@pytest.fixture(params=["sqlite", "postgres"])
def settings(request: pytest.FixtureRequest, make_settings: Callable[..., Settings]) -> Settings:
    overrides = {}
    if request.param == "postgres":
        overrides["database_url"] = request.getfixturevalue("postgres_db")
    built = make_settings(**overrides)
    upgrade(built.database_url)
    return built


@pytest.fixture
def registry(settings: Settings) -> Iterator[Registry]:
    events = EventBus(None, prefix="t:")
    reg = Registry(settings, Database(settings.database_url), NullCache(), events)
    yield reg
    reg.db.dispose()


def bundle(path: Path, dataset: str | None, *, n_users: int = 40, seed: int = 0) -> Path:
    info = {"fingerprint": f"fp-{dataset}-{seed}"} | ({"name": dataset} if dataset else {})
    return make_bundle(path, n_users=n_users, seed=seed, extra_manifest={"dataset": info})


def counts(db: Database) -> tuple[int, int]:
    with db.session() as session:
        users = session.scalar(select(func.count()).select_from(User))
        items = session.scalar(select(func.count()).select_from(Item))
    return users, items


def test_the_first_model_names_the_catalogue_and_models_of_it_register(
    registry: Registry, tmp_path: Path
) -> None:
    registry.register(bundle(tmp_path / "v1", "shop"))
    registry.register(bundle(tmp_path / "v2", "shop", seed=1))
    with registry.db.session() as session:
        row = crud.get_catalogue(session)
        assert (row.dataset, row.set_by) == ("shop", "v1")
    assert {v.version for v in registry.versions()} == {"v1", "v2"}


def test_a_model_of_another_dataset_is_refused_and_writes_nothing(
    registry: Registry, tmp_path: Path
) -> None:
    registry.register(bundle(tmp_path / "v1", "shop"), activate=True)
    before = counts(registry.db)
    with pytest.raises(CatalogueMismatch) as err:
        registry.register(bundle(tmp_path / "ml", "movielens", n_users=55))
    assert "dataset 'movielens'" in err.value.detail and "dataset 'shop'" in err.value.detail
    assert "--replace-catalogue" in err.value.detail
    assert err.value.status_code == 409 and err.value.code == "catalogue_mismatch"
    assert counts(registry.db) == before
    assert {v.version for v in registry.versions()} == {"v1"}


def test_replace_catalogue_drops_the_old_one_and_activates_the_new(
    registry: Registry, tmp_path: Path
) -> None:
    registry.register(bundle(tmp_path / "v1", "shop"), activate=True)
    row = registry.register(
        bundle(tmp_path / "ml", "movielens", n_users=55), replace_catalogue=True
    )
    assert row.status == ModelStatus.ACTIVE.value
    assert counts(registry.db) == (55, 300)
    old = registry.get("v1")
    assert old.status == ModelStatus.FAILED.value and "catalogue replaced" in old.note
    with registry.db.session() as session:
        assert crud.catalogue_dataset(session) == "movielens"


def test_unnamed_bundles_pass_and_an_unnamed_catalogue_adopts_the_first_name(
    registry: Registry, tmp_path: Path
) -> None:
    registry.register(bundle(tmp_path / "v0", None))
    registry.register(bundle(tmp_path / "v1", "shop", seed=1))
    registry.register(bundle(tmp_path / "v2", None, seed=2))
    with registry.db.session() as session:
        assert crud.catalogue_dataset(session) == "shop"
    with pytest.raises(CatalogueMismatch):
        registry.register(bundle(tmp_path / "v3", "other", seed=3))


def test_a_snapshot_is_named_after_the_catalogue(registry: Registry, tmp_path: Path) -> None:
    registry.register(bundle(tmp_path / "v1", "shop"))
    with registry.db.session() as session:
        users = session.scalars(select(User.id).order_by(User.id).limit(5)).all()
        items = session.scalars(select(Item.id).order_by(Item.id).limit(5)).all()
        session.add_all(
            Interaction(user_id=u, item_id=i, timestamp=k, split=0)
            for k, (u, i) in enumerate((u, i) for u in users for i in items)
        )
    snap = take_snapshot(registry.db, tmp_path / "snap")
    assert (snap.path / "shop.inter").is_file()


def test_cli_refusal_is_one_line_with_exit_code_2(
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    from service.settings import get_settings

    monkeypatch.setenv("MARGO_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("MARGO_MODEL_DIR", str(settings.model_dir))
    get_settings.cache_clear()
    try:
        assert cli.main(["models", "register", str(bundle(tmp_path / "v1", "shop"))]) == 0
        capsys.readouterr()
        other = str(bundle(tmp_path / "ml", "movielens"))
        assert cli.main(["models", "register", other]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "'movielens'" in err[0] and "'shop'" in err[0]
        assert cli.main(["models", "register", other, "--replace-catalogue"]) == 0
        assert "model ml: active" in capsys.readouterr().out
    finally:
        get_settings.cache_clear()
