"""feedback and retraining: interaction split labels, idempotent ingestion, job heartbeats

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24

- ``interactions.split``: the train/valid/test label a row had in the dataset it came from
  (NULL for rows ingested through the API; the snapshot labels those by a hash of the pair),
  so a retrain evaluates the active model on pairs it never trained on.
- a unique index on (user_id, item_id, timestamp): re-sending a record writes nothing.
- ``jobs.heartbeat_at`` and ``jobs.cancel_requested_at``: a worker that stops beating is
  declared dead; a cancel request is seen by the running job at its next epoch.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("interactions") as batch:
        batch.add_column(sa.Column("split", sa.SmallInteger(), nullable=True))
    # rows ingested twice before this revision: keep the first of each record
    op.execute(
        "DELETE FROM interactions WHERE id NOT IN (SELECT MIN(id) FROM interactions "
        "GROUP BY user_id, item_id, timestamp)"
    )
    op.create_index(
        "uq_interactions_record", "interactions", ["user_id", "item_id", "timestamp"], unique=True
    )
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("heartbeat_at", TS, nullable=True))
        batch.add_column(sa.Column("cancel_requested_at", TS, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("cancel_requested_at")
        batch.drop_column("heartbeat_at")
    op.drop_index("uq_interactions_record", table_name="interactions")
    with op.batch_alter_table("interactions") as batch:
        batch.drop_column("split")
