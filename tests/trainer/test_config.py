"""TrainConfig as the one hyper-parameter schema: bounds checked at construction without torch,
errors naming the flag (CLI) or the field (API), flags generated from the fields, --config files,
and the retrain subset carrying the same bounds."""

import json
import subprocess
import sys

import pytest
from pydantic import ValidationError

from trainer.cli import build_parser, config_from_args, main
from trainer.config import (
    RETRAIN_FIELDS,
    InvalidConfig,
    TrainConfig,
    flag_name,
    read_config_file,
    subset_model,
)
from trainer.errors import ConfigError


def test_validation_imports_no_torch():
    code = (
        "import sys\n"
        "from trainer.config import TrainConfig, InvalidConfig\n"
        "from trainer.cli import build_parser\n"
        "import trainer.plugins\n"
        "TrainConfig(model='margo', plugins=('ckd', 'sea'), ckd_teacher='mean').validate()\n"
        "for bad in ({'plugins': ('ckd',), 'ckd_tau': 0}, {'sea_distance': 'x'}):\n"
        "    try:\n"
        "        TrainConfig(**bad)\n"
        "    except InvalidConfig:\n"
        "        pass\n"
        "    else:\n"
        "        raise SystemExit('accepted ' + repr(bad))\n"
        "build_parser().parse_args(['train', '--data', 'd', '--out', 'o'])\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


def test_defaults_and_the_saved_dict_are_unchanged():
    cfg = TrainConfig()
    d = cfg.to_dict()
    want = ("margo", 64, 2e-3, 300, 0.01)  # lr: issue 17's validation
    assert (d["model"], d["dim"], d["lr"], d["epochs"], d["alpha"]) == want
    # the default model is the quality benchmark's validation winner (bench/results/quality.md)
    assert (d["backbone"], d["id_channel"], d["weight_lr"]) == ("freedom", True, 1e-2)
    assert (d["feature_norm"], d["prune_ratio"]) == ("auto", 0.5)  # issue 17's validation
    assert d["topk"] == [10, 20, 50] and d["plugins"] == [] and d["lr_stage2"] is None
    assert cfg.weighted and cfg.stage2_lr == 2e-3
    assert TrainConfig(lr_stage2=1e-4).stage2_lr == 1e-4
    assert not TrainConfig(model="bpr").weighted
    assert TrainConfig(**d) == cfg  # a bundle's hyperparameters rebuild the same config


@pytest.mark.parametrize(
    ("values", "flag", "field"),
    [
        ({"lr": 0}, "--lr", "lr"),
        ({"epochs": 1001}, "--epochs", "epochs"),
        ({"n_layers": -1}, "--layers", "n_layers"),
        ({"alpha": float("nan")}, "--alpha", "alpha"),
        ({"tau_conf": float("inf")}, "--tau-conf", "tau_conf"),
        ({"model": "gpt"}, "--model", "model"),
        ({"learning_rate": 0.1}, "--learning-rate", "learning_rate"),
        ({"model": "bpr", "two_stage": False}, "--no-two-stage", "two_stage"),
        ({"model": "lightgcn", "stopgrad": False}, "--no-stopgrad", "stopgrad"),
        ({"model": "bpr", "plugins": ("sea",)}, "--plugin", "plugins"),
        ({"graph_weights": {"image": -1.0}}, "--graph-weights", "graph_weights"),
        ({"select_metric": "recall@7"}, "--select-metric", "select_metric"),
        ({"sea_club_hidden": 0}, "--sea-club-hidden", "sea_club_hidden"),
        ({"ckd_teacher": "other"}, "--ckd-teacher", "ckd_teacher"),
    ],
)
def test_a_bad_value_names_its_flag_or_field(values, flag, field):
    with pytest.raises(InvalidConfig) as exc:
        TrainConfig(**values)
    assert isinstance(exc.value, ConfigError)
    assert str(exc.value).startswith(f"{flag}: "), str(exc.value)
    api = exc.value.describe(lambda f: f"hyperparameters.{f}")
    assert api.startswith(f"hyperparameters.{field}: "), api


def test_validate_rechecks_after_assignment_and_replace_validates():
    cfg = TrainConfig(model="margo")
    cfg.two_stage = False
    assert cfg.validate() is cfg
    cfg.model = "bpr"
    with pytest.raises(ConfigError, match="no-two-stage"):
        cfg.validate()
    other = TrainConfig().replace(dim=8, plugins=["ckd"])
    assert other.dim == 8 and other.plugins == ("ckd",)
    with pytest.raises(ConfigError, match="--dim"):
        TrainConfig().replace(dim=0)


def test_every_field_has_a_flag_with_its_description():
    parser = build_parser()
    train = parser._subparsers._group_actions[0].choices["train"]  # noqa: SLF001
    by_dest: dict = {}
    for action in train._actions:  # noqa: SLF001 - the first flag of a field carries its help
        by_dest.setdefault(action.dest, action)
    for name, info in TrainConfig.model_fields.items():
        assert name in by_dest, name
        assert info.description and info.description.replace("%", "%%") in by_dest[name].help
    assert flag_name("n_layers") == "--layers" and flag_name("drop_invalid") == "--literal-g"


def test_flags_reach_the_config_and_unset_flags_keep_the_defaults():
    args = build_parser().parse_args(
        ["train", "--data", "d", "--out", "o", "--per-channel-graph", "--alpha", "1",
         "--weight-lr", "0.1", "--lr-stage2", "1e-4", "--no-two-stage", "--no-stopgrad",
         "--literal-g", "--paper-scale", "--id-channel", "--modalities", "text",
         "--beta", "0.01", "--layers", "3", "--graph-weights", "image=0.2,text=0.8",
         "--topk", "5,10", "--select-metric", "ndcg@10", "--threads", "1", "--device", "cpu"]
    )  # fmt: skip
    cfg = config_from_args(args)
    assert cfg.per_channel_graph and cfg.alpha == 1.0 and cfg.weight_lr == 0.1
    assert cfg.lr_stage2 == 1e-4 and not cfg.two_stage and not cfg.stopgrad
    assert not cfg.drop_invalid and not cfg.scale_weights and cfg.id_channel
    assert cfg.modalities == ["text"] and cfg.reg_weight == 0.01 and cfg.n_layers == 3
    assert cfg.graph_weights == {"image": 0.2, "text": 0.8} and cfg.topk == (5, 10)
    assert (cfg.select_metric, cfg.threads, cfg.device) == ("ndcg@10", 1, "cpu")
    plain = config_from_args(build_parser().parse_args(["train", "--data", "d", "--out", "o"]))
    assert plain == TrainConfig() and plain.model_fields_set == set()


def test_config_file_then_flags(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"model": "fusion-learned", "epochs": 40, "alpha": 1}))
    args = build_parser().parse_args(
        ["train", "--data", "d", "--out", "o", "--config", str(path), "--epochs", "7"]
    )
    cfg = config_from_args(args)
    assert (cfg.model, cfg.epochs, cfg.alpha) == ("fusion-learned", 7, 1.0)
    assert TrainConfig.from_file(path, dim=8).dim == 8
    path.write_text(json.dumps({"epochs": 40, "epoch": 3}))
    with pytest.raises(ConfigError, match="c.json: unknown option.*epoch"):
        read_config_file(path)
    path.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="c.json: expected a JSON object"):
        read_config_file(path)
    path.write_text(json.dumps({"epochs": 0}))
    with pytest.raises(ConfigError, match="--epochs"):
        TrainConfig.from_file(path)


