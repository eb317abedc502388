"""fold-in: items and users the serving model did not train on

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05

- ``folded_items``: a new item's embeddings and weights computed from its content under one
  model version (service/fresh/), with their provenance; served until a retrain learns it.
- ``folded_users``: a user's query folded in from interactions posted since training, under
  one model version; ``last_interaction`` tells a stale row from a current one.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "folded_items",
        sa.Column(
            "item_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            sa.ForeignKey("items.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("model_version", sa.String(128), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("emb", sa.LargeBinary(), nullable=True),
        sa.Column("weights", sa.LargeBinary(), nullable=True),
        sa.Column("provenance", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_index("ix_folded_items_updated_at", "folded_items", ["updated_at"])
    op.create_table(
        "folded_users",
        sa.Column(
            "user_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            sa.ForeignKey("users.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("model_version", sa.String(128), primary_key=True),
        sa.Column("emb", sa.LargeBinary(), nullable=False),
        sa.Column("items", sa.Integer(), nullable=False),
        sa.Column("last_interaction", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("folded_users")
    op.drop_index("ix_folded_items_updated_at", table_name="folded_items")
    op.drop_table("folded_items")
