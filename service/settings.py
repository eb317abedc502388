"""Service settings: one pydantic-settings class, read from ``MARGO_*`` environment variables.

Nothing is read at import time: call :func:`get_settings` (cached) or build ``Settings(...)``
directly in tests and pass it to ``create_app``.
"""

from __future__ import annotations

from enum import StrEnum
from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite:///var/margo.db"
"""Embedded default: a SQLite file under ./var (created on ``margo db upgrade``)."""

DEFAULT_MODEL_DIR = "var/models"
"""Where ``margo train --out`` writes bundles; scanned at start-up."""


class GpuMode(StrEnum):
    """Whether the FAISS index may use a GPU."""

    AUTO = "auto"  # use one when faiss.get_num_gpus() > 0
    OFF = "off"


class IndexKind(StrEnum):
    """FAISS index kinds (service/index.py)."""

    FLAT = "flat"  # exact; below ann_threshold_items
    IVF = "ivf"  # IVF-Flat, inner product
    HNSW = "hnsw"  # HNSW-Flat, inner product


class LogFormat(StrEnum):
    """How the service writes its log lines (service/log_config.py)."""

    JSON = "json"
    TEXT = "text"


class IvfStore(StrEnum):
    """How an IVF index keeps the vectors it scans (candidates are re-scored exactly from the
    float32 vectors either way)."""

    FLAT = "flat"  # float32
    FP16 = "fp16"  # half the memory traffic per scanned vector


