"""Every SQL query of the service, one module per resource. Functions take a Session and
keyword-only arguments; this package re-exports them, so callers write ``crud.get_job(...)``.

    users.py         upsert, search by prefix
    items.py         catalogue rows, serving filters, content vectors (item_features)
    interactions.py  idempotent ingestion, what was ingested since a time
    models.py        model versions and their status changes
    jobs.py          job rows and the guarded status updates of the job lifecycle
    api_keys.py      API key rows (hashing and roles: service/auth.py)
    catalogue.py     which dataset the database holds (one catalogue per database)

Bulk upserts of a bundle's users and items live in ``service/db/bulk.py`` (driver-level, fast);
the SQL <-> dataset bundle conversions in ``service/db/seed.py`` and ``service/db/snapshot.py``.
"""

from service.db.crud.api_keys import add_api_key, api_key_by_prefix, list_api_keys, touch_api_key
from service.db.crud.catalogue import (
    catalogue_dataset,
    claim_catalogue,
    get_catalogue,
    replace_catalogue,
)
from service.db.crud.common import as_utc
from service.db.crud.interactions import (
    IngestResult,
    add_interactions,
    ingest_interactions,
    interactions_since,
)
from service.db.crud.items import (
    feature_dims,
    get_item,
    item_filter_rows,
    item_titles,
    items_watermark,
    pending_texts,
    store_vectors,
    update_item,
    upsert_item,
    upsert_items,
)
from service.db.crud.jobs import (
    OPEN_JOB_STATUSES,
    cancel_queued,
    claim_job,
    count_jobs_by_status,
    create_job,
    finish_job,
    get_job,
    list_jobs,
    open_job,
    queued_job_ids,
    sweep_stale_jobs,
    update_job,
)
from service.db.crud.models import (
    active_model,
    active_version,
    get_model,
    list_models,
    mark_active,
    mark_failed,
    mark_rejected,
    model_by_path,
    newest_ready,
    save_model,
)
from service.db.crud.users import find_users, upsert_users

__all__ = [
    "IngestResult",
    "OPEN_JOB_STATUSES",
    "active_model",
    "active_version",
    "add_api_key",
    "add_interactions",
    "api_key_by_prefix",
    "as_utc",
    "cancel_queued",
    "catalogue_dataset",
    "claim_catalogue",
    "claim_job",
    "count_jobs_by_status",
    "create_job",
    "feature_dims",
    "find_users",
    "finish_job",
    "get_catalogue",
    "get_item",
    "get_job",
    "get_model",
    "ingest_interactions",
    "interactions_since",
    "item_filter_rows",
    "item_titles",
    "items_watermark",
    "list_api_keys",
    "list_jobs",
    "list_models",
    "mark_active",
    "mark_failed",
    "mark_rejected",
    "model_by_path",
    "newest_ready",
    "open_job",
    "pending_texts",
    "queued_job_ids",
    "sweep_stale_jobs",
    "replace_catalogue",
    "save_model",
    "store_vectors",
    "touch_api_key",
    "update_item",
    "update_job",
    "upsert_item",
    "upsert_items",
    "upsert_users",
]
