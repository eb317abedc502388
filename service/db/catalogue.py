"""One catalogue per database: the rule registration applies (rows: service/db/crud/catalogue.py).

Item and user ids are only unique within a dataset: MovieLens item "1" and a synthetic item "1"
are different items. So the first registered model names the database's catalogue after its
dataset (``manifest.dataset.name``), and a model of another dataset is refused with a line
naming both, unless the caller asks to replace the catalogue.
"""

from __future__ import annotations

import logging

from sqlalchemy.orm import Session

from service.db import crud
from service.errors import CatalogueMismatch

log = logging.getLogger(__name__)


def check_catalogue(session: Session, dataset: str | None, version: str, *, replace: bool) -> None:
    """Claim, match or (``replace``) replace the catalogue for model ``version`` of ``dataset``.

    A bundle that names no dataset (older exports, hand-made bundles) cannot be checked and is
    let through; an unnamed catalogue adopts the first name it meets.
    """
    current = crud.claim_catalogue(session, dataset=dataset, version=version)
    if dataset is None or current.dataset == dataset:
        return
    if current.dataset is None:
        current.dataset, current.set_by = dataset, version
        return
    if not replace:
        raise CatalogueMismatch(
            f"model {version} was trained on dataset {dataset!r} but this database holds "
            f"the catalogue of dataset {current.dataset!r} (since model {current.set_by}): "
            "their ids would mix; use another database (MARGO_DATABASE_URL) or "
            "`margo models register --replace-catalogue`"
        )
    old = current.dataset
    failed = crud.replace_catalogue(session, dataset=dataset, version=version)
    log.warning(
        "catalogue replaced: dataset %r -> %r by model %s (%d old model versions failed)",
        old, dataset, version, failed,
    )  # fmt: skip
