"""Argument types shared by the trainer's commands (comma lists, name=value maps)."""

from __future__ import annotations

import argparse
from pathlib import Path


def csv_list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def kv_floats(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for part in csv_list(text):
        name, sep, value = part.partition("=")
        try:
            out[name] = float(value)
        except ValueError:
            sep = ""
        if not sep:
            raise argparse.ArgumentTypeError(f"expected name=number pairs, got {part!r}")
    return out


def kv_int_map(text: str) -> dict[str, int]:
    return {k: int(v) for k, v in kv_floats(text).items()}


def kv_lists(text: str) -> dict[str, list[str]]:
    """'text=title+plot,tags=tags' -> {'text': ['title', 'plot'], 'tags': ['tags']}."""
    out: dict[str, list[str]] = {}
    for part in csv_list(text):
        name, sep, cols = part.partition("=")
        if not sep or not cols:
            raise argparse.ArgumentTypeError(f"expected modality=col1+col2, got {part!r}")
        out[name] = cols.split("+")
    return out


def kv_paths(text: str) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for part in csv_list(text):
        name, sep, path = part.partition("=")
        if not sep or not path:
            raise argparse.ArgumentTypeError(f"expected modality=path.npy, got {part!r}")
        out[name] = Path(path)
    return out
