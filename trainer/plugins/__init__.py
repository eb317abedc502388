"""Training plug-ins for any multimodal model: CKD (ALGORITHMS.md 2) and SEA (ALGORITHMS.md 3).

    margo train --data D --model margo --plugin ckd --plugin sea --out M

``build_plugins`` turns ``cfg.plugins`` into plug-in objects; trainer.train.fit sets them up and
adds their losses to every step. See base.py for the interface.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trainer.errors import ConfigError
from trainer.plugins.base import Plugin, StepContext

if TYPE_CHECKING:
    from trainer.config import TrainConfig

PLUGINS = ("ckd", "sea")
# models with content channels a plug-in can work on (bpr and lightgcn have only IDs)
MULTIMODAL_MODELS = ("vbpr", "fusion-sum", "fusion-learned", "margo")

__all__ = ["PLUGINS", "Plugin", "StepContext", "build_plugins", "check_plugins"]


def check_plugins(cfg: TrainConfig) -> None:
    """Config-level checks (called from TrainConfig.validate)."""
    names = list(cfg.plugins)
    for n in names:
        if n not in PLUGINS:
            raise ConfigError(f"--plugin: unknown plug-in {n!r}; choose from {', '.join(PLUGINS)}")
    if len(set(names)) != len(names):
        raise ConfigError(f"--plugin: each plug-in at most once, got {names}")
    if names and cfg.model not in MULTIMODAL_MODELS:
        raise ConfigError(
            f"--plugin {names[0]}: needs a multimodal model ({', '.join(MULTIMODAL_MODELS)}), "
            f"not {cfg.model}"
        )
    if "ckd" in names:
        from trainer.plugins.ckd import check_config

        check_config(cfg)
    if "sea" in names:
        from trainer.plugins.sea import check_config as check_sea

        check_sea(cfg)


def build_plugins(cfg: TrainConfig) -> list[Plugin]:
    out: list[Plugin] = []
    for name in cfg.plugins:  # order as given; losses simply add up
        if name == "ckd":
            from trainer.plugins.ckd import CKDPlugin

            out.append(CKDPlugin())
        elif name == "sea":
            from trainer.plugins.sea import SEAPlugin

            out.append(SEAPlugin())
    return out
