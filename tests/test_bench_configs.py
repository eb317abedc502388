"""bench/configs: each script's declarative settings (cases, rows, reference figures) as TOML."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bench import harness as H

CONFIGS = sorted((Path(H.__file__).parent / "configs").glob("*.toml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_each_config_is_read_by_its_script(path: Path) -> None:
    assert H.config(path.stem), f"{path.name} is empty"
    script = path.parent.parent / f"{path.stem}.py"
    assert script.is_file(), f"{path.name} has no bench script of its name"
    reads = re.search(r"^C = H\.config\(NAME\)", script.read_text(), re.M)
    assert reads, f"{script.name} never reads it"


def test_configs_hold_the_values_the_scripts_rely_on() -> None:
    from bench import plugins, quality, reliability, train_speed

    assert reliability.PRIOR == 5.0 and reliability.CASES["synth"] == ["synth", ""]
    repairs = ["fusion-sum+repair", "fusion-sum+repair (t 0.7)", "margo+repair"]
    assert list(reliability.REPAIR) == repairs
    assert train_speed.DRAGON_EPOCH_S == 69.0 and train_speed.KINDS[-2:] == ("eval", "dragon")
    assert train_speed.EPOCHS["margo"]["backbone"] == "dragon"
    # the measurement child parses the thread setting from its command line
    assert all(isinstance(s["threads"], str) for s in train_speed.C["threads"].values())
    assert list(plugins.C["timing"])[::6] == ["margo", "margo+CKD+SEA"]  # --quick's two timing rows
    # a metric MMRec does not report stays None (a dash in the tables, null in quality.json)
    assert quality.REFERENCE["mlsmall-mmrec"]["MostPop (no training)"] == (None, 0.1594, None, None)
    assert quality.REFERENCE["amazon-scientific-mmrec"]["SMORE"] == (0.1557, 0.2151, 0.0927, 0.1078)
