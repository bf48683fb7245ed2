"""Stage entry points: bad input ends with one clear line on stderr and exit code 1, no traceback;
a stage never outlives the process that started it (``dvc repro``, a shell, a test)."""
from __future__ import annotations

import os
import signal
import sys
import threading
import time
from typing import Callable

from sim2real.errors import ConfigError, DataError, FrameError, OutputBusy, StorageError
from sim2real.io import describe_os_error, is_storage_error

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
WATCHDOG_INTERVAL_S = 1.0


class ParentDied(SystemExit):
    """Raised in the main thread when the parent process died (or on SIGTERM)."""


def _on_sigterm(main_pid: int):
    def handler(signum, frame):
        if os.getpid() != main_pid:  # a forked worker inherited this handler: die the default way
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        raise ParentDied(128 + signum)
    return handler


def _set_pdeathsig(signum: int) -> bool:
    """Linux: ask the kernel to send ``signum`` when the parent thread exits. False elsewhere."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watchdog(parent_pid: int, interval_s: float) -> None:
    """Poll the parent pid; when this process was re-parented, SIGTERM itself (any platform)."""
    while True:
        time.sleep(interval_s)
        if os.getppid() != parent_pid:
            os.kill(os.getpid(), signal.SIGTERM)
            return


def exit_with_parent() -> None:
    """Make this process end (cleanly, through SIGTERM → :class:`ParentDied`) when its parent dies.

    Linux: ``prctl(PR_SET_PDEATHSIG, SIGTERM)``; elsewhere a daemon thread polls ``getppid()``.
    The SIGTERM handler raises :class:`ParentDied` (a ``SystemExit``) in the main thread, so every
    ``with atomic_outputs()`` block removes its temporaries and no output changes. A parent that
    died before this call is detected too. ``SIM2REAL_DETACH=1`` turns it off (e.g. a stage
    started by hand under ``nohup`` that should survive its terminal).
    """
    if os.environ.get("SIM2REAL_DETACH") == "1" or threading.current_thread() is not threading.main_thread():
        return
    parent = os.getppid()
    signal.signal(signal.SIGTERM, _on_sigterm(os.getpid()))
    if not _set_pdeathsig(signal.SIGTERM):
        threading.Thread(target=_watchdog, args=(parent, WATCHDOG_INTERVAL_S), daemon=True,
                         name="sim2real-parent-watchdog").start()
    if os.getppid() != parent:  # the parent died between getppid() and prctl()
        os.kill(os.getpid(), signal.SIGTERM)


def entrypoint(main: Callable[[], None]) -> None:
    """Run a stage's ``main``; DataError/ConfigError/FrameError/OutputBusy print ``error: <message>``, and
    so does an OSError of the storage kind (disk full, read-only file system, permission denied: see
    :data:`sim2real.io.STORAGE_ERRNOS`), as ``error: <path>: cannot write: no space left on device (ENOSPC)``.

    The stage ends when its parent dies (:func:`exit_with_parent`), leaving no output or temporary.
    Set ``SIM2REAL_TRACEBACK=1`` to see the full traceback instead.
    """
    exit_with_parent()
    try:
        main()
    except (DataError, ConfigError, FrameError, OutputBusy) as exc:
        if os.environ.get("SIM2REAL_TRACEBACK") == "1":
            raise
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    except ParentDied as exc:
        try:
            print("error: stopped: the parent process died or sent SIGTERM (nothing was written)", file=sys.stderr)
        except OSError:
            pass
        sys.exit(exc.code)
    except OSError as exc:
        if not is_storage_error(exc) or os.environ.get("SIM2REAL_TRACEBACK") == "1":
            raise
        print(f"error: {exc if isinstance(exc, StorageError) else describe_os_error(exc, action=None)}", file=sys.stderr)
        sys.exit(1)
