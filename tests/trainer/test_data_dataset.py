"""Dataset bundle: write/load round trip, validation messages, fingerprint, atomic writes."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from trainer.data.dataset import Dataset, load_dataset, write_dataset
from trainer.errors import DataError

# the shared data lies beside the checkout (../shared), as on developer machines and in CI
SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "mlsmall-mmrec"
HEADER = "userID\titemID\trating\ttimestamp\tx_label\n"
# 3 users, 4 items; every user with valid/test rows has training rows.
ROWS = [(0, 0, 0), (0, 1, 0), (0, 2, 1), (0, 3, 2), (1, 1, 0), (1, 2, 2), (2, 3, 0)]


def _inter_text(rows: list[tuple]) -> str:
    return HEADER + "".join(f"{u}\t{i}\t1.0\t0\t{x}\n" for u, i, x in rows)


def _raw_bundle(root: Path, inter: str | None = None, **arrays: np.ndarray) -> Path:
    """A bundle written by hand (not by write_dataset), so the loader is tested alone."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "mini.inter").write_text(_inter_text(ROWS) if inter is None else inter)
    rng = np.random.default_rng(0)
    arrays = {"image_feat": rng.random((4, 3)), "text_feat": rng.random((4, 2)), **arrays}
    for name, arr in arrays.items():
        np.save(root / f"{name}.npy", arr)
    return root


def _write(out: Path, **kw) -> Path:
    rng = np.random.default_rng(1)
    args = dict(
        name="mini",
        interactions=np.array(ROWS, dtype=np.int64),
        features={"text": rng.random((4, 2)), "image": rng.random((4, 3))},
        user_ids=["alice", "bob", "carol"],
        item_ids=["i10", "i11", "i12", "i13"],
    )
    args.update(kw)
    return write_dataset(out, **args)


def test_round_trip(tmp_path: Path) -> None:
    meta = [
        {"title": 'A "quoted"\ttitle', "categories": ["x", "y"]},
        {"title": None, "categories": []},
        {"title": "C", "categories": ["z"]},
        {"title": "D", "categories": []},
    ]
    mask = np.array([False, True, False, False])
    out = _write(
        tmp_path / "b",
        item_meta=meta,
        ratings=np.arange(7) / 2,
        timestamps=np.arange(7) * 100,
        corruption={"image": mask},
        extra_files={"LICENSE.txt": "free\n"},
        extra_arrays={"tags_missing": np.array([True, False, False, True])},
        stats={"raw": "hand-made"},
    )
    ds = load_dataset(out)
    assert isinstance(ds, Dataset)
    assert (ds.name, ds.n_users, ds.n_items, ds.path) == ("mini", 3, 4, out)
    assert list(ds.features) == ["image", "text"]  # file name order
    assert ds.features["image"].dtype == np.float32 and ds.features["image"].shape == (4, 3)
    assert ds.train.dtype == np.int64 and ds.train.shape == (4, 2)
    assert ds.valid.tolist() == [[0, 2]] and ds.test.tolist() == [[0, 3], [1, 2]]
    assert ds.user_ids == ["alice", "bob", "carol"] and ds.item_ids[0] == "i10"
    assert ds.item_meta == meta
    assert ds.corruption is not None and ds.corruption["image"].tolist() == mask.tolist()
    assert (out / "LICENSE.txt").read_text() == "free\n"
    assert np.load(out / "tags_missing.npy").tolist() == [True, False, False, True]
    line = (out / "mini.inter").read_text().splitlines()[3]
    assert line == "0\t2\t1.0\t200\t1"  # rating and timestamp columns kept
    stats = json.loads((out / "stats.json").read_text())
    assert stats["split"] == {"train": 4, "valid": 1, "test": 2}
    assert stats["raw"] == "hand-made" and stats["fingerprint"] == ds.fingerprint
    m = ds.train_matrix()
    assert m.shape == (3, 4) and m.dtype == np.float32 and m.nnz == 4 and m[2, 3] == 1.0


