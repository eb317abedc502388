"""Write-then-rename: the one way this project writes a file or a folder others may read.

A reader (the service, a concurrent benchmark, the next run) sees either the old content or
the new one, never half a file: everything is written under a temporary name in the target's
own folder (same file system, so the rename is atomic) and renamed into place. A failure
removes the temporary and leaves the target untouched.

Standard library only, so both the trainer and the API process can use it.

* ``atomic_write_text`` / ``atomic_write_bytes``: whole content at once.
* ``atomic_file``: an open file object (csv writers, streamed output).
* ``atomic_path``: a temporary path for libraries that write by name (``faiss.write_index``,
  ``np.savez``); the suffix is kept, since some of them append one otherwise.
* ``atomic_dir``: a folder (model and dataset bundles); an existing target is moved aside,
  replaced, then deleted.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

FILE_MODE = 0o644  # mkstemp makes files owner-only; the service may run as another user
DIR_MODE = 0o755


def fsync_dir(path: Path) -> None:
    """Flush a folder's entries (a rename is durable once its folder is synced)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # not supported on this platform or file system
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


@contextlib.contextmanager
def atomic_path(path: str | Path, *, durable: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; renamed to ``path`` when the block succeeds.

    ``durable`` fsyncs the file and its folder (for files that must survive a power cut).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.tmp-", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, FILE_MODE)
        if durable:
            _fsync_file(tmp)
        os.replace(tmp, path)
        if durable:
            fsync_dir(path.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_file(
    path: str | Path,
    mode: str = "w",
    *,
    encoding: str | None = "utf-8",
    newline: str | None = None,
    durable: bool = False,
) -> Iterator[IO]:
    """Yield an open file written to a temporary name; renamed to ``path`` on success."""
    binary = "b" in mode
    with atomic_path(path, durable=durable) as tmp, open(
        tmp,
        mode,
        encoding=None if binary else encoding,
        newline=None if binary else newline,
    ) as f:
        yield f
        f.flush()


def atomic_write_text(path: str | Path, text: str, *, durable: bool = False) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically and return the path."""
    with atomic_file(path, "w", durable=durable) as f:
        f.write(text)
    return Path(path)


def atomic_write_bytes(path: str | Path, data: bytes, *, durable: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically and return the path."""
    with atomic_file(path, "wb", durable=durable) as f:
        f.write(data)
    return Path(path)


@contextlib.contextmanager
def atomic_dir(out: str | Path, *, durable: bool = False) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``out``; it replaces ``out`` on success.

    An existing ``out`` is renamed aside first and deleted after the new folder is in place,
    so ``out`` is missing only between two renames. The caller decides whether replacing is
    allowed (and says so in its own error type) before entering. ``durable`` fsyncs every
    file, the folder and its parent.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        tmp.chmod(DIR_MODE)
        yield tmp
        if durable:
            for p in tmp.rglob("*"):
                if p.is_file():
                    _fsync_file(p)
            fsync_dir(tmp)
        _replace_dir(tmp, out)
        if durable:
            fsync_dir(out.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _replace_dir(tmp: Path, out: Path) -> None:
    if not out.exists():
        os.replace(tmp, out)
        return
    # a fresh unique name for the old copy: two writers never collide on it
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
    old.rmdir()
    os.replace(out, old)
    try:
        os.replace(tmp, out)
    except BaseException:
        os.replace(old, out)  # put the old one back
        raise
    shutil.rmtree(old, ignore_errors=True)
