"""Atomic writes: nothing half-written survives a failed or killed stage.

Outputs are built in a hidden temporary sibling (``.name.tmp-<pid>``) and renamed into place
only after the stage's body returned without error. Stale temporaries left by a SIGKILL are
removed by the next run.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
from pathlib import Path
from typing import Iterator

import numpy as np

from sim2real.errors import StorageError


def _tmp_sibling(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def clean_stale(path: Path) -> None:
    """Remove temporaries a killed run left beside ``path``."""
    if path.parent.exists():
        for stale in path.parent.glob(f".{path.name}.tmp-*"):
            _remove(stale)


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield an empty temporary directory that replaces ``path`` when the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(path)
    tmp = _tmp_sibling(path)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        _remove(tmp)
        raise
    if path.exists() or path.is_symlink():
        _remove(path)
    os.replace(tmp, path)


@contextlib.contextmanager
def atomic_file(path: str | Path, mode: str = "w") -> Iterator:
    """Open a temporary file that replaces ``path`` when the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(path)
    tmp = _tmp_sibling(path)
    try:
        with open(tmp, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        _remove(tmp)
        raise
    os.replace(tmp, path)


def _jsonable(obj):
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def write_json(path: str | Path, data) -> None:
    """Write ``data`` as stable, sorted, indented JSON (diff-friendly for ``dvc metrics diff``)."""
    with atomic_file(path) as fh:
        json.dump(data, fh, indent=2, sort_keys=True, default=_jsonable, allow_nan=False)
        fh.write("\n")


SCRATCH_ROOT = ".sim2real/scratch"


def scratch_dir(stage: str, root: str | Path | None = None) -> Path:
    """Per-stage scratch folder for resumable per-frame work: ``.sim2real/scratch/<stage>``.

    Lives outside every DVC output (DVC never sees half a result) and is git-ignored by a
    ``.gitignore`` written into ``.sim2real/`` itself. ``root`` defaults to ``SIM2REAL_SCRATCH``
    or the current directory (the repository root for DVC stages).
    """
    if not stage or not all(c.isalnum() or c in "_-" for c in stage):
        raise ValueError(f"scratch_dir: stage name must be [A-Za-z0-9_-], got {stage!r}")
    base = Path(root or os.environ.get("SIM2REAL_SCRATCH") or ".") / SCRATCH_ROOT
    path = base / stage
    path.mkdir(parents=True, exist_ok=True)
    ignore = base.parent / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# scratch for resumable stages (sim2real.io.scratch_dir); never committed\n*\n")
    return path


def tree_digest(path: str | Path) -> dict[str, str]:
    """``{relative path: sha256}`` of every file under ``path`` (for byte-identity checks)."""
    import hashlib

    path = Path(path)
    out = {}
    for p in sorted(path.rglob("*")):
        if p.is_file():
            out[str(p.relative_to(path))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


# ----------------------------------------------------------------------------- storage errors
#: errno values that mean "the file system refused the output", not "a bug": reported in one line.
STORAGE_ERRNOS = {errno.ENOSPC: "no space left on device", errno.EROFS: "read-only file system",
                  errno.EACCES: "permission denied", errno.EPERM: "operation not permitted",
                  errno.EDQUOT: "disk quota exceeded", errno.EFBIG: "file too large",
                  errno.ENAMETOOLONG: "file name too long", errno.EIO: "input/output error"}


def describe_os_error(exc: OSError, path: str | Path | None = None, action: str | None = "cannot write") -> str:
    """``<path>: cannot write: no space left on device (ENOSPC)`` for an OSError of a storage kind
    (:data:`STORAGE_ERRNOS`); other errors keep the system's own words."""
    where = path if path is not None else (exc.filename or "<output>")
    reason = STORAGE_ERRNOS.get(exc.errno) or (exc.strerror or str(exc)).lower()
    code = errno.errorcode.get(exc.errno) if exc.errno is not None else None
    return f"{where}: {f'{action}: ' if action else ''}{reason}" + (f" ({code})" if code else "")


def is_storage_error(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in STORAGE_ERRNOS


def write_bytes(path: str | Path, data) -> None:
    """Write ``data`` to ``path`` (folders created); a refusing file system is a StorageError naming it."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as fh:
            fh.write(data)
    except OSError as exc:
        raise StorageError(exc.errno, describe_os_error(exc, path), path) from None
