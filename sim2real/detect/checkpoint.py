"""Loading user-supplied YOLO checkpoints (``.pt``) without running code from them.

An ultralytics checkpoint is a pickle of a whole ``DetectionModel`` (``{"model": <module>,
"train_args": {...}, ...}``), so a plain ``torch.load(weights_only=True)`` refuses it, while
ultralytics' default loader (``torch_safe_load``) unpickles with ``weights_only=False``: a crafted
file then runs arbitrary code the moment it is loaded. ultralytics 8.4 has an opt-in restricted
mode (``ULTRALYTICS_SAFE_LOAD``; per call ``torch_safe_load(..., safe_only=True)``): a
``weights_only=True`` load whose allow-list holds only the classes the file names *and* that are
ultralytics/torch ``nn.Module`` layers (plus a few data types); everything else is refused before
it is called. The same mode also builds models from yaml without ``eval`` of the ``activation``
string. :func:`enable_safe_load` switches it on for the whole process (and, through the
environment, for DDP workers); :func:`check_checkpoint` loads a file that way up front and turns
every refusal into one ``ConfigError`` line naming the file and the param or flag it came from.

Original ``ultralytics/yolov5`` checkpoints (``yolov5l6.pt``, anchor-based, pickling classes of
that repository's ``models.yolo`` / ``models.common``) cannot be used by ultralytics 8, which
calls them "not forwards compatible"; the anchor-free re-trained files of the same models
(``yolov5l6u.pt``) can. :func:`check_checkpoint` recognises the former from the classes the pickle
names (a static scan, nothing is unpickled) and says which file to use instead. ultralytics also
rewrites a path ending in such a name (``.../yolov5l6.pt``) to the ``u`` name and loads, or
downloads, *that* file; such names are refused too.

References
----------
ultralytics ``ultralytics/nn/tasks.py`` (``torch_safe_load``, ``_SafeLoad``), 8.4;
PyTorch ``torch.serialization.get_unsafe_globals_in_checkpoint`` (2.6+).
"""
from __future__ import annotations

import os
import pickle
import re
import sys
from pathlib import Path
from typing import Any

from sim2real.errors import ConfigError

SAFE_LOAD_ENV = "ULTRALYTICS_SAFE_LOAD"
YOLOV5_MODULES = ("models",)  # top-level package of the original ultralytics/yolov5 repository


def enable_safe_load() -> None:
    """Make every ultralytics checkpoint load in this process (and its children) weights-only.

    Sets ``ULTRALYTICS_SAFE_LOAD=true`` (read by ultralytics at import, inherited by DDP workers)
    and, when ultralytics is already imported, the module flags it copied at import.
    """
    os.environ[SAFE_LOAD_ENV] = "true"
    for name in ("ultralytics.utils", "ultralytics.nn.tasks"):
        module = sys.modules.get(name)
        if module is not None and hasattr(module, "SAFE_LOAD"):
            module.SAFE_LOAD = True


def pickled_globals(path: str | Path) -> list[str]:
    """The classes/functions a ``torch.save`` zip file names that torch does not allow by default.

    A static disassembly of the pickle (nothing is imported or called); ``[]`` for a file that is
    not a torch zip archive (the loader then reports it).
    """
    import torch

    try:
        return list(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
    except (ValueError, RuntimeError, OSError, pickle.UnpicklingError):
        return []


def yolov5_replacement(path: str | Path) -> str:
    """``yolov5l6.pt`` -> ``yolov5l6u.pt``: the ultralytics 8 ("u") file of the same model."""
    p = Path(path)
    return f"{p.stem}u{p.suffix or '.pt'}"


def ultralytics_message(exc: BaseException) -> str:
    """The first line of an ultralytics exception, without its "ERROR ❌️" prefix."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return re.sub(r"^ERROR\s+[^\w\s/.]*\s*", "", text).strip()  # drop ultralytics' "ERROR ❌️ " prefix


def check_checkpoint(path: str | Path, source: str) -> dict[str, Any]:
    """Load an ultralytics checkpoint weights-only and return its dict, or raise one ConfigError line.

    ``source`` names where the path came from (``train.weights``, ``--weights``) and is put in
    every message. Refused: files pickling anything but ultralytics/torch model classes (nothing
    of it runs), original ``ultralytics/yolov5`` checkpoints (with the ``u`` file to use instead),
    TorchScript archives, damaged files and checkpoints without a model.
    """
    path = Path(path)
    where = f"{path} ({source})"
    if not path.is_file():
        raise ConfigError(f"{where}: no such file")
    if path.suffix != ".pt":
        raise ConfigError(f"{where}: an ultralytics checkpoint is a .pt file")
    names = pickled_globals(path)
    v5 = sorted({n for n in names if n.split(".", 1)[0] in YOLOV5_MODULES})
    if v5:
        raise ConfigError(
            f"{where}: an original ultralytics/yolov5 checkpoint (pickles {v5[0]}), which ultralytics 8 refuses as "
            f"not forwards compatible; set {source} to the anchor-free 'u' file of the same model, "
            f"{yolov5_replacement(path)} (ultralytics assets), with an ultralytics model yaml such as yolov5l-p6.yaml")
    enable_safe_load()
    from ultralytics.nn.tasks import torch_safe_load
    from ultralytics.utils.checks import check_yolov5u_filename

    swapped = check_yolov5u_filename(str(path), verbose=False)
    if swapped != str(path):  # ultralytics would silently load (or download) that file instead of this one
        raise ConfigError(f"{where}: ultralytics replaces this yolov5 file name by {Path(swapped).name} and would "
                          f"load or download that file instead; rename the file (an ultralytics 'u' checkpoint is "
                          f"named like {Path(swapped).name})")

    try:
        ckpt, _ = torch_safe_load(str(path), safe_only=True)
    except (TypeError, pickle.UnpicklingError, ModuleNotFoundError, AttributeError) as exc:
        refused = sorted(set(pickled_globals(path)))  # what the allow-list did not take
        if refused:
            raise ConfigError(
                f"{where}: refused, not loaded: the file pickles {', '.join(refused[:5])}"
                f"{' ...' if len(refused) > 5 else ''}, outside ultralytics' model classes, which could run code "
                "(weights-only safe load); use an ultralytics YOLO checkpoint") from None
        raise ConfigError(f"{where}: not a loadable ultralytics checkpoint ({ultralytics_message(exc)})") from None
    except (RuntimeError, EOFError, ValueError, OSError) as exc:  # damaged: ultralytics raises any of these
        raise ConfigError(f"{where}: not a loadable ultralytics checkpoint ({ultralytics_message(exc)})") from None
    import torch

    model = (ckpt.get("ema") or ckpt.get("model")) if isinstance(ckpt, dict) else None
    if not isinstance(model, torch.nn.Module):
        raise ConfigError(f"{where}: not an ultralytics checkpoint (no 'model' or 'ema' module in it)")
    return ckpt