def test_margo_config_prints_the_config_and_the_retrain_body(tmp_path, capsys):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"model": "margo", "epochs": 40, "per_channel_graph": True}))
    assert main(["config", "--config", str(path), "--alpha", "1"]) == 0
    full = json.loads(capsys.readouterr().out)
    assert full == TrainConfig(epochs=40, per_channel_graph=True, alpha=1).to_dict()
    assert main(["config", "--config", str(path), "--alpha", "1", "--retrain"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body == {
        "model": "margo",
        "hyperparameters": {"epochs": 40, "per_channel_graph": True, "alpha": 1.0},
    }
    assert main(["config", "--retrain", "--no-stopgrad"]) == 2
    err = capsys.readouterr().err
    assert "--no-stopgrad" in err and "cannot be set by a retrain" in err


def test_the_retrain_subset_has_the_same_bounds_and_descriptions():
    params = subset_model("P", RETRAIN_FIELDS, "doc")
    assert set(params.model_fields) == set(RETRAIN_FIELDS)
    for name in RETRAIN_FIELDS:
        mine, theirs = params.model_fields[name], TrainConfig.model_fields[name]
        assert mine.metadata == theirs.metadata and mine.description == theirs.description
        assert mine.default is None
    assert params().model_dump(exclude_none=True) == {}
    for bad in ({"lr": 0}, {"epochs": 1001}, {"alpha": float("nan")}, {"dim": 1.5}, {"x": 1}):
        with pytest.raises(ValidationError) as exc:
            params(**bad)
        assert exc.value.errors()[0]["loc"][0] == next(iter(bad))