def test_fingerprint_is_content_hash(tmp_path: Path) -> None:
    a = load_dataset(_write(tmp_path / "a"))
    assert len(a.fingerprint) == 64
    assert load_dataset(tmp_path / "a").fingerprint == a.fingerprint
    assert load_dataset(_write(tmp_path / "b", name="other")).fingerprint == a.fingerprint
    feats = {"text": np.zeros((4, 2)), "image": np.zeros((4, 3))}
    assert load_dataset(_write(tmp_path / "c", features=feats)).fingerprint != a.fingerprint
    # Fingerprint covers every feature file, not just the selected ones.
    assert load_dataset(tmp_path / "a", modalities=["text"]).fingerprint == a.fingerprint


def test_select_modalities(tmp_path: Path) -> None:
    ds = load_dataset(_write(tmp_path / "b", corruption={"image": np.zeros(4, bool)}))
    only = ds.select_modalities(["text"])
    assert list(only.features) == ["text"] and only.corruption is None
    assert list(ds.features) == ["image", "text"]  # original untouched
    assert list(load_dataset(tmp_path / "b", modalities=["image"]).features) == ["image"]
    with pytest.raises(DataError, match="unknown modality 'audio'.*available: image, text"):
        ds.select_modalities(["audio"])
    with pytest.raises(DataError, match="unknown modality 'audio'"):
        load_dataset(tmp_path / "b", modalities=["audio"])


def test_loads_without_mappings_and_ignores_pickles(tmp_path: Path) -> None:
    root = _raw_bundle(tmp_path / "b")
    np.save(root / "user_graph_dict.npy", np.array({"a": 1}, dtype=object), allow_pickle=True)
    ds = load_dataset(root)
    assert ds.user_ids == ["0", "1", "2"] and ds.item_meta is None and ds.corruption is None


@pytest.mark.parametrize(
    ("inter", "arrays", "expected"),
    [
        (_inter_text(ROWS + [(0, 0, 3)]), {}, r"mini\.inter: row 8: x_label 3 is not 0, 1 or 2"),
        (_inter_text([(0, -1, 0)] + ROWS), {}, r"mini\.inter: row 1: itemID -1 is negative"),
        (_inter_text(ROWS[:2]) + "1\t1.5\t1\t0\t0\n", {}, r"mini\.inter: row 3: itemID '1\.5'"),
        (_inter_text(ROWS[:2]) + "1\tx\t1\t0\t0\n", {}, r"row 3: itemID 'x' is not an integer"),
        (_inter_text(ROWS[:2]) + "1\t1\t1\t0\n", {}, r"mini\.inter: row 3: expected 5 fields"),
        (_inter_text(ROWS[:2]) + "\n1\t1\t1\t0\t0\n", {}, r"mini\.inter: row 3: expected 5"),
        (
            _inter_text(ROWS + [(3, 0, 2)]),
            {},
            r"mini\.inter: row 8: user 3 "
            r"has a test row but no training rows",
        ),
        (
            _inter_text(ROWS + [(1, 1, 1)]),
            {},
            r"mini\.inter: rows 5 and 8 are the same pair "
            r"\(user 1, item 1\)",
        ),
        (HEADER.replace("\tx_label", ""), {}, r"mini\.inter: missing column\(s\) x_label"),
        (HEADER, {}, r"mini\.inter: empty file"),
        ("", {}, r"mini\.inter: empty file"),
        (
            None,
            {"image_feat": np.zeros((5, 3))},
            r"image_feat\.npy: has 5 rows but the dataset "
            r"has 4 items",
        ),
        (
            None,
            {"text_feat": np.array([[0, 1], [0, 1], [np.inf, 0], [np.nan, 0]])},
            r"text_feat\.npy: row 2 \(item 2\) contains NaN or inf",
        ),
        (None, {"image_feat": np.zeros(4)}, r"image_feat\.npy: expected a 2-D array"),
        (None, {"image_feat": np.array([["a"]] * 4)}, r"image_feat\.npy: expected numbers"),
        (None, {"image_corrupt": np.zeros(4)}, r"image_corrupt\.npy: expected a bool array"),
    ],
)
def test_validation_errors_name_file_and_row(
    tmp_path: Path, inter: str | None, arrays: dict, expected: str
) -> None:
    root = _raw_bundle(tmp_path / "b", inter, **arrays)
    with pytest.raises(DataError, match=expected) as err:
        load_dataset(root)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("mapping", "content", "expected"),
    [
        (
            "u_id_mapping.csv",
            "raw_user_id\tuserID\na\t0\nb\t1\n",
            r"mini\.inter: row 7: userID 2 is out of range: u_id_mapping\.csv defines 2 ids",
        ),
        (
            "i_id_mapping.csv",
            "raw_item_id\titemID\na\t0\nb\t1\na\t2\nc\t3\n",
            r"i_id_mapping\.csv: rows 1 and 3 have the same raw_item_id 'a'",
        ),
        (
            "i_id_mapping.csv",
            "raw_item_id\titemID\na\t0\nb\t1\nc\t1\nd\t3\n",
            r"i_id_mapping\.csv: rows 2 and 3 have the same itemID",
        ),
        ("u_id_mapping.csv", "raw_user_id\nx\n", r"u_id_mapping\.csv: missing column\(s\) userID"),
        (
            "u_id_mapping.csv",
            "raw_user_id\tuserID\na\t0\nb\t7\nc\t2\n",
            r"u_id_mapping\.csv: row 2: userID 7 is not in 0\.\.2",
        ),
    ],
)
def test_mapping_errors(tmp_path: Path, mapping: str, content: str, expected: str) -> None:
    root = _raw_bundle(tmp_path / "b")
    (root / mapping).write_text(content)
    with pytest.raises(DataError, match=expected):
        load_dataset(root)


