"""The benchmark harness (bench/harness.py) and the rules every bench script follows.

The scripts' own ``--quick`` smoke runs take minutes together on a shared machine, so they are
not run here (no timed tests either); what is checked is the machinery they share.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import threading
from pathlib import Path

import pytest

from bench import harness as H

BENCH = Path(H.__file__).resolve().parent
SCRIPTS = sorted(p for p in BENCH.glob("*.py") if p.name not in ("__init__.py", "common.py"))


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_scripts_use_public_names_and_leave_sys_path_alone(script: Path) -> None:
    tree = ast.parse(script.read_text())
    for node in ast.walk(tree):
        package = (getattr(node, "module", None) or "").split(".")[0]
        if isinstance(node, ast.ImportFrom) and package in ("trainer", "service"):
            private = [a.name for a in node.names if a.name.startswith("_")]
            assert not private, f"{script.name}:{node.lineno}: private {private} of {node.module}"
        if isinstance(node, ast.Attribute) and node.attr == "path":
            assert not (isinstance(node.value, ast.Name) and node.value.id == "sys"), (
                f"{script.name}:{node.lineno} touches sys.path (run it as python -m bench.<name>)"
            )


def test_step_key_depends_on_what_is_trained_not_on_labels() -> None:
    a = H.Step("margo", "/data/x", {"model": "margo", "seed": 0}, meta={"seed": 0})
    b = H.Step("renamed", "/data/x", {"seed": 0, "model": "margo"}, meta={"note": 1})
    c = H.Step("margo", "/data/x", {"model": "margo", "seed": 1})
    d = H.Step("margo", "/data/x", {"model": "margo", "seed": 0}, "branch", parent=c.key)
    assert a.key == b.key
    assert len({a.key, c.key, d.key}) == 3
    assert d.deps == [c.key] and a.deps == []


def test_load_result_skips_missing_and_half_written_runs(tmp_path: Path) -> None:
    assert H.load_result(tmp_path, "nope") is None
    (tmp_path / "bad.json").write_text('{"key": ')
    assert H.load_result(tmp_path, "bad") is None
    H.atomic_write_json(tmp_path / "ok.json", {"key": "ok", "x": Path("/a")})
    assert H.load_result(tmp_path, "ok") == {"key": "ok", "x": "/a"}


def test_versus_exports_a_commit_once_and_medians_go_per_tree(tmp_path: Path) -> None:
    def git(*argv: str) -> str:
        return subprocess.run(["git", "-C", str(H.REPO), *argv], capture_output=True, text=True,
                              check=True).stdout

    trees, commits = H.versus("HEAD", tmp_path)
    assert trees["this tree"] == H.REPO
    assert commits["baseline"] == git("rev-parse", "--short=12", "HEAD").strip()
    exported = (trees["baseline"] / "bench" / "harness.py").read_text()
    assert exported == git("show", "HEAD:bench/harness.py")
    assert H.versus("HEAD", tmp_path)[0] == trees and len(list(tmp_path.iterdir())) == 1  # once
    assert H.versus(str(trees["baseline"]), tmp_path)[0] == trees  # a folder: as it is
    assert list(H.abba(2, ["a", "b"])) == [(0, "a"), (0, "b"), (1, "b"), (1, "a")]
    rounds = [{"a": 1.0, "b": 4.0}, {"b": 2.0, "a": 3.0}, {"a": 8.0}]
    assert H.medians(rounds, lambda x: {"x": x, "2x": 2 * x}) == {
        "a": {"x": 3.0, "2x": 6.0}, "b": {"x": 3.0, "2x": 6.0}}


def test_held_slots_keep_training_runs_out(tmp_path: Path) -> None:
    got: list[int] = []

    def train() -> None:
        with H.training_slot(tmp_path, 2) as i:
            got.append(i)

    with H.hold_slots(tmp_path, 2, log=lambda _: None) as all_held:
        assert all_held
        t = threading.Thread(target=train)
        t.start()
        t.join(timeout=0.5)
        assert t.is_alive() and got == []  # waits for a slot while a timing holds them all
    t.join(timeout=10)
    assert got == [0]


def test_hold_slots_gives_up_after_its_timeout(tmp_path: Path) -> None:
    quiet = H.hold_slots(tmp_path, 1, timeout=0.2, log=lambda _: None)
    with H.training_slot(tmp_path, 1), quiet as all_held:
        assert not all_held


def test_write_report_writes_json_markdown_and_figures(tmp_path: Path) -> None:
    plt = H.pyplot()
    figures = {} if plt is None else {"w.png": plt.figure()}
    table = H.md_table(["h", "v"], [["r", 0.5], ["s", None]])
    written = H.write_report(tmp_path, "x", {"a": 1.5}, table, figures)
    assert json.loads((tmp_path / "x.json").read_text()) == {"a": 1.5}
    assert (tmp_path / "x.md").read_text() == "| h | v |\n|---|---|\n| r | 0.5000 |\n| s | – |\n"
    assert [p.name for p in written] == ["x.json", "x.md", *figures]
    assert all(p.stat().st_size > 0 for p in written)


def test_quick_runs_never_write_into_the_committed_results(tmp_path: Path) -> None:
    p = H.parser(None)
    quick = H.parse_args(p, ["--quick", "--workdir", str(tmp_path)])
    assert quick.results == tmp_path / "quick-results"
    assert H.parse_args(p, ["--workdir", str(tmp_path)]).results == H.RESULTS
    assert H.parse_args(p, ["--quick", "--results", str(tmp_path)]).results == tmp_path
    # options typed by their default: a list takes one or more values of its items' type
    p = H.parser(None, ("--seeds", [0, 1], None), ("--epochs", 3, None))
    assert H.parse_args(p, ["--seeds", "3", "4", "--epochs", "5"]).seeds == [3, 4]
    quick = H.parse_args(p, ["--quick"], epochs=1)  # the quick values replace the defaults
    assert (quick.epochs, quick.seeds) == (1, [0, 1])


def test_mean_std_and_configs() -> None:
    assert H.mean_std([1.0, 3.0, None, float("nan")]) == (2.0, pytest.approx(2**0.5))
    assert H.mean_std([2.0]) == (2.0, 0.0)
    assert H.mean_pm((0.25, 0.01), 3) == "0.2500 ± 0.0100"
    assert H.mean_pm((0.25, 0.0), 1, 2) == "0.25"
    assert H.mean_pm((float("nan"), 0.0), 2) == "–" and H.mean_pm((1.0, 0.0), 0) == "–"
    cfg = H.train_config(model="margo", epochs=3, seed=7)
    fields = cfg.model_dump(mode="json")
    assert fields["epochs"] == 3 and fields["seed"] == 7
    json.dumps(fields)


def test_report_templates_have_every_section_the_scripts_ask_for() -> None:
    """Each ``H.template(<name>, "<section>", ...)`` names a section of templates/<name>.md."""
    calls = 0
    for script in SCRIPTS:
        for m in re.finditer(r'H\.template\((NAME|"(\w+)"), "([\w-]+)"', script.read_text()):
            text = (BENCH / "templates" / f"{m.group(2) or script.stem}.md").read_text()
            assert f"<!-- {m.group(3)} -->\n" in text, f"{script.name}: no section {m.group(3)!r}"
            calls += 1
    assert calls >= 20


def test_template_section_keeps_its_own_newlines() -> None:
    job = H.template("faults", "job", killed_job=["train"], new_job="succeeded")
    assert job == (" The killed job's stages after the kill: ['train']; then cancelled; "
                   "the retrain posted after it: 'succeeded'.")
    # the file's last section, with a blank line of its own after it
    legend = H.template("reliability", "legend", signals="`x`")
    assert legend.startswith("`score`: ") and "`x`: the score's" in legend
    assert legend.endswith("epoch.\n")
