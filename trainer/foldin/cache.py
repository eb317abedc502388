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


class BundleBound:
    """A precomputation that reads its bundle's arrays but must not keep the bundle alive (a
    swapped-out model's arrays are freed with it): holds it weakly as ``bundle``."""

    def __init__(self, bundle: ModelBundle) -> None:
        self._bundle = weakref.ref(bundle)

    @property
    def bundle(self) -> ModelBundle:
        """The bundle this was built from (while it is alive)."""
        bundle = self._bundle()
        if bundle is None:
            raise ReferenceError(f"the model bundle of this {type(self).__name__} was released")
        return bundle
