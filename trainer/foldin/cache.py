"""One fold-in precomputation per model bundle object, kept while the bundle lives."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import TypeVar

from trainer.bundle import ModelBundle

T = TypeVar("T")


def per_bundle(
    cache: dict[int, tuple[weakref.ref, T]], bundle: ModelBundle, make: Callable[[], T]
) -> T:
    """``cache``'s value for ``bundle``, made on first use; the entry leaves with the bundle
    (held weakly: a replaced bundle is not kept alive by its precomputation)."""
    cached = cache.get(id(bundle))
    if cached is not None and cached[0]() is bundle:
        return cached[1]
    made, key = make(), id(bundle)
    cache[key] = (weakref.ref(bundle, lambda _: cache.pop(key, None)), made)
    return made