class Settings(BaseSettings):
    """Every knob of the service. Units are in the names (``_s`` seconds, ``_items`` counts)."""

    model_config = SettingsConfigDict(env_prefix="MARGO_", extra="forbid")

    # -- storage -------------------------------------------------------------------------
    database_url: str = DEFAULT_DATABASE_URL
    redis_url: str | None = None
    model_dir: Path = Path(DEFAULT_MODEL_DIR)
    db_connect_timeout_s: int = Field(5, ge=1)
    """PostgreSQL: give up opening a connection after this long (an unanswering server is a
    503 or, at start-up, one line and exit 2, not a hang)."""
    db_statement_timeout_s: float = Field(30.0, ge=0)
    """PostgreSQL: the server cancels an API request's statement running longer
    (``statement_timeout``); 0 = none. Bulk work (registration, retrain snapshots, CLI
    commands) has no statement limit."""
    db_pool_timeout_s: float = Field(2.0, gt=0)
    """How long a request waits for a free SQL connection (or for SQL on the key check)
    before it answers 503 with ``Retry-After``."""
    db_busy_timeout_s: float = Field(10.0, ge=0)
    """SQLite: how long bulk work (CLI commands, job workers, registration) waits for the
    database lock; an API request waits at most ``db_answer_timeout_s``, then answers 503."""
    db_answer_timeout_s: float = Field(1.5, gt=0)
    """PostgreSQL: a request waiting on a server that has stopped answering (TCP open, no
    reply) gets 503 with ``Retry-After`` within about this long, on open pooled connections
    too (service/db/watchdog.py); a slow statement on a server that answers is bounded by
    the statement timeout instead."""
    db_lock_timeout_s: float = Field(5.0, ge=0)
    """PostgreSQL: an API statement waiting longer for a lock (``lock_timeout``) is cancelled,
    a 503 with ``Retry-After``; 0 = none."""

    # -- index ---------------------------------------------------------------------------
    ann_threshold_items: int = Field(20_000, ge=0)
    """Catalogues with at least this many items get an ANN index, smaller ones a flat one."""
    ann_kind: IndexKind = IndexKind.IVF
    """ANN index above the threshold: ivf (default, see service/index.py) or hnsw."""
    ivf_lists: int = Field(0, ge=0)
    """IVF k-means lists; 0 = sqrt(n_items)."""
    ivf_store: IvfStore = IvfStore.FP16
    """fp16: IVF search 0.81x the float32 time at 100k items, 0.67x at 1M, same recall@20
    (bench/results/serve_load.md); ``flat`` keeps float32."""
    ivf_nprobe: int = Field(12, ge=1)
    """IVF lists scanned per query (more for deep pages). 12: recall@20 0.989 at 1M items
    and 0.979 at 100k on the planted-cluster benchmark (bench/results/serve_load.md)."""
    hnsw_m: int = Field(32, ge=4, le=128)
    hnsw_ef_construction: int = Field(40, ge=8)
    hnsw_ef_search: int = Field(128, ge=8)
    candidate_pool: int = Field(128, ge=16)
    """First ANN fetch size, before the user's seen items are added (see service/index.py)."""
    ann_pool_max: int = Field(4096, ge=16)
    """Largest ANN fetch; a ranking that needs more is finished by exact search."""
    exact_subset_max_items: int = Field(20_000, ge=0)
    """Category filters matching at most this many items are scored exactly on that subset."""
    faiss_threads: int = Field(1, ge=1)
    """OpenMP threads per process; scale with uvicorn workers instead (shared cores stall)."""
    gpu: GpuMode = GpuMode.AUTO
    index_cache_dir: Path | None = None
    """Where to keep built indexes when a bundle directory is read-only (default: beside it)."""

    # -- serving -------------------------------------------------------------------------
    low_confidence_positives: int = Field(5, ge=0)
    """Items with fewer training positives have low-confidence reliability weights."""
    poll_interval_s: float = Field(2.0, gt=0)
    """How often each process checks SQL for a newly activated model and catalogue edits."""
    load_on_startup: bool = True
    """Scan the model directory and load the active (or newest ready) model at start-up."""

    foldin_max_items: int = Field(10_000, ge=0)
    """Items folded in since training (new items served before a retrain) each process
    holds; past it the one folded longest ago waits for the next retrain. 0: no item
    fold-in. Memory: about 8 x M x d bytes per item (M modalities, d dims)."""
    foldin_max_users: int = Field(50_000, ge=0)
    """Folded user queries each process keeps in memory (LRU; the rest are read back from
    SQL on the user's next request). About 4 x M x d bytes per user."""
    foldin_write_users: int = Field(200, ge=0)
    """Users of POST /interactions batches waiting to be folded after the answer (a queue per
    process, folded in batches of at most this many; a user written again while waiting is
    folded once); past it the longest waiting fold on their next request. 0: none."""

    # -- access --------------------------------------------------------------------------
    public_reads: bool = False
    """Let GET endpoints answer without an API key (``make demo`` sets it; compose does not).
    Writes need a ``write`` key and retraining/activation an ``admin`` key either way."""
    api_key_cache_ttl_s: float = Field(10.0, ge=0)
    """How long a process trusts a key it verified; a revoked key stops working within this
    time. 0: every request with a key reads SQL."""
    max_body_bytes: int = Field(16 * 1024 * 1024, ge=0)
    """Largest request body accepted (bytes); a larger one is answered 413 before it is read
    whole. 0: no limit."""
    client_header_timeout_s: float = Field(10.0, gt=0)
    """``margo serve``: a request's headers must arrive within this (from the connection's
    opening or the request's first byte), else 408 and close (slow-header clients)."""
    client_body_timeout_s: float = Field(10.0, gt=0)
    """``margo serve``: a request body that stalls longer between two reads closes the
    connection."""
    max_header_bytes: int = Field(64 * 1024, ge=1024)
    """``margo serve``: larger request headers are answered 431 and the connection closed."""
    keep_alive_timeout_s: int = Field(5, ge=1)
    """``margo serve``: an idle keep-alive connection is closed after this long."""

    # -- observability -------------------------------------------------------------------
    log_format: LogFormat = LogFormat.JSON
    """``json`` (one object per line, for log shippers) or ``text`` (for a terminal)."""
    log_requests: bool = True
    """One log line per request (request id, route, status, duration); never headers."""
    metrics_enabled: bool = True
    """Serve Prometheus metrics on ``/metrics`` and count requests."""

    # -- feedback and retraining (service/jobs/) ------------------------------------------
    retrain_tolerance: float = Field(0.02, ge=0, lt=1)
    """Activation gate: a retrained model goes live only if its validation Recall@20 is at
    least (1 - tolerance) x that of the active model on the same snapshot."""
    snapshot_dir: Path = Path("var/snapshots")
    """Where a retrain writes the dataset bundle it builds from SQL (one folder per job)."""
    queue_name: str = "margo-retrain"
    """RQ queue of retraining jobs (used when ``redis_url`` is set)."""
    job_timeout_s: int = Field(6 * 3600, ge=60)
    """RQ kills a job running longer than this (the job is then marked failed)."""
    job_heartbeat_s: float = Field(5.0, gt=0)
    """How often a running job proves it is alive (``jobs.heartbeat_at``)."""
    job_stale_s: float = Field(60.0, gt=0)
    """A running job silent for this long is marked failed (its worker died)."""
    train_threads: int | None = Field(None, ge=1)
    """torch threads of a training job; unset: torch's default (all cores)."""
    text_modalities: list[str] = ["text"]
    """Modalities whose content may be sent as raw text (encoded with all-MiniLM-L6-v2)."""

    # -- cache ---------------------------------------------------------------------------
    cache_enabled: bool = True
    cache_size: int = Field(10_000, ge=0)
    """In-process LRU capacity (responses), used when no Redis URL is set."""
    cache_ttl_s: int = Field(300, ge=1)
    cache_prefix: str = "margo:"
    """Prefix of every Redis key and channel this service writes."""

    @field_validator("redis_url", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return value or None

    @field_validator("database_url")
    @classmethod
    def _psycopg_driver(cls, value: str) -> str:
        """Accept plain ``postgresql://`` URLs and use psycopg 3, the driver we ship."""
        if value.startswith("postgres://"):
            value = "postgresql://" + value[len("postgres://") :]
        if value.startswith("postgresql://"):
            value = "postgresql+psycopg://" + value[len("postgresql://") :]
        return value


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