def test_reads_mmrec_amazon_headers_and_ignores_extra_columns(tmp_path: Path) -> None:
    # the exact headers of MMRec's own Amazon datasets (Baby, Sports, Clothing)
    root = _raw_bundle(tmp_path / "b")
    (root / "u_id_mapping.csv").write_text("user_id\tuserID\nA2\t2\nA0\t0\nA1\t1\n")
    (root / "i_id_mapping.csv").write_text(
        "asin\titemID\ttitle\tprice\n"
        + "".join(f"B0{i}\t{i}\tT{i}\t{i}.99\n" for i in (3, 1, 0, 2))
    )
    ds = load_dataset(root)
    assert ds.user_ids == ["A0", "A1", "A2"]
    assert ds.item_ids == ["B00", "B01", "B02", "B03"]
    assert ds.item_meta is not None and ds.item_meta[3] == {"title": "T3", "categories": []}


def test_raw_names_win_over_mmrec_names(tmp_path: Path) -> None:
    root = _raw_bundle(tmp_path / "b")
    (root / "u_id_mapping.csv").write_text(
        "user_id\traw_user_id\tuserID\nx\ta\t0\ny\tb\t1\nz\tc\t2\n"
    )
    assert load_dataset(root).user_ids == ["a", "b", "c"]


@pytest.mark.parametrize(
    ("mapping", "content", "expected"),
    [
        (  # 4 users mapped, the interactions know 3: the mapping is another dataset's
            "u_id_mapping.csv",
            "user_id\tuserID\na\t0\nd\t3\nb\t1\nc\t2\n",
            r"u_id_mapping\.csv: row 2: userID 3 has no row in mini\.inter \(1 of 4 ids are "
            r"unused\): the mapping does not match the interactions",
        ),
        (
            "i_id_mapping.csv",
            "asin\titemID\nb\t1\na\t0\n",
            r"mini\.inter: row 3: itemID 2 is out of range: i_id_mapping\.csv defines 2 ids",
        ),
        (
            "i_id_mapping.csv",
            "item\titemID\na\t0\n",
            r"i_id_mapping\.csv: missing column raw_item_id or asin \(the external id; header "
            r"has item, itemID\)",
        ),
        (
            "u_id_mapping.csv",
            "uid\tuserID\na\t0\n",
            r"u_id_mapping\.csv: missing column raw_user_id or user_id",
        ),
    ],
)
def test_mapping_must_match_the_interactions(
    tmp_path: Path, mapping: str, content: str, expected: str
) -> None:
    root = _raw_bundle(tmp_path / "b")
    (root / mapping).write_text(content)
    with pytest.raises(DataError, match=expected) as err:
        load_dataset(root)
    assert "\n" not in str(err.value)


