"""A bundle whose user or item ids repeat is refused with the file and both entries named (a
repeated item would be served twice in one page)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from tests.trainer.test_bundle import _arrays, _write
from trainer.bundle import load_bundle, write_bundle
from trainer.errors import BundleError


def test_writer_refuses_duplicate_item_ids(tmp_path: Path) -> None:
    twice = r"item_ids.json: id 'b' appears twice \(entries 1 and 3\)"
    with pytest.raises(BundleError, match=twice):
        write_bundle(
            tmp_path / "b",
            manifest={"model": "margo", "channels": [{"name": "image"}, {"name": "text"}]},
            arrays=_arrays(),
            user_ids=["u1", "u2", "u3"],
            item_ids=["a", "b", "c", "b"],
        )


@pytest.mark.parametrize("name,ids", [("user_ids.json", ["u1", "u1", "u3"]),
                                      ("item_ids.json", ["a", "b", "c", "a"])])
def test_reader_refuses_duplicate_ids(tmp_path: Path, name: str, ids: list[str]) -> None:
    path = _write(tmp_path / "b")
    load_bundle(path)  # fine as written
    # rewrite the id list and its recorded checksum, as a hand-edited bundle would
    (path / name).write_text(json.dumps(ids))
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["files"][name]["sha256"] = hashlib.sha256((path / name).read_bytes()).hexdigest()
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=rf"{name}: id '{ids[0]}' appears twice"):
        load_bundle(path)
    with pytest.raises(BundleError, match="appears twice"):
        load_bundle(path, verify=False)
