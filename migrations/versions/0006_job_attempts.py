"""jobs.attempts: how many times a worker has claimed the job

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06

A job whose worker died (no heartbeat for ``job_stale_s``) is queued again by the stale sweep
until it has run ``MAX_ATTEMPTS`` times (service/jobs/lifecycle.py); the count also tells a
worker whether the job it runs is still its own (a late worker of an earlier attempt stops).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "jobs", sa.Column("attempts", sa.Integer(), nullable=False, server_default="0")
    )


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("attempts")
