"""What an options model (a pydantic model such as TrainConfig) needs beyond pydantic: command-line
spellings as field metadata, errors that name the flag or the field, and declared subsets.

Torch-free and free of any particular model: trainer/config.py applies it to TrainConfig.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from trainer.errors import ConfigError


@dataclass(frozen=True)
class Flag:
    """A field's command line when it is not ``--field-name`` (bools: ``--x`` / ``--no-x``).
    Given as ``Annotated[T, Flag(...)]``; pydantic keeps it in the field's ``metadata``."""

    name: str | None = None  # the flag instead of --field-name
    aliases: tuple[str, ...] = ()  # more spellings of the same flag
    off: str | None = None  # bools: one more flag that sets False (e.g. --literal-g)
    metavar: str | None = None


def flag_of(model: type[BaseModel], field: str) -> Flag:
    for meta in model.model_fields[field].metadata:
        if isinstance(meta, Flag):
            return meta
    return Flag()


def flag_name(model: type[BaseModel], field: str) -> str:
    """The flag naming ``field`` in messages (for a bool on by default: the one turning it off)."""
    info = model.model_fields.get(field)
    dashed = f"--{field.replace('_', '-')}"
    if info is None:
        return dashed
    flag = flag_of(model, field)
    if flag.name:
        return flag.name
    if info.annotation is bool and info.default is True:
        return flag.off or f"--no-{field.replace('_', '-')}"
    return dashed


class FieldProblem(ValueError):
    """A cross-field check's finding (raised in a model validator), kept with the field it is
    reported under."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class InvalidConfig(ConfigError):
    """Every problem an options model's validation found, as (field, message) pairs. ``str``
    names each field by ``namer`` (its flag); ``describe`` can name them another way."""

    def __init__(self, problems: list[tuple[str, str]], namer: Callable[[str], str]) -> None:
        self.problems = problems
        super().__init__(self.describe(namer))

    def describe(self, name: Callable[[str], str]) -> str:
        return "; ".join(f"{name(f)}: {m}" if f else m for f, m in self.problems)


def problems(exc: ValidationError) -> list[tuple[str, str]]:
    """pydantic's errors as (top-level field, short message) pairs."""
    out: list[tuple[str, str]] = []
    for err in exc.errors():
        cause = err.get("ctx", {}).get("error")
        if isinstance(cause, FieldProblem):
            out.append((cause.field, str(cause)))
            continue
        loc = [str(p) for p in err["loc"]]
        field = loc[0] if loc else ""
        where = f" at [{']['.join(loc[1:])}]" if len(loc) > 1 else ""
        if err["type"] == "extra_forbidden":
            out.append((field, "unknown option"))
        elif err["type"] == "value_error" and cause is not None:
            out.append((field, f"{cause}{where}"))
        else:
            msg = err["msg"][:1].lower() + err["msg"][1:]
            out.append((field, f"invalid value {err['input']!r}{where}: {msg}"))
    return out


def subset_model(
    model: type[BaseModel], name: str, fields: Sequence[str], doc: str, module: str
) -> type[BaseModel]:
    """A pydantic model of some of ``model``'s fields with their exact types, bounds and
    descriptions, each optional (None or absent: not set), NaN and Infinity refused. It raises
    plain pydantic errors (an API turns them into 422 naming the field)."""
    spec: dict[str, Any] = {}
    for f in fields:
        info = copy.copy(model.model_fields[f])
        info.default = None
        spec[f] = (info.annotation | None, info)  # type: ignore[operator]
    return create_model(  # type: ignore[call-overload,no-any-return]
        name,
        __config__=ConfigDict(extra="forbid", allow_inf_nan=False),
        __doc__=doc,
        __module__=module,
        **spec,
    )
