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
# A ``<shell> -c '<command>'`` between the stage and its owner: DVC runs stage commands through
# ``$SHELL -c`` (or /bin/sh). bash execs a single command, dash does not, so with dash the
# stage's parent is a shell that outlives a killed ``dvc repro``.
SHELL_NAMES = frozenset({"sh", "dash", "bash", "zsh", "ksh", "mksh", "ash", "busybox"})


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


def shell_wrappers() -> list[tuple[int, int]]:
    """``(pid, ppid)`` of each ``<shell> -c`` process between this one and the process that owns
    it (nearest first); empty when the parent is not such a shell or psutil cannot see it."""
    import psutil

    chain: list[tuple[int, int]] = []
    try:
        proc = psutil.Process().parent()
        while proc is not None and proc.pid > 1:
            cmdline = proc.cmdline()
            if proc.name() not in SHELL_NAMES or "-c" not in cmdline[1:]:
                break
            chain.append((proc.pid, proc.ppid()))
            proc = proc.parent()
    except (psutil.Error, OSError):
        pass
    return chain


def _owner_gone(parent_pid: int, wrappers: list[tuple[int, int]]) -> bool:
    """True when this process, or any shell wrapper above it, was re-parented (its parent died)."""
    import psutil

    if os.getppid() != parent_pid:
        return True
    for pid, ppid in wrappers:
        try:
            if psutil.Process(pid).ppid() != ppid:
                return True
        except psutil.NoSuchProcess:
            return True
        except psutil.Error:
            continue
    return False


def _watchdog(parent_pid: int, wrappers: list[tuple[int, int]], interval_s: float) -> None:
    """Poll the parent and the shell wrappers above it; SIGTERM this process once its owner died."""
    while True:
        time.sleep(interval_s)
        if _owner_gone(parent_pid, wrappers):
            os.kill(os.getpid(), signal.SIGTERM)
            return


def exit_with_parent() -> None:
    """Make this process end (cleanly, through SIGTERM → :class:`ParentDied`) when its parent dies.

    Linux: ``prctl(PR_SET_PDEATHSIG, SIGTERM)``; elsewhere a daemon thread polls ``getppid()``.
    When the parent is a ``<shell> -c`` wrapper (DVC under dash), the thread also watches the
    wrappers' parents, so killing ``dvc repro`` alone still ends the stage within about a second.
    The SIGTERM handler raises :class:`ParentDied` (a ``SystemExit``) in the main thread, so every
    ``with atomic_outputs()`` block removes its temporaries and no output changes. A parent that
    died before this call is detected too. ``SIM2REAL_DETACH=1`` turns it off (e.g. a stage
    started by hand under ``nohup`` that should survive its terminal).
    """
    if os.environ.get("SIM2REAL_DETACH") == "1" or threading.current_thread() is not threading.main_thread():
        return
    parent = os.getppid()
    signal.signal(signal.SIGTERM, _on_sigterm(os.getpid()))
    wrappers = shell_wrappers()
    if not _set_pdeathsig(signal.SIGTERM) or wrappers:
        threading.Thread(target=_watchdog, args=(parent, wrappers, WATCHDOG_INTERVAL_S), daemon=True,
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