def test_item_count_comes_from_mapping(tmp_path: Path) -> None:
    root = _raw_bundle(tmp_path / "b", image_feat=np.zeros((5, 3)), text_feat=np.zeros((5, 2)))
    (root / "i_id_mapping.csv").write_text(
        "raw_item_id\titemID\ttitle\n" + "".join(f"m{i}\t{i}\tT{i}\n" for i in range(5))
    )
    ds = load_dataset(root)
    assert ds.n_items == 5 and ds.item_meta is not None and ds.item_meta[4]["title"] == "T4"


def test_crlf_lines_and_no_features(tmp_path: Path) -> None:
    root = tmp_path / "b"
    root.mkdir()
    (root / "x.inter").write_bytes(_inter_text(ROWS).replace("\n", "\r\n").encode())
    ds = load_dataset(root)
    assert (ds.n_users, ds.n_items, len(ds.train), ds.features) == (3, 4, 4, {})


def test_needs_exactly_one_inter_file(tmp_path: Path) -> None:
    root = _raw_bundle(tmp_path / "b")
    (root / "second.inter").write_text(_inter_text(ROWS))
    with pytest.raises(DataError, match="exactly one .inter file, found mini.inter, second.inter"):
        load_dataset(root)
    with pytest.raises(DataError, match="not a directory"):
        load_dataset(tmp_path / "missing")


def test_pickled_features_are_refused(tmp_path: Path) -> None:
    root = _raw_bundle(tmp_path / "b")
    np.save(root / "image_feat.npy", np.array([{"x": 1}] * 4, dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match=r"image_feat\.npy: not a plain numeric"):
        load_dataset(root)


def test_failed_write_leaves_nothing(tmp_path: Path) -> None:
    bad = np.array(ROWS + [(2, 0, 5)], dtype=np.int64)
    with pytest.raises(DataError, match=r"b[/\\]mini\.inter: row 8: x_label 5"):
        _write(tmp_path / "b", interactions=bad)
    with pytest.raises(DataError, match=r"image_feat\.npy: row 1"):
        _write(tmp_path / "b", features={"image": np.array([[0.0], [np.nan], [0], [0]])})
    with pytest.raises(DataError, match="extra file name 'x.inter'"):
        _write(tmp_path / "b", extra_files={"x.inter": ""})
    assert list(tmp_path.iterdir()) == []


def test_overwrite(tmp_path: Path) -> None:
    out = _write(tmp_path / "b")
    with pytest.raises(DataError, match="already exists"):
        _write(out)
    before = load_dataset(out).fingerprint
    # A failed overwrite keeps the old bundle; a good one replaces it.
    with pytest.raises(DataError):
        _write(out, interactions=np.array([(0, 0, 1)]), overwrite=True)
    assert load_dataset(out).fingerprint == before
    _write(out, features={"text": np.ones((4, 2))}, overwrite=True)
    assert list(load_dataset(out).features) == ["text"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


@pytest.mark.skipif(not SHARED.is_dir(), reason="shared MMRec example bundle not present")
def test_loads_shared_mmrec_bundle_fast() -> None:
    start = time.perf_counter()
    ds = load_dataset(SHARED)
    elapsed = time.perf_counter() - start
    assert (ds.n_users, ds.n_items) == (601, 1955)
    assert (len(ds.train), len(ds.valid), len(ds.test)) == (33185, 3874, 4168)
    assert {m: f.shape[1] for m, f in ds.features.items()} == {"image": 21, "text": 384}
    assert ds.item_meta is not None and ds.item_meta[0]["title"] == "Toy Story (1995)"
    assert elapsed < 1.0


SCIENTIFIC = SHARED.parent / "amazon-scientific-mmrec"


@pytest.mark.skipif(not SCIENTIFIC.is_dir(), reason="shared amazon-scientific-mmrec not present")
def test_loads_shared_bundle_with_mmrec_amazon_headers() -> None:
    ds = load_dataset(SCIENTIFIC)
    assert (ds.n_users, ds.n_items) == (8440, 4385)
    assert (len(ds.train), len(ds.valid), len(ds.test)) == (41720, 8573, 8799)
    assert {m: f.shape[1] for m, f in ds.features.items()} == {"meta": 384, "text": 384}
    assert ds.user_ids[0] == "s0" and ds.item_ids[0] == "B00TNNWMXI"
    assert ds.item_meta is not None and ds.item_meta[0]["title"].startswith("eSUN Bronze")
