"""Stage entry points: bad input ends with one clear line on stderr and exit code 1, no traceback."""
from __future__ import annotations

import os
import sys
from typing import Callable

from sim2real.errors import ConfigError, DataError, FrameError, StorageError
from sim2real.io import describe_os_error, is_storage_error


def entrypoint(main: Callable[[], None]) -> None:
    """Run a stage's ``main``; DataError/ConfigError/FrameError print ``error: <message>``, and so does
    an OSError of the storage kind (disk full, read-only file system, permission denied: see
    :data:`sim2real.io.STORAGE_ERRNOS`), as ``error: <path>: cannot write: no space left on device (ENOSPC)``.

    Set ``SIM2REAL_TRACEBACK=1`` to see the full traceback instead.
    """
    try:
        main()
    except (DataError, ConfigError, FrameError) as exc:
        if os.environ.get("SIM2REAL_TRACEBACK") == "1":
            raise
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    except OSError as exc:
        if not is_storage_error(exc) or os.environ.get("SIM2REAL_TRACEBACK") == "1":
            raise
        print(f"error: {exc if isinstance(exc, StorageError) else describe_os_error(exc, action=None)}", file=sys.stderr)
        sys.exit(1)
