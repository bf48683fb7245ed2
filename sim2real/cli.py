"""Stage entry points: bad input ends with one clear line on stderr and exit code 1, no traceback."""
from __future__ import annotations

import os
import sys
from typing import Callable

from sim2real.errors import ConfigError, DataError, FrameError


def entrypoint(main: Callable[[], None]) -> None:
    """Run a stage's ``main``; DataError/ConfigError/FrameError print ``error: <message>``.

    Set ``SIM2REAL_TRACEBACK=1`` to see the full traceback instead.
    """
    try:
        main()
    except (DataError, ConfigError, FrameError) as exc:
        if os.environ.get("SIM2REAL_TRACEBACK") == "1":
            raise
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
