"""Write-then-rename (trainer/atomic.py): the target is either old or new, never partial."""

import numpy as np
import pytest

from trainer.atomic import atomic_dir, atomic_file, atomic_path, atomic_write_text


def test_text_replaces_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "sub" / "a.json"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two", durable=True)
    assert target.read_text() == "two"
    assert [p.name for p in target.parent.iterdir()] == ["a.json"]
    assert oct(target.stat().st_mode & 0o777) == oct(0o644)


def test_a_failure_keeps_the_old_file(tmp_path):
    target = tmp_path / "a.csv"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_file(target, newline="") as f:
        f.write("half")
        raise RuntimeError("writer died")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.csv"]


def test_path_keeps_the_suffix_for_libraries_that_add_one(tmp_path):
    target = tmp_path / "cache.npz"
    with atomic_path(target) as tmp:
        assert tmp.suffix == ".npz" and tmp.parent == tmp_path
        np.savez(tmp, x=np.arange(3))
    with np.load(target) as z:
        assert z["x"].tolist() == [0, 1, 2]
    assert [p.name for p in tmp_path.iterdir()] == ["cache.npz"]


def test_dir_replaces_an_existing_folder_whole(tmp_path):
    out = tmp_path / "bundle"
    out.mkdir()
    (out / "stale.txt").write_text("x")
    with atomic_dir(out, durable=True) as tmp:
        assert not out.joinpath("new.txt").exists()
        (tmp / "new.txt").write_text("y")
    assert sorted(p.name for p in out.iterdir()) == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["bundle"]


def test_dir_failure_keeps_the_old_folder(tmp_path):
    out = tmp_path / "bundle"
    out.mkdir()
    (out / "old.txt").write_text("x")
    with pytest.raises(ValueError), atomic_dir(out) as tmp:
        (tmp / "new.txt").write_text("y")
        raise ValueError("verification failed")
    assert sorted(p.name for p in out.iterdir()) == ["old.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["bundle"]
