from __future__ import annotations

import numpy as np

from service.catalog import Catalog, SeenOverlay

ROWS = {f"i{i}": i for i in range(10)}


def test_load_and_label_intersection() -> None:
    catalog = Catalog(10, ROWS.get)
    catalog.load(
        [("i1", True, ["a"], "One"), ("i2", False, ["a", "b"], None), ("zz", True, ["a"], "Z")],
        "r1",
    )
    assert catalog.hidden.tolist() == [i == 1 for i in range(10)] and catalog.n_hidden == 1
    assert catalog.rows_with(("a",)).tolist() == [1, 2]
    assert catalog.rows_with(("a", "b")).tolist() == [2]
    assert catalog.rows_with(("a", "nope")).size == 0
    rows, mask = catalog.label_filter(("b",))
    assert rows.tolist() == [2] and mask.sum() == 1
    assert catalog.titles[:3] == [None, "One", None]  # unknown ids ("zz") are skipped


def test_apply_moves_labels_and_flags() -> None:
    catalog = Catalog(10, ROWS.get)
    catalog.load([("i1", False, ["a"], "One"), ("i2", False, ["a"], "Two")], "r1")
    catalog.label_filter(("a",))  # cached mask must not survive the change
    assert catalog.apply([("i1", True, ["new"], "Uno"), ("unknown", True, [], None)], "r2") == 1
    assert catalog.rows_with(("a",)).tolist() == [2]
    assert catalog.label_filter(("a",))[0].tolist() == [2]
    assert catalog.rows_with(("new",)).tolist() == [1]
    assert catalog.hidden[1] and catalog.n_hidden == 1 and catalog.revision == "r2"
    assert catalog.titles[1:3] == ["Uno", "Two"]


def test_overlay_reports_changed_users_once() -> None:
    overlay = SeenOverlay(ROWS.get)
    assert overlay.add([("u", "i3"), ("u", "i5"), ("v", "zz")]) == {"u"}
    assert overlay.add([("u", "i3")]) == set()
    assert overlay.rows("u").tolist() == [3, 5] and overlay.rows("v") is None
    assert np.issubdtype(overlay.rows("u").dtype, np.integer)


def test_overlay_token_names_a_users_rows() -> None:
    overlay, other = SeenOverlay(ROWS.get), SeenOverlay(ROWS.get)
    assert overlay.token("u") == ""
    overlay.add([("u", "i3")])
    first = overlay.token("u")
    overlay.add([("u", "i3")])  # nothing new: the same name
    assert overlay.token("u") == first != ""
    overlay.add([("u", "i5")])
    assert overlay.token("u") not in ("", first)
    other.add([("u", "i5"), ("u", "i3")])  # the same rows, another process: the same name
    assert other.token("u") == overlay.token("u")
    overlay.forget([5])
    assert overlay.token("u") == first and overlay.token("v") == ""
