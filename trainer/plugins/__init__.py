"""Training plug-ins for any multimodal model: CKD (ALGORITHMS.md 2) and SEA (ALGORITHMS.md 3).

    margo train --data D --model margo --plugin ckd --plugin sea --out M

``build_plugins`` turns ``cfg.plugins`` into plug-in objects; trainer.train.fit sets them up and
adds their losses to every step. See base.py for the interface. Their options (names, bounds,
the models they need) are TrainConfig fields, checked without torch when a config is built;
this package imports torch only when a plug-in or the interface (``Plugin``, ``StepContext``)
is used, so the CLI and the service can read ``PLUGINS`` without it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from trainer.config import MULTIMODAL_MODELS, PLUGINS

if TYPE_CHECKING:
    from trainer.config import TrainConfig
    from trainer.plugins.base import Plugin, StepContext

__all__ = ["MULTIMODAL_MODELS", "PLUGINS", "Plugin", "StepContext", "build_plugins"]


def __getattr__(name: str) -> Any:
    if name in ("Plugin", "StepContext"):  # the interface needs torch: imported on first use
        from trainer.plugins import base

        return getattr(base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def build_plugins(
    cfg: TrainConfig, *, train_teacher: Callable[..., Any] | None = None
) -> list[Plugin]:
    """The plug-ins ``cfg`` names. ``train_teacher``: the training loop (trainer.train.fit),
    handed to CKD for its teachers, so no plug-in imports the loop that runs it."""
    out: list[Plugin] = []
    for name in cfg.plugins:  # order as given; losses simply add up
        if name == "ckd":
            from trainer.plugins.ckd import CKDPlugin

            out.append(CKDPlugin(train_teacher))
        elif name == "sea":
            from trainer.plugins.sea import SEAPlugin

            out.append(SEAPlugin())
    return out
