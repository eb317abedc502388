"""Delimited text files read with errors that name the file and the data row.

Every reader here raises :class:`~trainer.errors.DataError` with one line of the form
``<file>: row <n>: <what is wrong>``. Row numbers are 1-based and count data rows below the
header, so "row 3" is the third line after the header; a headerless file counts from its
first line.

Parsing is vectorised (numpy) on the happy path; only when that fails do we walk the rows
in Python to find the first bad one, so large files stay fast and messages stay exact.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trainer.errors import DataError


def row_error(label: str, row: int, message: str) -> DataError:
    """The one error format every reader uses: ``<file>: row <n>: <message>``."""
    return DataError(f"{label}: row {row}: {message}")


def read_text(path: Path, label: str, encoding: str = "utf-8") -> str:
    """Read a whole text file, turning I/O and decoding failures into a DataError."""
    try:
        return path.read_text(encoding=encoding)
    except FileNotFoundError:
        raise DataError(f"{label}: file not found") from None
    except UnicodeDecodeError as e:
        raise DataError(
            f"{label}: not valid {encoding} text ({e.reason} at byte {e.start})"
        ) from None
    except OSError as e:
        raise DataError(f"{label}: cannot read ({e.strerror})") from None


@dataclass
class Table:
    """A parsed delimited file: header plus rows of strings, all of the header's width
    (unless read with ``ragged=True``)."""

    label: str
    header: list[str]
    rows: list[list[str]]

    def __len__(self) -> int:
        return len(self.rows)

    def has(self, name: str) -> bool:
        return name in self.header

    def require(self, *names: str) -> None:
        """Raise a DataError naming every required column the header lacks."""
        missing = [n for n in names if n not in self.header]
        if missing:
            raise DataError(
                f"{self.label}: missing column(s) {', '.join(missing)} "
                f"(header has {', '.join(self.header) or 'nothing'})"
            )

    def column(self, name: str) -> list[str]:
        self.require(name)
        j = self.header.index(name)
        return [r[j] for r in self.rows]

    def ints(self, name: str) -> np.ndarray:
        return parse_ints(self.column(name), label=self.label, column=name)

    def floats(self, name: str) -> np.ndarray:
        return parse_floats(self.column(name), label=self.label, column=name)


def read_table(
    path: Path,
    *,
    delimiter: str = ",",
    encoding: str = "utf-8",
    columns: Sequence[str] | None = None,
    label: str | None = None,
    quoting: int = csv.QUOTE_MINIMAL,
    ragged: bool = False,
) -> Table:
    """Read a delimited file (CSV quoting rules) into a :class:`Table`.

    Parameters
    ----------
    columns
        None: the first line is the header. Otherwise the file has no header and these are
        its column names (e.g. MovieLens 100k's ``u.data``).
    label
        How messages name the file; defaults to the file name.
    quoting
        ``csv.QUOTE_NONE`` for formats that never quote (a title may start with ``"``).
    ragged
        Keep rows whose width differs from the header's (the caller reports them all, see
        :func:`row_problems`) instead of stopping at the first.
    """
    label = label or path.name
    text = read_text(path, label, encoding)
    rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quoting=quoting))
    # Trailing blank lines are an editor artefact, not data; blank lines in the middle are
    # reported below as rows with the wrong number of fields.
    while rows and not any(rows[-1]):
        rows.pop()
    if columns is None:
        if not rows:
            raise DataError(f"{label}: empty file (no header)")
        header = [h.strip() for h in rows.pop(0)]
    else:
        header = list(columns)
    if not rows:
        raise DataError(f"{label}: empty file (no data rows)")
    widths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
    bad = np.flatnonzero(widths != len(header))
    if bad.size and not ragged:
        r = int(bad[0])
        raise row_error(label, r + 1, f"expected {len(header)} fields, found {widths[r]}")
    return Table(label=label, header=header, rows=rows)


def parse_ints(values: Sequence[str], *, label: str, column: str, first_row: int = 1) -> np.ndarray:
    """Parse decimal integers to int64; the error names the first row that is not one."""
    try:
        return np.asarray(values, dtype=str).astype(np.int64)
    except (ValueError, OverflowError):
        pass
    for r, v in enumerate(values):
        try:
            x = int(v)
        except ValueError:
            raise row_error(label, r + first_row, f"{column} {v!r} is not an integer") from None
        if not -(2**63) <= x < 2**63:
            raise row_error(label, r + first_row, f"{column} {v!r} is out of the int64 range")
    raise DataError(f"{label}: column {column} has values that are not integers")


def parse_floats(
    values: Sequence[str], *, label: str, column: str, first_row: int = 1
) -> np.ndarray:
    """Parse numbers to float64; the error names the first row that is not a number."""
    try:
        out = np.asarray(values, dtype=str).astype(np.float64)
    except ValueError:
        for r, v in enumerate(values):
            try:
                float(v)
            except ValueError:
                raise row_error(label, r + first_row, f"{column} {v!r} is not a number") from None
        raise DataError(f"{label}: column {column} has values that are not numbers") from None
    bad = np.flatnonzero(~np.isfinite(out))
    if bad.size:
        r = int(bad[0])
        raise row_error(label, r + first_row, f"{column} {values[r]!r} is not a finite number")
    return out


def int_columns(
    text: str, *, label: str, names: Sequence[str], delimiter: str = "\t"
) -> dict[str, np.ndarray]:
    """Integer columns of a headed, unquoted delimited text (the ``.inter`` file), fast.

    ``np.loadtxt`` parses the whole body in C; if it fails, or silently skipped blank
    lines, the rows are walked in Python to name the first bad one.
    """
    head, _, body = text.partition("\n")
    header = [h.strip() for h in head.rstrip("\r").split(delimiter)]
    if not head.strip():
        raise DataError(f"{label}: empty file (no header)")
    missing = [n for n in names if n not in header]
    if missing:
        raise DataError(
            f"{label}: missing column(s) {', '.join(missing)} (header has {', '.join(header)})"
        )
    body = body.rstrip("\r\n")
    if not body:
        raise DataError(f"{label}: empty file (no data rows)")
    n_rows = body.count("\n") + 1
    cols = [header.index(n) for n in names]
    try:
        arr = np.loadtxt(
            io.StringIO(body),
            delimiter=delimiter,
            usecols=cols,
            dtype=np.int64,
            comments=None,
            ndmin=2,
        )
    except ValueError:
        arr = None
    if arr is None or len(arr) != n_rows:
        _first_bad_int_row(body, label=label, header=header, names=names, delimiter=delimiter)
        raise DataError(f"{label}: could not parse the integer columns {', '.join(names)}")
    return {n: arr[:, k] for k, n in enumerate(names)}


def _first_bad_int_row(
    body: str, *, label: str, header: list[str], names: Sequence[str], delimiter: str
) -> None:
    """Raise the error for the first row whose fields do not parse (slow path)."""
    for r, line in enumerate(body.split("\n"), start=1):
        fields = line.rstrip("\r").split(delimiter)
        if len(fields) != len(header):
            raise row_error(label, r, f"expected {len(header)} fields, found {len(fields)}")
        for n in names:
            v = fields[header.index(n)]
            try:
                int(v)
            except ValueError:
                raise row_error(label, r, f"{n} {v!r} is not an integer") from None


@dataclass(frozen=True)
class RowProblem:
    """One bad data row: its 1-based number and what is wrong with it."""

    row: int
    reason: str


def bad_rows_error(label: str, problems: Sequence[RowProblem], limit: int, hint: str) -> DataError:
    """One line in :func:`row_error`'s form listing the first ``limit`` bad rows, earliest
    first, then how many there are: ``<file>: row 4: ...; row 7: ... (2 bad rows<hint>)``."""
    problems = sorted(problems, key=lambda p: p.row)
    shown = "; ".join(f"row {p.row}: {p.reason}" for p in problems[:limit])
    n = len(problems)
    count = f"{n} bad row{'s' if n > 1 else ''}"
    if n > limit:
        count += f", the first {limit} shown"
    return DataError(f"{label}: {shown} ({count}{hint})")
