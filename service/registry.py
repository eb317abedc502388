"""Model registry: register bundles, activate versions, and hot-swap the live model.

The live model is one reference (``Registry.current``). A request reads it once and keeps that
object to the end, so a swap never changes a model under a request in flight. Activation
loads the new bundle and index first (on a worker thread; the event loop keeps serving the old
model), then records it in SQL, then swaps the reference. A bundle that fails to load is
marked ``failed`` and the old model stays live.

Other API processes learn of an activation by polling ``model_versions`` every
``poll_interval_s`` and, with Redis, from a pub/sub message that wakes the poller at once.
The same poller applies catalogue edits (hidden flags, categories) and newly ingested
interactions to the live model's filters, and runs the periodic tasks others add
(:meth:`Registry.add_poll_task`: the stale-job sweep of service/jobs/lifecycle.py).
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as SATimeoutError
from sqlalchemy.orm import Session

from service.cache import ResponseCache
from service.db import crud, seed
from service.db.catalogue import check_catalogue
from service.db.crud.foldin import drop_other_versions
from service.db.session import Database
from service.db.tables import ModelStatus, ModelVersion, utcnow
from service.errors import BundleMissing, Conflict, ModelLoadError, NotFound
from service.events import EventBus
from service.index import ItemIndex, bundle_index
from service.live import LiveModel, parse_time
from service.settings import Settings
from trainer.bundle import MANIFEST, ModelBundle, load_bundle
from trainer.errors import BundleError, MargoError

log = logging.getLogger(__name__)

RETRY_FAILED_LOAD_S = 60.0
"""A poller that could not load the active version waits this long before trying again."""

_LOADABLE = {ModelStatus.READY.value, ModelStatus.ACTIVE.value, ModelStatus.RETIRED.value}


@dataclass(frozen=True)
class Registered:
    """A registered version with the bundle verified at registration (and its index, when
    built), so activating it in the same process neither hashes nor reads them again."""

    row: ModelVersion
    bundle: ModelBundle
    index: ItemIndex | None = None


class Registry:
    def __init__(
        self, settings: Settings, db: Database, cache: ResponseCache, events: EventBus
    ) -> None:
        self.settings = settings
        self.db = db
        self.cache = cache
        self.events = events
        self._current: LiveModel | None = None
        self._activation = threading.RLock()
        self._poll_tasks: list[Callable[[], None]] = []
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._load_failures: dict[str, float] = {}  # version -> monotonic time of failure
        self.started = threading.Event()  # set once the start-up load has finished

    # -- the live model ----------------------------------------------------------------------
    @property
    def current(self) -> LiveModel | None:
        return self._current

    def _swap(self, live: LiveModel) -> None:
        old, self._current = self._current, live
        # A bundle brings millions of long-lived objects (ids, metadata): move them out of the
        # cyclic collector's reach, or its full passes stall requests for 100+ ms. They hold
        # no reference cycles, so reference counting still frees them after a swap.
        gc.freeze()
        log.info("serving model %s (was %s)", live.version, old.version if old else None)

    # -- registration ----------------------------------------------------------------------
    def register(
        self,
        path: str | Path,
        *,
        activate: bool = False,
        build_index: bool = False,
        replace_catalogue: bool = False,
    ) -> ModelVersion:
        """Verify a bundle, upsert its users and items, record it as ``ready``.

        A corrupt bundle is recorded as ``failed`` (with the reason in ``note``) and the
        BundleError is raised again. A bundle of another dataset than the database's
        catalogue is refused (CatalogueMismatch) unless ``replace_catalogue``, which drops the
        old catalogue's users, items and interactions, fails its model versions for good and
        activates this one.
        """
        new = self.register_verified(
            path, build_index=build_index, replace_catalogue=replace_catalogue
        )
        if activate or replace_catalogue:
            return self.activate(new.row.version, verified=new)
        return new.row

    def register_verified(
        self,
        path: str | Path,
        *,
        build_index: bool = False,
        replace_catalogue: bool = False,
        items_from_sql: bool = False,
    ) -> Registered:
        """:meth:`register`, returning the verified bundle (and index) for the caller to use.

        ``items_from_sql``: the bundle was trained on a snapshot of this database (a retrain),
        so its items only add missing rows; the stored ones keep every field (metadata the
        dataset cannot carry, edits made while the job ran)."""
        path = Path(path).resolve()
        version = path.name
        with self.db.session() as session:
            existing = crud.get_model(session, version=version)
            if existing is not None and existing.bundle_path != str(path):
                raise Conflict(
                    f"model version {version} is already registered for {existing.bundle_path}; "
                    "give the bundle directory another name"
                )
        try:
            bundle = load_bundle(path, verify=True, mmap=True)  # the one checksum pass
        except BundleError as exc:
            with self.db.session() as session:
                crud.save_model(
                    session,
                    version=version,
                    bundle_path=str(path),
                    status=ModelStatus.FAILED.value,
                    note=str(exc),
                )
            raise
        manifest = bundle.manifest
        started = time.perf_counter()
        with self.db.session() as session:
            check_catalogue(session, manifest.dataset.name, version, replace=replace_catalogue)
            crud.upsert_users(session, external_ids=bundle.user_ids)
            crud.upsert_items(
                session, items=seed.item_rows(bundle), update_existing=not items_from_sql
            )
            if seed.needs_seed(session, manifest, bundle.n_items):  # retraining needs them
                created = parse_time(manifest.created_at) or utcnow()
                seed.seed_from_dataset(session, manifest, path, created)
            status = existing.status if existing is not None else ModelStatus.READY.value
            if status not in _LOADABLE:
                status = ModelStatus.READY.value
            crud.save_model(
                session,
                version=version,
                bundle_path=str(path),
                status=status,
                created_at=parse_time(manifest.created_at) or utcnow(),
                metrics=manifest.metrics,
                dataset_fingerprint=manifest.dataset.fingerprint,
                n_users=bundle.n_users,
                n_items=bundle.n_items,
                model_kind=manifest.model,
                note=None,
            )
        log.info(
            "registered %s (%d items) in %.2fs",
            version,
            bundle.n_items,
            time.perf_counter() - started,
        )
        index = bundle_index(bundle, version, self.settings) if build_index else None
        return Registered(self.get(version), bundle, index)

    def scan_model_dir(self) -> list[str]:
        """Register every bundle under the model directory not registered yet."""
        root = self.settings.model_dir
        if not root.is_dir():
            return []
        added = []
        for path in sorted(p for p in root.iterdir() if (p / MANIFEST).is_file()):
            path = path.resolve()
            with self.db.session() as session:
                if crud.model_by_path(session, bundle_path=str(path)) is not None:
                    continue
            try:
                self.register(path)
                added.append(path.name)
            except (MargoError, Conflict) as exc:
                log.error("not registering %s: %s", path, exc)
            except IntegrityError:  # another process registered it at the same moment
                continue
        return added

    def get(self, version: str) -> ModelVersion:
        with self.db.session() as session:
            row = crud.get_model(session, version=version)
        if row is None:
            raise NotFound(f"no model version {version!r}; see GET /models")
        return row

    def versions(self) -> list[ModelVersion]:
        with self.db.session() as session:
            return list(crud.list_models(session))

    # -- activation ----------------------------------------------------------------------------
    def _load(self, row: ModelVersion, verified: Registered | None = None) -> LiveModel:
        """The version loaded for serving; ``verified`` (registered by this process) is used
        as it is. BundleMissing when its directory is gone, ModelLoadError otherwise."""
        if not Path(row.bundle_path).is_dir():
            raise BundleMissing(
                f"model {row.version} cannot be loaded: its bundle {row.bundle_path} is gone"
            ) from FileNotFoundError(f"{row.bundle_path}: the bundle directory is gone")
        if verified is not None and verified.row.version != row.version:
            verified = None
        try:
            return LiveModel.load(
                version=row.version,
                bundle_path=row.bundle_path,
                settings=self.settings,
                db=self.db,
                bundle=verified.bundle if verified is not None else None,
                index=verified.index if verified is not None else None,
            )
        except (MargoError, OSError, ValueError, RuntimeError, MemoryError) as exc:
            raise ModelLoadError(f"model {row.version} cannot be loaded: {exc}") from exc

    def activate(
        self,
        version: str,
        *,
        guard: Callable[[Session], None] | None = None,
        verified: Registered | None = None,
    ) -> ModelVersion:
        """Load ``version``, make it the active one in SQL, swap it in, tell other processes.

        ``guard`` runs inside the transaction that marks the version active, before it does;
        it raises to abort (nothing changes) and may write rows that must commit together
        with the activation (a retrain job's terminal status). ``verified``: what
        :meth:`register_verified` returned for this version (no second checksum pass).
        """
        with self._activation:
            row = self.get(version)
            if row.status not in _LOADABLE:
                raise Conflict(
                    f"model {version} is {row.status}"
                    + (f" ({row.note})" if row.note else "")
                    + "; only ready, active or retired versions can be activated"
                )
            current = self._current
            if current is not None and current.version == version:
                live = current
            else:
                try:
                    live = self._load(row, verified)
                except ModelLoadError as exc:
                    with self.db.session() as session:
                        crud.mark_failed(session, version=version, reason=str(exc.__cause__))
                    serving = current.version if current else "nothing"
                    raise type(exc)(f"{exc.detail}; still serving {serving}") from exc
            with self.db.session() as session:
                if guard is not None:
                    guard(session)
                crud.mark_active(session, version=version)
                drop_other_versions(session, keep=version)  # it folds what it lacks itself
            self._swap(live)
        self.events.publish("model_activated", version=version)
        return self.get(version)

    # -- start-up and polling --------------------------------------------------------------------
    def start(self) -> None:
        """Start-up load and the poller (and Redis listener) threads; returns at once."""
        self._spawn("margo-poller", self._run_poller)
        if self.events.enabled:
            self._spawn("margo-events", lambda: self.events.listen(self._on_event, self._stop))

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads.clear()

    def wait_ready(self, timeout: float | None = None) -> bool:
        return self.started.wait(timeout)

    def _spawn(self, name: str, target: Any) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def startup(self) -> None:
        """Register new bundles, then serve the active version or activate the newest ready."""
        if self.settings.load_on_startup:
            self.scan_model_dir()
            with self.db.session() as session:
                active = crud.active_version(session)
                newest = crud.newest_ready(session) if active is None else None
            if newest is not None:
                try:
                    self.activate(newest.version)
                except (ModelLoadError, Conflict) as exc:
                    log.error("start-up activation failed: %s", exc.detail)
        self.poll_once()

    def add_poll_task(self, task: Callable[[], None]) -> None:
        """Run ``task`` on the poller thread after every poll (it keeps its own pace)."""
        self._poll_tasks.append(task)

    def _run_poller(self) -> None:
        try:
            self.startup()
        except Exception:
            log.exception("start-up load failed; the poller keeps trying")
        finally:
            self.started.set()
        while not self._stop.is_set():
            self._wake.wait(self.settings.poll_interval_s)
            self._wake.clear()
            if self._stop.is_set():
                break
            for task in (self.poll_once, *self._poll_tasks):
                name = getattr(task, "__name__", task)
                try:
                    task()
                except (OperationalError, SATimeoutError) as exc:  # SQL down or hung: one line
                    log.warning("%s skipped, database unavailable (%s)", name, type(exc).__name__)
                except Exception:
                    log.exception("%s failed", name)

    def _on_event(self, event: dict[str, Any]) -> None:
        if event.get("event") == "interactions":
            users = [str(u) for u in event.get("users") or ()]
            if (live := self._current) is not None:
                live.users.drop(users)  # folded queries: read from SQL on the next request
            self.cache.invalidate_users(users)
        self._wake.set()

    def _active_row(self) -> ModelVersion | None:
        with self.db.session() as session:
            active = crud.active_version(session)
            return crud.get_model(session, version=active) if active else None

    def _differs(self, row: ModelVersion | None) -> bool:
        current = self._current
        return row is not None and (current is None or current.version != row.version)

    def poll_once(self) -> None:
        """Follow the active version in SQL; apply catalogue and interaction changes."""
        row = self._active_row()
        if self._differs(row):
            with self._activation:
                # read again under the lock: an activation in this process may have committed
                # and swapped since the read above, and that stale row would swap it back
                row = self._active_row()
                failed_at = self._load_failures.get(row.version) if row else None
                retry = failed_at is None or time.monotonic() - failed_at > RETRY_FAILED_LOAD_S
                if row is not None and self._differs(row) and retry:
                    try:
                        self._swap(self._load(row))
                        self._load_failures.pop(row.version, None)
                    except ModelLoadError as exc:
                        self._load_failures[row.version] = time.monotonic()
                        log.error("%s; still serving the previous model", exc.detail)
        live = self._current
        if live is not None:
            live.refresh_folded(self.db)  # before the catalogue: it resolves folded ids
            live.refresh_catalog(self.db)
            live.users.drop(changed := live.refresh_overlay(self.db))
            self.cache.invalidate_users(changed)

    # -- changes made through this process ---------------------------------------------------
    def items_changed(self) -> None:
        live = self._current
        if live is not None:
            live.refresh_folded(self.db)
            live.refresh_catalog(self.db)
        self.events.publish("items_changed")

    def interactions_added(self, user_ids: list[str]) -> None:
        """The overlay and the users' pages at once; their folded queries come after the
        answer (service.fresh.user_sync.fold_after_write); until then a read folds the user."""
        live = self._current
        if live is not None:
            live.refresh_overlay(self.db)
            live.users.drop(user_ids)
        self.cache.invalidate_users(user_ids)
        self.events.publish("interactions", users=user_ids)
