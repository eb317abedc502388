"""The trainer's CLI: happy path end to end, and one readable line with exit code 2 on bad input."""

import json

import pytest

from trainer.cli import main


def test_import_train_evaluate_round_trip(tmp_path, capsys):
    data = tmp_path / "data"
    assert (
        main(
            [
                "import",
                "synth",
                str(data),
                "--users",
                "120",
                "--items",
                "80",
                "--interactions",
                "1500",
                "--modalities",
                "image=16,text=8",
            ]
        )
        == 0
    )
    out = tmp_path / "model"
    report = tmp_path / "report.json"
    assert (
        main(
            [
                "train",
                "--data",
                str(data),
                "--model",
                "margo",
                "--out",
                str(out),
                "--epochs",
                "2",
                "--batch-size",
                "256",
                "--quiet",
                "--threads",
                "1",
                "--report",
                str(report),
            ]
        )
        == 0
    )
    trained = json.loads(report.read_text())
    assert trained["model"] == "margo" and [s["stage"] for s in trained["stages"]] == ["I", "II"]
    capsys.readouterr()
    assert main(["evaluate", "--bundle", str(out), "--data", str(data)]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    # re-evaluation from the numpy bundle reproduces the trainer's test metrics
    for key in ("recall@20", "ndcg@20", "recall@10"):
        assert evaluated[key] == pytest.approx(trained["test"][key], abs=1e-6)


def _fails(argv, capsys, *needles):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("margo: error:") and "\n" not in err, err
    for n in needles:
        assert n in err, err
    return err


def test_bad_inputs_exit_2_with_one_line(tmp_path, capsys, tiny_bundle):
    _fails(
        ["train", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "o")],
        capsys,
        "missing",
    )
    _fails(
        ["train", "--data", str(tiny_bundle), "--out", str(tmp_path / "o"), "--lr", "0"],
        capsys,
        "--lr",
    )
    _fails(
        [
            "train",
            "--data",
            str(tiny_bundle),
            "--out",
            str(tmp_path / "o"),
            "--modalities",
            "audio",
        ],
        capsys,
        "audio",
    )
    existing = tmp_path / "exists"
    existing.mkdir()
    _fails(["train", "--data", str(tiny_bundle), "--out", str(existing)], capsys, "already exists")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.inter").write_text("userID\titemID\trating\ttimestamp\tx_label\n0\t0\t5\t1\t7\n")
    _fails(["train", "--data", str(bad), "--out", str(tmp_path / "o2")], capsys, "x.inter", "row")


def test_help_explains_every_option(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for opt in (
        "--no-two-stage",
        "--no-stopgrad",
        "--modalities",
        "--alpha",
        "--tau-conf",
        "--device",
    ):
        assert opt in text


def test_usage_errors_are_one_line_too(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--data", str(tmp_path)])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--out" in err
