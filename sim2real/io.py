"""Atomic writes: nothing half-written survives a failed or killed stage, and nothing a DVC
dependency can see is left behind.

Every output is built under a temporary name and renamed into place only after the stage's work
has finished without error (:func:`atomic_outputs` for a stage with several outputs — all of them
are renamed together, last; :func:`atomic_dir` / :func:`atomic_file` / :func:`write_json` for one).

* **Where temporaries live.** Inside a DVC repository (the nearest folder above the output that
  holds ``.dvc/``) they go to ``<repo>/.sim2real/tmp/`` — outside every DVC dependency, so a
  stage killed by SIGKILL leaves nothing inside e.g. ``data/aug`` even when the next ``dvc repro``
  restores the stage from the run-cache instead of running it. That folder must be on the
  output's file system (for the atomic rename); when it is not (``data/`` symlinked to another
  disk), and outside a DVC repository, the temporary is a hidden sibling ``.<name>.tmp-<pid>``.
  Temporaries of dead runs are removed when the next atomic write starts.
* **One writer per output.** Each output is locked (``flock`` on a small lock file in the same
  folder, or the system temp folder outside a repository) from the start of its temporary until
  its rename; a second run of the same stage fails at once with
  :class:`~sim2real.errors.OutputBusy` ("already running (pid N)"). The kernel releases the lock
  when its process dies, so a killed run never blocks the next one.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO, Iterator

import numpy as np

from sim2real.errors import OutputBusy, StorageError

SIM2REAL_DIR = ".sim2real"
TMP_ROOT = f"{SIM2REAL_DIR}/tmp"
_GITIGNORE = "# scratch and temporary outputs of sim2real stages (sim2real.io); never committed\n*\n"


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _repo_root(path: Path) -> Path | None:
    """The nearest folder above ``path`` (absolute, not resolved) that holds ``.dvc/``."""
    for folder in path.parents:
        if (folder / ".dvc").is_dir():
            return folder
    return None


def _existing(path: Path) -> Path:
    """``path`` or its nearest existing ancestor."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _ensure_sim2real_dir(root: Path) -> Path:
    """``<root>/.sim2real`` with a ``.gitignore`` that ignores everything in it."""
    base = root / SIM2REAL_DIR
    base.mkdir(parents=True, exist_ok=True)
    ignore = base / ".gitignore"
    if not ignore.exists():
        ignore.write_text(_GITIGNORE)
    return base


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def _sweep_dead(area: Path) -> None:
    """Remove temporaries in ``area`` whose process is gone (runs killed by SIGKILL)."""
    for stale in area.glob("*.tmp-*"):
        pid = stale.name.rsplit(".tmp-", 1)[1].split(".", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            _remove(stale)


class _Lock:
    """An exclusive, non-blocking lock on one output (``flock``; released by the kernel on death)."""

    def __init__(self, lock_file: Path, target: Path):
        self.lock_file, self.target, self.fd = lock_file, target, None
        self._fallback = None

    def acquire(self) -> None:
        self.lock_file.parent.mkdir(parents=True, exist_ok=True)
        try:
            import fcntl
        except ImportError:  # not POSIX: filelock (a DVC dependency) without the holder's pid
            from filelock import FileLock, Timeout
            self._fallback = FileLock(str(self.lock_file))
            try:
                self._fallback.acquire(timeout=0)
            except Timeout:
                raise OutputBusy(self.target, None) from None
            return
        fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            raise OutputBusy(self.target, int(holder) if holder.isdigit() else None) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd

    def release(self) -> None:
        if self._fallback is not None:
            self._fallback.release()
            self._fallback = None
        if self.fd is not None:
            try:
                os.ftruncate(self.fd, 0)
            finally:
                os.close(self.fd)  # closing the descriptor releases the flock
                self.fd = None


class _Slot:
    """One output of a transaction: final path, temporary path, lock."""

    def __init__(self, final: Path, suffix: str, shown: str | Path | None = None):
        self.final = final
        real = Path(os.path.realpath(final.parent)) / final.name
        key = f"{final.name}-{hashlib.sha256(str(real).encode()).hexdigest()[:10]}"
        pid = os.getpid()
        root = _repo_root(final)
        area = None if root is None else root / TMP_ROOT
        self.lock = None
        if area is not None and area in final.parents:
            # a file written inside another output's temporary folder: that one is locked already
            self.tmp = final.with_name(f".{final.name}.tmp-{pid}{suffix}")
            return
        if area is not None:
            _ensure_sim2real_dir(root)
            area.mkdir(exist_ok=True)
            self.lock = _Lock(area / f"{key}.lock", shown or final)
            same_fs = os.stat(area).st_dev == os.stat(_existing(final.parent)).st_dev
        else:
            locks = Path(tempfile.gettempdir()) / "sim2real-locks"
            self.lock = _Lock(locks / f"{key}.lock", shown or final)
            same_fs = False
        self.tmp = area / f"{key}.tmp-{pid}{suffix}" if same_fs else final.with_name(f".{final.name}.tmp-{pid}{suffix}")
        self.lock.acquire()
        try:
            # under the lock nobody else writes this output: every temporary of it is stale
            if area is not None:
                for stale in area.glob(f"{key}.tmp-*"):
                    _remove(stale)
                _sweep_dead(area)
            if final.parent.is_dir():
                for stale in final.parent.glob(f".{final.name}.tmp-*"):
                    _remove(stale)
        except BaseException:
            self.lock.release()
            raise

    def release(self) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None


class Outputs:
    """The outputs of one stage run, written to temporaries and renamed into place together.

    Get one from :func:`atomic_outputs`; every method returns (or writes) the *temporary*; the
    final paths change only when the ``with`` block ends without error, in the order declared.
    """

    def __init__(self) -> None:
        self._slots: list[tuple[_Slot, bool]] = []

    def _add(self, path: str | Path, is_dir: bool, suffix: str = "") -> _Slot:
        final = Path(os.path.abspath(path))
        if any(s.final == final for s, _ in self._slots):
            raise ValueError(f"{path}: declared twice as an output")
        slot = _Slot(final, suffix, shown=path)
        self._slots.append((slot, is_dir))
        return slot

    def dir(self, path: str | Path) -> Path:
        """An empty temporary folder that replaces the folder ``path`` at the end."""
        slot = self._add(path, True)
        slot.tmp.mkdir(parents=True)
        return slot.tmp

    def path(self, path: str | Path) -> Path:
        """A temporary file name (same suffix as ``path``, for writers that go by the extension)
        that the caller must create; it replaces ``path`` at the end."""
        slot = self._add(path, False, Path(path).suffix)
        slot.tmp.parent.mkdir(parents=True, exist_ok=True)
        return slot.tmp

    @contextlib.contextmanager
    def file(self, path: str | Path, mode: str = "w") -> Iterator[IO]:
        """Open a temporary file (flushed and fsynced on close) that replaces ``path`` at the end."""
        tmp = self.path(path)
        with open(tmp, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())

    def json(self, path: str | Path, data) -> None:
        """Serialise ``data`` now (stable, sorted, indented; NaN refused) to replace ``path`` at the end."""
        with self.file(path) as fh:
            json.dump(data, fh, indent=2, sort_keys=True, default=_jsonable, allow_nan=False)
            fh.write("\n")

    def _commit(self) -> None:
        for slot, is_dir in self._slots:
            if not (slot.tmp.exists() or slot.tmp.is_symlink()):
                raise RuntimeError(f"{slot.final}: declared as an output but never written")
        for slot, _ in self._slots:
            slot.final.parent.mkdir(parents=True, exist_ok=True)
            old = None
            if slot.final.is_dir() and not slot.final.is_symlink():
                old = slot.tmp.with_name(slot.tmp.name + ".old")
                os.replace(slot.final, old)  # a folder cannot be replaced by rename: move it aside
            os.replace(slot.tmp, slot.final)
            if old is not None:
                _remove(old)

    def _abort(self) -> None:
        for slot, _ in self._slots:
            _remove(slot.tmp)

    def _release(self) -> None:
        for slot, _ in self._slots:
            slot.release()


@contextlib.contextmanager
def atomic_outputs() -> Iterator[Outputs]:
    """All outputs of a stage, renamed into place together once the block succeeded::

        with atomic_outputs() as out:
            tmp = out.dir(args.out)            # locked; "already running (pid N)" if taken
            ... every piece of work, writing into tmp ...
            out.json(args.report, summary)     # serialised now, renamed with the rest
        # here, and only here, the final paths change

    On an exception (or SIGTERM, see :func:`sim2real.cli.entrypoint`) every temporary is removed
    and the old outputs stay untouched.
    """
    out = Outputs()
    try:
        try:
            yield out
        except BaseException:
            out._abort()
            raise
        try:
            out._commit()
        except BaseException:
            out._abort()
            raise
    finally:
        out._release()


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield an empty temporary directory that replaces ``path`` when the block succeeds."""
    with atomic_outputs() as out:
        yield out.dir(path)


@contextlib.contextmanager
def atomic_file(path: str | Path, mode: str = "w") -> Iterator[IO]:
    """Open a temporary file that replaces ``path`` when the block succeeds."""
    with atomic_outputs() as out:
        with out.file(path, mode) as fh:
            yield fh


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
    with atomic_outputs() as out:
        out.json(path, data)


#: link errors that mean "this file system (or these permissions) can not hard-link here": copy instead
LINK_UNSUPPORTED = (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EACCES, errno.EOPNOTSUPP)


def link_or_copy(src: str | Path, dst: str | Path, *, replace: bool = False) -> str:
    """Hard-link ``src`` to ``dst`` (parent folders created), or copy when linking is impossible
    (:data:`LINK_UNSUPPORTED`: another file system, no permission, too many links); returns
    "link" or "copy". ``replace``: remove an existing ``dst`` (file or symlink) first; else an
    existing ``dst`` is an error (FileExistsError)."""
    src, dst = Path(src), Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    if replace and (dst.exists() or dst.is_symlink()):
        dst.unlink()
    try:
        os.link(src, dst)
        return "link"
    except OSError as exc:
        if exc.errno not in LINK_UNSUPPORTED:
            raise
    shutil.copy2(src, dst)
    return "copy"


def temp_dir(prefix: str) -> Path:
    """A new private temporary folder (the system's temp folder, outside every DVC output; the
    caller removes it), e.g. ultralytics' dataset view and caches. Not resumable: for per-frame
    work that a rerun resumes, see :func:`scratch_dir`."""
    return Path(tempfile.mkdtemp(prefix=prefix))


SCRATCH_ROOT = f"{SIM2REAL_DIR}/scratch"


def scratch_dir(stage: str, root: str | Path | None = None) -> Path:
    """Per-stage scratch folder for resumable per-frame work: ``.sim2real/scratch/<stage>``.

    Lives outside every DVC output (DVC never sees half a result) and is git-ignored by a
    ``.gitignore`` written into ``.sim2real/`` itself. ``root`` defaults to ``SIM2REAL_SCRATCH``
    or the current directory (the repository root for DVC stages).
    """
    if not stage or not all(c.isalnum() or c in "_-" for c in stage):
        raise ValueError(f"scratch_dir: stage name must be [A-Za-z0-9_-], got {stage!r}")
    path = _ensure_sim2real_dir(Path(root or os.environ.get("SIM2REAL_SCRATCH") or ".")) / "scratch" / stage
    path.mkdir(parents=True, exist_ok=True)
    return path


def tree_digest(path: str | Path) -> dict[str, str]:
    """``{relative path: sha256}`` of every file under ``path`` (for byte-identity checks)."""
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
