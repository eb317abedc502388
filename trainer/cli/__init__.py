"""Trainer commands of the ``margo`` CLI, one module per command, and their dispatcher.

    margo import movielens ../shared/data/ml-latest-small data/mlsmall      (import_data.py)
    margo import synth data/baby --users 19445 --items 7050 --interactions 160792
    margo train --data ../shared/data/mlsmall-mmrec --model margo --out models/margo-1  (train.py)
    margo evaluate --bundle models/margo-1 --data ../shared/data/mlsmall-mmrec     (evaluate.py)
    margo audit --data ../shared/data/mlsmall-mmrec --out audit.csv                   (audit.py)
    margo config --config configs/demo.json [--retrain]                         (show_config.py)

A command module has ``add(subparsers)``, which declares its parser and sets ``func``; add one
to ``COMMANDS``. The training options of ``train`` and ``config`` are generated from TrainConfig
(flags.py). The service adds its own commands to the same parser (service/cli.py);
``python -m trainer`` runs the trainer's alone. Every MargoError ends the command with one line
and exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from trainer.cli import audit, evaluate, import_data, show_config, train
from trainer.cli.flags import config_from_args
from trainer.errors import MargoError

__all__ = ["OneLineParser", "add_commands", "build_parser", "config_from_args", "main", "run"]

EXIT_USAGE = 2
COMMANDS = (import_data, train, evaluate, audit, show_config)


def add_commands(subparsers: Any) -> None:
    """Register the trainer's commands on a ``margo`` parser's subparsers."""
    for command in COMMANDS:
        command.add(subparsers)


class OneLineParser(argparse.ArgumentParser):
    """Usage errors as one line on stderr and exit code 2 (no usage dump)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="margo", description="MARGO trainer: import data, train, evaluate.")
    add_commands(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    return parser


def run(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> int:
    """Parse, dispatch, and turn expected errors into one line on stderr and exit code 2."""
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except MargoError as exc:
        print(f"margo: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("margo: interrupted", file=sys.stderr)
        return 130


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
