"""Plain CSV importer: items file, text and .npy modalities, item order, error rows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from trainer.data.dataset import load_dataset
from trainer.data.importers import import_csv
from trainer.errors import ConfigError, DataError

INTERACTIONS = """user,item,stars,ts
u1,b,5,10
u1,a,4,11
u2,a,2,12
u2,c,5,13
u2,a,4,14
u3,c,4,15
"""
ITEMS = """item,name,blurb,kind
c,Chair,"A chair, wooden",furniture|home
a,Apple,,food
b,Book,A novel,
d,Desk,Unused,furniture
"""


def _files(tmp_path: Path, interactions: str = INTERACTIONS, items: str = ITEMS) -> tuple:
    (tmp_path / "log.csv").write_text(interactions)
    (tmp_path / "items.csv").write_text(items)
    return tmp_path / "log.csv", tmp_path / "items.csv"


def test_items_file_text_and_npy(tmp_path: Path, fake_encoder: list) -> None:
    log, items = _files(tmp_path)
    vis = np.arange(8, dtype=np.float32).reshape(4, 2)  # rows follow items.csv: c, a, b, d
    np.save(tmp_path / "vis.npy", vis)
    out = import_csv(
        log,
        tmp_path / "out",
        items_csv=items,
        rating_col="stars",
        timestamp_col="ts",
        min_rating=4,
        text_cols={"text": ["name", "blurb"]},
        npy_features={"vis": tmp_path / "vis.npy"},
        title_col="name",
        category_col="kind",
        progress=False,
    )
    ds = load_dataset(out)
    assert ds.name == "log"
    assert ds.item_ids == ["c", "a", "b"]  # items.csv order; "d" has no interactions
    assert ds.user_ids == ["u1", "u2", "u3"]
    assert ds.features["vis"].tolist() == vis[:3].tolist()
    assert fake_encoder == [["Chair. A chair, wooden", "Apple", "Book. A novel"]]
    assert ds.item_meta == [
        {"title": "Chair", "categories": ["furniture", "home"]},
        {"title": "Apple", "categories": ["food"]},
        {"title": "Book", "categories": []},
    ]
    stats = json.loads((out / "stats.json").read_text())
    # u2's two "a" rows collapse to the later one (4 stars), which passes min_rating.
    assert stats["dropped_duplicate_rows"] == 1 and stats["interactions"] == 5


def test_without_items_file_sorts_ids(tmp_path: Path) -> None:
    log = tmp_path / "log.tsv"
    log.write_text("user\titem\n7\t10\n7\t9\n12\t10\n7\t100\n")
    np.save(tmp_path / "f.npy", np.array([[9.0], [10.0], [100.0]]))  # sorted numerically
    out = import_csv(log, tmp_path / "out", npy_features={"f": tmp_path / "f.npy"})
    ds = load_dataset(out)
    assert ds.item_ids == ["9", "10", "100"] and ds.user_ids == ["7", "12"]
    assert ds.features["f"][:, 0].tolist() == [9.0, 10.0, 100.0]
    assert ds.item_meta is None


def test_unknown_item_names_the_row(tmp_path: Path) -> None:
    log, items = _files(tmp_path, INTERACTIONS + "u3,zzz,5,16\n")
    with pytest.raises(DataError, match=r"log\.csv: row 7: item 'zzz' is not in the items file"):
        import_csv(log, tmp_path / "out", items_csv=items)


@pytest.mark.parametrize(
    ("interactions", "items", "kwargs", "expected"),
    [
        (INTERACTIONS, ITEMS, {"user_col": "who"}, r"log\.csv: missing column\(s\) who"),
        (
            INTERACTIONS + "u4,a,lots,1\n",
            ITEMS,
            {"rating_col": "stars"},
            r"log\.csv: row 7: stars 'lots' is not a number",
        ),
        (INTERACTIONS + ",a,4,1\n", ITEMS, {}, r"log\.csv: row 7: user is empty"),
        (INTERACTIONS, ITEMS + "a,Again,,\n", {}, r"items\.csv: row 5: item 'a' repeats row 2"),
        (INTERACTIONS, ITEMS, {"npy_features": {"f": "missing.npy"}}, r"missing\.npy: file not"),
    ],
)
def test_errors(tmp_path: Path, interactions: str, items: str, kwargs: dict, expected: str) -> None:
    log, items_path = _files(tmp_path, interactions, items)
    with pytest.raises(DataError, match=expected):
        import_csv(log, tmp_path / "out", items_csv=items_path, **kwargs)
    assert not (tmp_path / "out").exists()


def test_npy_row_count_must_match(tmp_path: Path) -> None:
    log, items = _files(tmp_path)
    np.save(tmp_path / "f.npy", np.zeros((3, 2)))
    with pytest.raises(DataError, match=r"f\.npy: has 3 rows but there are 4 source items"):
        import_csv(log, tmp_path / "out", items_csv=items, npy_features={"f": tmp_path / "f.npy"})


def test_option_errors(tmp_path: Path) -> None:
    log, _ = _files(tmp_path)
    with pytest.raises(ConfigError, match="min_rating needs rating_col"):
        import_csv(log, tmp_path / "out", min_rating=4)
    with pytest.raises(ConfigError, match="need items_csv"):
        import_csv(log, tmp_path / "out", text_cols={"text": ["name"]})


BAD_ROWS = INTERACTIONS + "u4,,5,16\nu5,a,5\nu6,zzz,inf,x\nu7,b,5,99999999999999999999\n"


def test_every_bad_row_is_reported_earliest_first_with_a_count(tmp_path: Path) -> None:
    log, items = _files(tmp_path, BAD_ROWS)
    with pytest.raises(DataError) as err:
        import_csv(log, tmp_path / "out", items_csv=items, rating_col="stars", timestamp_col="ts")
    msg = str(err.value)
    assert msg == (
        "log.csv: row 7: item is empty; row 8: expected 4 fields, found 3; "
        "row 9: item 'zzz' is not in the items file, stars 'inf' is not a finite number, "
        "ts 'x' is not an integer; row 10: ts '99999999999999999999' is out of the int64 range "
        "(4 bad rows; --drop-bad-rows skips them)"
    )
    with pytest.raises(DataError, match=r"row 7: item is empty; row 8: .* \(4 bad rows, the first"
                       r" 2 shown; --drop-bad-rows skips them\)$"):  # fmt: skip
        import_csv(log, tmp_path / "out", items_csv=items, rating_col="stars",
                   timestamp_col="ts", max_reported=2)  # fmt: skip
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_drop_bad_rows_skips_and_counts_them(tmp_path: Path) -> None:
    log, items = _files(tmp_path, BAD_ROWS)
    out = import_csv(log, tmp_path / "out", items_csv=items, rating_col="stars",
                     timestamp_col="ts", drop_bad_rows=True, progress=False)  # fmt: skip
    stats = json.loads((out / "stats.json").read_text())
    assert stats["dropped_bad_rows"] == 4
    assert load_dataset(out).user_ids == ["u1", "u2", "u3"]


def test_every_bad_items_row_is_reported(tmp_path: Path) -> None:
    log, items = _files(tmp_path, items=ITEMS + "a,Again,,\n,Nameless,,\nq,Short\n")
    with pytest.raises(DataError, match=(
        r"^items\.csv: row 5: item 'a' repeats row 2; row 6: item is empty; "
        r"row 7: expected 4 fields, found 2 \(3 bad rows\)$"
    )):  # fmt: skip
        import_csv(log, tmp_path / "out", items_csv=items)


def test_cli_lists_bad_rows_in_one_line_and_can_drop_them(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from trainer.cli import main

    log, items = _files(tmp_path, BAD_ROWS)
    argv = ["import", "csv", str(log), str(tmp_path / "out"), "--items", str(items),
            "--rating-col", "stars", "--timestamp-col", "ts", "--max-reported", "1"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "row 7: item is empty (4 bad rows, the first 1 shown" in err[0]
    assert main([*argv, "--drop-bad-rows"]) == 0
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["dropped_bad_rows"] == 4
