"""What the database and the model can store, checked at the edge: a value outside it is a 422
naming the field (pydantic's ``loc``), never a 500 from the driver or a poisoned retrain.

- ids (user, item, job, model version, search prefixes): no control characters (C0, DEL, C1)
  and no lone surrogates: PostgreSQL refuses NUL in text, and UTF-8 cannot encode a surrogate;
- free text (titles, notes, labels, metadata strings): no NUL, no C0 control other than tab,
  newline and carriage return, no lone surrogates;
- integers: within the 64-bit column (``INT64``);
- floats: finite and within float32 (``FLOAT32_MAX``), because vectors and weights are trained
  as float32 and a value beyond it would become inf there and fail every later retrain;
- metadata (free JSON): the rules above for every key, string and number, at most
  ``MAX_JSON_DEPTH`` levels deep (the JSON encoders refuse deeper documents).

The checks are regular expressions and one numpy pass per vector: they run on the hot path
(the user id of every recommendation request).
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

import numpy as np
from pydantic import AfterValidator, Field

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
FLOAT32_MAX = float(np.finfo(np.float32).max)
MAX_JSON_DEPTH = 32

_ID_BAD = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_TEXT_BAD = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff]")


def _describe(value: str, match: re.Match[str]) -> str:
    return f"U+{ord(match.group()):04X} at position {match.start()}"


def id_problem(value: str) -> str | None:
    """Why ``value`` cannot be an id, or None."""
    found = _ID_BAD.search(value)
    if found is None:
        return None
    return f"must not contain control characters (found {_describe(value, found)})"


def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be stored as text, or None."""
    found = _TEXT_BAD.search(value)
    if found is None:
        return None
    return f"must not contain NUL or control characters (found {_describe(value, found)})"


def check_id(value: str) -> str:
    problem = id_problem(value)
    if problem:
        raise ValueError(problem)
    return value


def check_text(value: str) -> str:
    problem = text_problem(value)
    if problem:
        raise ValueError(problem)
    return value


def float_problem(value: float) -> str | None:
    if not math.isfinite(value):
        return f"{value} is not a finite number"
    if abs(value) > FLOAT32_MAX:
        return f"{value} is beyond the float32 range (|x| <= {FLOAT32_MAX:.4g})"
    return None


def check_float32(value: float) -> float:
    problem = float_problem(value)
    if problem:
        raise ValueError(problem)
    return value


def check_vector(values: list[float]) -> list[float]:
    """Every value finite and within float32; the error names the first bad position."""
    array = np.asarray(values, dtype=np.float64)
    bad = ~np.isfinite(array) | (np.abs(array) > FLOAT32_MAX)
    if bad.any():
        n = int(np.argmax(bad))
        what = "contains NaN or inf" if not np.isfinite(array[n]) else "overflows float32"
        raise ValueError(f"{what} (value {n}: {float_problem(float(array[n]))})")
    return values


def json_problem(value: Any, where: str = "", depth: int = 0) -> str | None:
    """The first key, string or number in a JSON value the database cannot store, or None."""
    at = where or "value"
    if depth > MAX_JSON_DEPTH:
        return f"{at}: nested deeper than {MAX_JSON_DEPTH} levels"
    if isinstance(value, str):
        problem = text_problem(value)
        return f"{at}: {problem}" if problem else None
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return None if INT64_MIN <= value <= INT64_MAX else f"{at}: beyond the 64-bit range"
    if isinstance(value, float):
        problem = float_problem(value)
        return f"{at}: {problem}" if problem else None
    if isinstance(value, dict):
        for key, item in value.items():
            key = str(key)
            problem = text_problem(key)
            inner = f"{where}.{key}" if where else key
            if problem:
                return f"{inner!r} key: {problem}"
            found = json_problem(item, inner, depth + 1)
            if found:
                return found
        return None
    if isinstance(value, list):
        for n, item in enumerate(value):
            found = json_problem(item, f"{where}.{n}" if where else str(n), depth + 1)
            if found:
                return found
        return None
    return f"{at}: not a JSON value"


def check_json(value: Any) -> Any:
    problem = json_problem(value)
    if problem:
        raise ValueError(problem)
    return value


SafeId = Annotated[str, AfterValidator(check_id)]
"""An id: no control characters, no lone surrogates."""
SafeText = Annotated[str, AfterValidator(check_text)]
"""Free text: no NUL or C0 control other than tab/newline/carriage return."""
Float32 = Annotated[float, AfterValidator(check_float32)]
"""A finite float that float32 can hold."""
Vector = Annotated[list[float], AfterValidator(check_vector)]
"""A vector of finite float32 values."""
Int64 = Annotated[int, Field(ge=INT64_MIN, le=INT64_MAX)]
"""An integer a 64-bit column holds."""
JsonObject = Annotated[dict[str, Any], AfterValidator(check_json)]
"""Free JSON the database stores as is (metadata)."""
