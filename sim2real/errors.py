"""The one error type for bad input data.

Every reader and validator in sim2real raises :class:`DataError` for input it cannot
accept, with the file (and line, when there is one) in the message, so that a user
sees ``data/x/bbox.txt:17: expected 11 fields, got 9`` instead of a numpy traceback.
"""
from __future__ import annotations

from pathlib import Path


class DataError(ValueError):
    """Bad input data: the message names the file and, when known, the 1-based line."""

    def __init__(self, path: str | Path | None, message: str, line: int | None = None):
        self.path = None if path is None else str(path)
        self.line = line
        self.reason = message
        where = self.path or "<input>"
        if line is not None:
            where = f"{where}:{line}"
        super().__init__(f"{where}: {message}")

    def __reduce__(self):  # picklable across worker processes
        return (DataError, (self.path, self.reason, self.line))


class FrameError(RuntimeError):
    """An error raised while processing one frame, re-raised with the frame id."""

    def __init__(self, frame_id: str, message: str):
        self.frame_id = frame_id
        self.reason = message
        super().__init__(f"frame {frame_id}: {message}")

    def __reduce__(self):
        return (FrameError, (self.frame_id, self.reason))


class ConfigError(ValueError):
    """A params.yaml value that cannot be used; the message names the key."""


class StorageError(OSError):
    """The file system refused an output (no space left, read-only, permission denied, ...).

    An ``OSError`` with the original ``errno``; the message names the path and says why in words:
    ``data/aug/x.jpg: cannot write: no space left on device (ENOSPC)``.
    """

    def __init__(self, errno_: int | None, message: str, path: str | Path | None = None):
        super().__init__(errno_, message)
        self.path = None if path is None else str(path)
        self.message = message

    def __str__(self) -> str:
        return self.message

    def __reduce__(self):
        return (StorageError, (self.errno, self.message, self.path))
class OutputBusy(RuntimeError):
    """Another live process is writing the same output (see :mod:`sim2real.io`)."""

    def __init__(self, path: str | Path, pid: int | None):
        self.path = str(path)
        self.pid = pid
        who = f"pid {pid}" if pid is not None else "pid unknown"
        super().__init__(f"{path}: already running ({who}): another run of this stage is writing this "
                         f"output; wait for it to finish or stop it")

    def __reduce__(self):
        return (OutputBusy, (self.path, self.pid))
