"""CycleGAN checkpoints and exported generator weights, in torch's safe (``weights_only``) format.

A training checkpoint is a plain dict of tensors, numbers, strings, lists and dicts — no
pickled classes — so it loads with ``torch.load(..., weights_only=True)``. It carries a hash of
the training params and of the input frame lists; a run whose hash differs does not resume
from it (see :func:`params_hash`). Files are written to a temporary sibling and renamed, so a
run killed while saving leaves the previous checkpoint intact.
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import torch

from sim2real.errors import DataError
from sim2real.io import atomic_file

#: bump when the checkpoint layout changes; older files are then refused with a clear message.
CHECKPOINT_FORMAT = 1
CHECKPOINT_NAME = "last.pt"
REQUIRED_KEYS = ("format", "iteration", "params_hash", "models", "opt_g", "opt_d", "history")


def params_hash(config: dict[str, Any], fingerprint: str = "") -> str:
    """SHA-256 (hex, 16 chars) of the training config (canonical JSON) and a data fingerprint."""
    text = json.dumps(config, sort_keys=True, default=str) + "\n" + fingerprint
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Atomically write a training checkpoint dict (must contain :data:`REQUIRED_KEYS`)."""
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        raise ValueError(f"checkpoint state lacks keys {missing}")
    with atomic_file(path, mode="wb") as fh:
        torch.save(state, fh)


def _load(path: Path, what: str, hint: str, missing_hint: str | None = None) -> Any:
    if not path.is_file():
        raise DataError(path, f"{what} not found; {missing_hint or hint}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises RuntimeError / UnpicklingError / EOFError / zipfile errors
        raise DataError(path, f"corrupt or unreadable {what} ({type(exc).__name__}: {str(exc)[:200]}); {hint}") from None


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load and validate a training checkpoint (tensors on CPU).

    Raises
    ------
    DataError : the file is missing, truncated/corrupt, not a checkpoint, or of another format;
        the message names the file and says how to restart from scratch.
    """
    path = Path(path)
    hint = "delete it (or set cyclegan.train.resume: false) to restart training from scratch"
    state = _load(path, "CycleGAN checkpoint", hint, missing_hint="nothing to resume from")
    if not isinstance(state, dict):
        raise DataError(path, f"not a CycleGAN checkpoint (a {type(state).__name__}, expected a dict); {hint}")
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        raise DataError(path, f"not a CycleGAN checkpoint (missing {', '.join(missing)}); {hint}")
    if state["format"] != CHECKPOINT_FORMAT:
        raise DataError(path, f"checkpoint format {state['format']} != {CHECKPOINT_FORMAT}; {hint}")
    return state


def save_generator(path: str | Path, generator: torch.nn.Module) -> None:
    """Write a generator's ``state_dict`` (CPU tensors) with ``torch.save``, atomically."""
    sd = {k: v.detach().cpu().contiguous() for k, v in generator.state_dict().items()}
    with atomic_file(path, mode="wb") as fh:
        torch.save(sd, fh)


_BLOCK_KEY = re.compile(r"^model\.(\d+)\.body\.1\.weight$")


def generator_arch(state_dict: dict[str, torch.Tensor]) -> dict[str, int]:
    """Infer ``ngf`` and ``n_blocks`` of a :class:`ResnetGenerator` from its state_dict."""
    first = state_dict.get("model.1.weight")
    if first is None or first.ndim != 4 or tuple(first.shape[1:]) != (3, 7, 7):
        raise ValueError("no 7×7 RGB input convolution at model.1")
    n_blocks = sum(1 for k in state_dict if _BLOCK_KEY.match(k))
    return {"ngf": int(first.shape[0]), "n_blocks": n_blocks}


def load_generator(path: str | Path, device: str | torch.device = "cpu"):
    """Load exported A→B generator weights (``weights_only=True``) into a fresh generator, eval mode.

    Raises
    ------
    DataError : missing, corrupt, or not a ResNet generator state_dict (message names the file).
    """
    from sim2real.cyclegan.networks import ResnetGenerator

    path = Path(path)
    hint = "run the cyclegan_train stage (dvc repro cyclegan_train) to produce it"
    sd = _load(path, "generator weights", hint)
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise DataError(path, "not a generator state_dict (expected a dict of tensors)")
    try:
        arch = generator_arch(sd)
        net = ResnetGenerator(**arch)
        net.load_state_dict(sd, strict=True)
    except (ValueError, RuntimeError) as exc:
        raise DataError(path, f"not a CycleGAN ResNet generator state_dict ({str(exc)[:300]})") from None
    return net.to(device).eval()
