"""API schemas of fold-in (service/fresh/): what folded items and users show, and what
``POST /items`` answers. Re-exported by service/schemas.py."""

from __future__ import annotations

from pydantic import BaseModel, Field


class FoldedNeighbour(BaseModel):
    item_id: str
    similarity: float = Field(description="cosine similarity of the modality's content")


class FoldedItemInfo(BaseModel):
    """Provenance of a folded item (service/fresh/fold.py)."""

    model_version: str = Field(description="the model it was folded into")
    weight_prior: str = Field(
        description="where its modality weights came from: 'neighbours' (the learned weights "
        "of its nearest catalogue items) or 'catalogue' (the catalogue's mean)"
    )
    neighbours: dict[str, list[FoldedNeighbour]] = Field(
        description="per modality, the nearest catalogue items its embedding was built from"
    )
    interactions: int = Field(
        0, description="users whose interactions posted since training its embedding was "
        "folded from as well (0: from its content alone)"
    )  # fmt: skip


class FoldedUserInfo(BaseModel):
    interactions: int = Field(description="interacted items the folded query was built from")
    prior: str = Field(
        description="'trained' (a known user's own vector) or the prior of a new user"
    )


class ItemFoldInStatus(BaseModel):
    status: str = Field(
        description="'folded' (recommendable now), 'pending' (text being encoded), "
        "'waiting' (content missing), 'failed' or 'unavailable' (the model has no fold-in); "
        "for an item the model trained on, 'updated' (its embedding recomputed with the users "
        "who interacted with it since training)"
    )
    detail: str | None = Field(None, description="why it is not folded, when it is not")
    provenance: FoldedItemInfo | None = None


class ItemsWriteOut(BaseModel):
    created: list[str]
    updated: list[str]
    recommendable: str = Field(description="when the written items can be recommended")
    folded: list[str] = Field(
        default_factory=list,
        description="new items folded into the active model now (recommendable within seconds)",
    )
    pending: dict[str, str] = Field(
        default_factory=dict, description="new items not folded now, and why (text being "
        "encoded by job_id, content missing)"
    )  # fmt: skip
    job_id: str | None = Field(None, description="the job encoding text content, if any")
