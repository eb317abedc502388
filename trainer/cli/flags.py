"""Command-line flags generated from TrainConfig's fields, and the config they give back.

Each field becomes ``--field-name`` (or its ``Flag``'s spelling) with the field's type, its
description as help and its default shown; a bool becomes ``--x`` / ``--no-x``, a ``Literal`` a
choice, a list or tuple a comma-separated (and repeatable) value, a dict ``name=value,...``.
Flags have no argparse default: a config is the defaults, then ``--config FILE.json``, then the
flags given, validated once by TrainConfig (errors name the flag).
"""

from __future__ import annotations

import argparse
import types
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic.fields import FieldInfo

from trainer.cli.parsing import csv_list
from trainer.config import TrainConfig, flag_of, read_config_file

PLUGIN_PREFIXES = ("plugins", "ckd_", "sea_")


class ExtendList(argparse.Action):
    """Comma-separated and repeatable: ``--plugin ckd --plugin sea`` == ``--plugin ckd,sea``."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        setattr(namespace, self.dest, [*(getattr(namespace, self.dest, None) or []), *values])


def _bare(tp: Any) -> Any:
    """The type without Annotated metadata and without ``| None``."""
    while get_origin(tp) is Annotated:
        tp = get_args(tp)[0]
    if get_origin(tp) in (Union, types.UnionType):
        rest = [a for a in get_args(tp) if a is not type(None)]
        if len(rest) == 1:
            return _bare(rest[0])
    return tp


def _scalar(tp: Any, what: str) -> Callable[[str], Any]:
    tp = _bare(tp)
    conv = tp if tp in (int, float, str) else str

    def parse(text: str) -> Any:
        try:
            return conv(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None

    return parse


def _list_of(item: Any) -> Callable[[str], list[Any]]:
    parse = _scalar(item, _bare(item).__name__)
    return lambda text: [parse(t) for t in csv_list(text)]


def _dict_of(value: Any) -> Callable[[str], dict[str, Any]]:
    parse = _scalar(value, _bare(value).__name__)

    def kv(text: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for part in csv_list(text):
            name, sep, raw = part.partition("=")
            if not sep or not name:
                raise argparse.ArgumentTypeError(f"expected name=value pairs, got {part!r}")
            out[name] = parse(raw)
        return out

    return kv


def _shown(default: Any) -> str:
    if isinstance(default, tuple | list):
        return ",".join(map(str, default)) or "none"
    return "unset" if default is None else str(default)


def add_field(parser: Any, name: str, info: FieldInfo) -> None:
    """One TrainConfig field as a flag (``parser``: a parser or an argument group)."""
    flag = flag_of(name)
    names = [flag.name or f"--{name.replace('_', '-')}", *flag.aliases]
    doc = (info.description or name).replace("%", "%%")
    kw: dict[str, Any] = {
        "dest": name,
        "default": argparse.SUPPRESS,  # unset flags leave the file's value or the default
        # a description that explains its own default (e.g. "default: lr") keeps its words
        "help": doc if "(default" in doc else f"{doc} (default: {_shown(info.default)})",
    }
    tp = _bare(info.annotation)
    origin = get_origin(tp)
    if tp is bool:
        parser.add_argument(*names, action=argparse.BooleanOptionalAction, **kw)
        if flag.off:
            off_help = f"same as --no-{name.replace('_', '-')}"
            parser.add_argument(
                flag.off, dest=name, action="store_false", default=argparse.SUPPRESS, help=off_help
            )
        return
    if flag.metavar:
        kw["metavar"] = flag.metavar
    if origin is Literal:
        kw["choices"] = get_args(tp)
    elif origin in (list, tuple):
        kw["type"], kw["action"] = _list_of(get_args(tp)[0]), ExtendList
    elif origin is dict:
        kw["type"] = _dict_of(get_args(tp)[1])
    else:
        kw["type"] = _scalar(tp, tp.__name__)
    parser.add_argument(*names, **kw)


def add_config_options(parser: argparse.ArgumentParser) -> None:
    """``--config`` and one flag per TrainConfig field (plug-in options in their own group)."""
    base = parser.add_argument_group("training options (trainer/config.py)")
    plugins = parser.add_argument_group(
        "training plug-ins (ALGORITHMS.md 2-4; README 'Training plug-ins')"
    )
    base.add_argument(
        "--config",
        type=Path,
        metavar="FILE.json",
        help="a JSON object of these options by field name (e.g. configs/demo.json, or a "
        "bundle's manifest hyperparameters); flags given as well override it",
    )
    for name, info in TrainConfig.model_fields.items():
        add_field(plugins if name.startswith(PLUGIN_PREFIXES) else base, name, info)


def config_from_args(a: argparse.Namespace) -> TrainConfig:
    """Defaults, then ``--config``'s file, then the flags given: one validated TrainConfig."""
    values = read_config_file(a.config) if getattr(a, "config", None) else {}
    values.update({k: v for k, v in vars(a).items() if k in TrainConfig.model_fields})
    return TrainConfig(**values)
