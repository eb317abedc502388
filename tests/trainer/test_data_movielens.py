"""MovieLens importer on tiny hand-made ml-latest-small and ml-100k folders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from trainer.data.dataset import load_dataset
from trainer.data.importers import import_movielens
from trainer.errors import DataError

MOVIES = """movieId,title,genres
1,Toy Story (1995),Adventure|Animation|Children|Comedy|Fantasy
3,"Grumpier Old Men, The (1995)",Comedy|Romance
10,GoldenEye (1975),Action|Thriller
20,Untitled Show,(no genres listed)
30,Never Rated (2000),Drama
"""
# user 4's only positive is movie 20; user 9 rated the stray movie 999 only; user 1 rated
# movie 3 twice (the later 5.0 wins); ratings below 4 are not positives.
RATINGS = """userId,movieId,rating,timestamp
1,1,4.0,100
1,3,2.0,100
1,3,5.0,200
1,10,4.5,100
2,1,5.0,100
2,10,4.0,100
2,3,1.0,100
4,20,4.0,100
9,999,5.0,100
"""
TAGS = """userId,movieId,tag,timestamp
1,1,pixar,1
2,1,Pixar,2
2,1,funny,3
1,10,bond,4
"""


def _latest(root: Path, ratings: str = RATINGS, **files: str) -> Path:
    root.mkdir()
    contents = {"movies.csv": MOVIES, "ratings.csv": ratings, "tags.csv": TAGS, **files}
    for name, text in contents.items():
        (root / name).write_text(text, encoding="utf-8")
    return root


def test_latest_small(tmp_path: Path, fake_encoder: list) -> None:
    src = _latest(tmp_path / "ml", **{"README.txt": "licence"})
    out = import_movielens(src, tmp_path / "out", k_core=0, progress=False)
    ds = load_dataset(out)
    assert ds.name == "mlsmall"
    assert ds.user_ids == ["1", "2", "4"] and ds.item_ids == ["1", "3", "10", "20"]
    assert ds.n_users == 3 and len(ds.train) + len(ds.valid) + len(ds.test) == 6
    assert ds.item_meta is not None
    assert ds.item_meta[1] == {
        "title": "Grumpier Old Men, The (1995)",
        "categories": ["Comedy", "Romance"],
    }
    assert ds.item_meta[3]["categories"] == []  # "(no genres listed)" is not a category
    assert fake_encoder == [
        ["Toy Story (1995)", "Grumpier Old Men, The (1995)", "GoldenEye (1975)", "Untitled Show"]
    ]
    meta = ds.features["meta"]
    vocab = [
        "(no genres listed)",
        "Action",
        "Adventure",
        "Animation",
        "Children",
        "Comedy",
        "Drama",
        "Fantasy",
        "Romance",
        "Thriller",
    ]
    assert meta.shape == (4, len(vocab) + 1)
    assert meta[2, :-1].tolist() == [float(g in ("Action", "Thriller")) for g in vocab]
    # Years 1995, 1995, 1975 span [1975, 1995]; the untitled show gets the median, 1995.
    assert meta[:, -1].tolist() == [1.0, 1.0, 0.0, 1.0]
    stats = json.loads((out / "stats.json").read_text())
    assert stats["raw_ratings"] == 9 and stats["dropped_stray_rows"] == 1
    assert stats["dropped_duplicate_rows"] == 1 and stats["positives_before_kcore"] == 6
    assert stats["meta_feat"]["items_missing_year"] == 1
    assert (out / "LICENSE-README.txt").read_text() == "licence"
    raw = (out / "mlsmall.inter").read_text()
    assert "\t5.0\t200\t" in raw  # the later duplicate rating was kept


def test_latest_small_k_core_and_tags(tmp_path: Path, fake_encoder: list) -> None:
    src = _latest(tmp_path / "ml")
    out = import_movielens(src, tmp_path / "out", k_core=2, with_tags=True, progress=False)
    ds = load_dataset(out)
    # 2-core: users 1 and 2 with movies 1 and 10 (user 1's movie 3 has one positive only).
    assert ds.user_ids == ["1", "2"] and ds.item_ids == ["1", "10"]
    assert fake_encoder[1] == ["pixar, funny", "bond"]  # most used first, case folded
    assert np.load(out / "tags_missing.npy").tolist() == [False, False]
    assert ds.features["tags"].shape == (2, 384)


def test_untagged_movies_get_mean_tag_embedding(tmp_path: Path, fake_encoder: list) -> None:
    src = _latest(tmp_path / "ml")
    out = import_movielens(src, tmp_path / "out", k_core=0, with_tags=True, progress=False)
    missing = np.load(out / "tags_missing.npy")
    assert missing.tolist() == [False, True, False, True]
    tags = load_dataset(out).features["tags"]
    mean = tags[~missing].mean(axis=0)
    assert np.allclose(tags[1], mean / np.linalg.norm(mean), atol=1e-6)
    assert np.allclose(tags[1], tags[3])


@pytest.mark.parametrize(
    ("ratings", "expected"),
    [
        ("userId,movieId,timestamp\n1,1,5\n", r"ratings\.csv: missing column\(s\) rating"),
        (
            "userId,movieId,rating,timestamp\n1,1,4.0,1\n1,3,good,2\n",
            r"ratings\.csv: row 2: rating 'good' is not a number",
        ),
        (
            "userId,movieId,rating,timestamp\n1,1,4.0,1\n1,3\n",
            r"ratings\.csv: row 2: expected 4 fields, found 2",
        ),
        (
            "userId,movieId,rating,timestamp\n1,1.5,4.0,1\n",
            r"ratings\.csv: row 1: movieId '1\.5' is not an integer",
        ),
    ],
)
def test_latest_small_errors(
    tmp_path: Path, fake_encoder: list, ratings: str, expected: str
) -> None:
    src = _latest(tmp_path / "ml", ratings=ratings)
    with pytest.raises(DataError, match=expected):
        import_movielens(src, tmp_path / "out", k_core=0, progress=False)
    assert not (tmp_path / "out").exists()


def test_not_a_movielens_folder(tmp_path: Path) -> None:
    (tmp_path / "ml").mkdir()
    with pytest.raises(DataError, match="not a MovieLens folder"):
        import_movielens(tmp_path / "ml", tmp_path / "out")


def test_missing_tags_file(tmp_path: Path, fake_encoder: list) -> None:
    src = _latest(tmp_path / "ml")
    (src / "tags.csv").unlink()
    with pytest.raises(DataError, match=r"tags\.csv: file not found"):
        import_movielens(src, tmp_path / "out", k_core=0, with_tags=True, progress=False)
    assert fake_encoder == []  # failed before the slow title encoding


def _flags(*on: int) -> str:
    return "|".join("1" if k in on else "0" for k in range(19))


def _ml100k(root: Path) -> Path:
    root.mkdir()
    items = [
        f"1|Toy Story (1995)|01-Jan-1995||http://x|{_flags(3, 4, 5)}",
        f"2|Misérables, Les (1995)|01-Jan-1990||http://x|{_flags(8)}",
        f"3|Shanghai (1996)|||http://x|{_flags(0)}",
        f"4|unknown||||{_flags(0)}",
    ]
    (root / "u.item").write_text("\n".join(items) + "\n", encoding="latin-1")
    data = [
        "1\t1\t5\t10",
        "1\t2\t4\t11",
        "2\t1\t4\t12",
        "2\t3\t5\t13",
        "3\t4\t4\t14",
        "3\t2\t1\t15",
        "1\t3\t3\t16",
    ]
    (root / "u.data").write_text("\n".join(data) + "\n")
    return root


def test_ml100k(tmp_path: Path, fake_encoder: list) -> None:
    out = import_movielens(_ml100k(tmp_path / "ml"), tmp_path / "out", k_core=0, progress=False)
    ds = load_dataset(out)
    assert ds.name == "ml100k" and ds.item_ids == ["1", "2", "3", "4"]
    assert ds.user_ids == ["1", "2", "3"] and len(ds.train) + len(ds.valid) + len(ds.test) == 5
    assert ds.item_meta is not None
    assert ds.item_meta[1] == {"title": "Misérables, Les (1995)", "categories": ["Drama"]}
    assert ds.item_meta[2]["categories"] == []  # the "unknown" flag
    stats = json.loads((out / "stats.json").read_text())
    vocab = stats["meta_feat"]["genres"]
    assert vocab == sorted(vocab) and "unknown" in vocab and len(vocab) == 19
    meta = ds.features["meta"]
    assert meta[0, [vocab.index(g) for g in ("Animation", "Children's", "Comedy")]].tolist() == [
        1.0,
        1.0,
        1.0,
    ]
    assert meta[0, :-1].sum() == 3.0
    # Years: 1995 (date), 1990 (date wins over title), 1996 (title), missing -> median 1995.
    assert stats["meta_feat"]["year_range"] == [1990.0, 1996.0]
    assert np.allclose(meta[:, -1], [5 / 6, 0.0, 1.0, 5 / 6])
    with pytest.raises(DataError, match="ml-100k has none"):
        import_movielens(tmp_path / "ml", tmp_path / "o2", with_tags=True)


def test_ml100k_bad_genre_flag(tmp_path: Path, fake_encoder: list) -> None:
    src = _ml100k(tmp_path / "ml")
    lines = (src / "u.item").read_text(encoding="latin-1").splitlines()
    lines[2] = lines[2][:-1] + "2"
    (src / "u.item").write_text("\n".join(lines) + "\n", encoding="latin-1")
    with pytest.raises(DataError, match=r"u\.item: row 3: genre flags must be 0 or 1"):
        import_movielens(src, tmp_path / "out", k_core=0, progress=False)
