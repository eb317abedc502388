"""one catalogue per database: the dataset whose users and items the database holds

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05

A database serves one catalogue. Registering a model of another dataset would mix two id
spaces (item "1" of MovieLens and item "1" of a synthetic set are different items), so the
first registered model names the catalogue here and later ones must match it (or replace it
explicitly: ``margo models register --replace-catalogue``). A database upgraded with models
already registered adopts the dataset of the next model registered.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "catalogue",
        sa.Column("id", sa.SmallInteger(), primary_key=True, autoincrement=False),
        sa.Column("dataset", sa.String(255), nullable=True),
        sa.Column("set_by", sa.String(128), nullable=False),
        sa.Column("set_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("id = 1", name="ck_catalogue_single_row"),
    )


def downgrade() -> None:
    op.drop_table("catalogue")
