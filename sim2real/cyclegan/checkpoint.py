"""CycleGAN checkpoints and exported generator weights, in torch's safe (``weights_only``) format.

A training checkpoint is a plain dict of tensors, numbers, strings, lists and dicts — no
pickled classes — so it loads with ``torch.load(..., weights_only=True)``. It carries a hash of
the training params and of the input frame lists; a run whose hash differs does not resume
from it (see :func:`params_hash`). Files are written to a temporary sibling and renamed, so a
run killed while saving leaves the previous checkpoint intact.

Generator weights for translation come from this project's ``cyclegan_train``
(``generator_a2b.pt``) or from the official PyTorch CycleGAN code
(junyanz/pytorch-CycleGAN-and-pix2pix, ``latest_net_G_A.pth`` / ``latest_net_G.pth``):
:func:`generator_state_dict` maps the official ResNet generator layout onto this one and refuses,
in one line, the official variants this generator cannot run (``--norm batch|none``,
``--use_dropout``, ``--netG unet_*``, ``--input_nc``/``--output_nc`` other than 3).
"""
from __future__ import annotations

import hashlib
import json
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch

from sim2real.errors import DataError
from sim2real.io import atomic_file
from sim2real.safety import load_torch_file, state_dict_mismatch

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


def _load(path: Path, what: str, hint: str, missing_hint: str | None = None, param: str | None = None) -> Any:
    if not path.is_file():
        src = f" (params.yaml {param})" if param else ""
        raise DataError(path, f"{what}{src} not found; {missing_hint or hint}")
    return load_torch_file(path, what=what, param=param, hint=hint)  # weights_only=True, one-line errors


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


#: the params key that chooses the translate stage's generator file (dvc.yaml passes it as --model)
GENERATOR_PARAM = "cyclegan.generator"
_BLOCK_KEY = re.compile(r"^model\.(\d+)\.body\.1\.weight$")
_OFFICIAL_BLOCK = re.compile(r"^model\.(\d+)\.conv_block\.(\d+)\.(.+)$")
# with --use_dropout a block is pad, conv, norm, relu, dropout, pad, conv, norm: its second conv is at 6
_DROPOUT_CONV = re.compile(r"^model\.\d+\.conv_block\.6\.weight$")
_RUNNING_STATS = (".running_mean", ".running_var", ".num_batches_tracked")


class UnsupportedGenerator(ValueError):
    """A generator file this project's :class:`ResnetGenerator` cannot run; the message says why."""


@dataclass(frozen=True)
class GeneratorLayout:
    """What :func:`generator_state_dict` found: ``layout`` "sim2real" or "official", the inferred
    architecture, and how many InstanceNorm running-statistics tensors it dropped."""

    layout: str
    ngf: int
    n_blocks: int
    dropped_running_stats: int = 0


def generator_arch(state_dict: Mapping[str, torch.Tensor]) -> dict[str, int]:
    """Infer ``ngf`` and ``n_blocks`` of a :class:`ResnetGenerator` from its state_dict."""
    first = state_dict.get("model.1.weight")
    if first is None or first.ndim != 4 or tuple(first.shape[2:]) != (7, 7):
        raise UnsupportedGenerator("no 7×7 input convolution at model.1 (not a ResNet generator)")
    if first.shape[1] != 3:
        raise UnsupportedGenerator(f"its input convolution model.1 takes {first.shape[1]} channels "
                                   f"(official --input_nc {first.shape[1]}); only RGB (3) is supported")
    n_blocks = sum(1 for k in state_dict if _BLOCK_KEY.match(k))
    return {"ngf": int(first.shape[0]), "n_blocks": n_blocks}


def _refuse_unsupported(sd: Mapping[str, torch.Tensor]) -> None:
    """Raise UnsupportedGenerator for official variants the project's generator cannot represent."""
    unet = next((k for k in sd if k.startswith("model.model.")), None)
    if unet is not None:
        raise UnsupportedGenerator(f"a U-Net generator (official --netG unet_128/unet_256; key {unet}); "
                                   f"only ResNet generators (--netG resnet_9blocks/resnet_6blocks) are supported")
    affine = next((k for k, v in sd.items() if k.endswith(".weight") and v.ndim == 1), None)
    if affine is not None:
        raise UnsupportedGenerator(f"trained with --norm batch (BatchNorm weights at {affine}); only "
                                   f"--norm instance (the CycleGAN default) is supported")
    dropout = next((k for k, v in sd.items() if _DROPOUT_CONV.match(k) and v.ndim == 4), None)
    if dropout is not None:
        raise UnsupportedGenerator(f"trained with --use_dropout (ResNet-block convolution at {dropout}); only "
                                   f"--no_dropout (the CycleGAN default) is supported")
    if "model.1.weight" in sd and "model.1.bias" not in sd:
        raise UnsupportedGenerator("its convolutions have no biases (no model.1.bias): trained with --norm none; "
                                   "only --norm instance (the CycleGAN default) is supported")


def generator_state_dict(sd: Any) -> tuple[dict[str, torch.Tensor], GeneratorLayout]:
    """A generator state_dict in this project's layout, from this project's or the official one.

    Accepted: this project's ``generator_a2b.pt``, and the official ResNet generator
    (``ResnetGenerator`` of junyanz/pytorch-CycleGAN-and-pix2pix: ``--netG resnet_9blocks`` or
    ``resnet_6blocks``, ``--norm instance``, ``--no_dropout``, 3→3 channels), any ``--ngf``:
    ``module.`` prefixes (DataParallel) are stripped, ``model.<i>.conv_block.<j>.`` becomes
    ``model.<i>.body.<j>.`` (the Sequential indices are the same), and InstanceNorm running
    statistics (``running_mean``/``running_var``/``num_batches_tracked``, written by the 2018 code's
    ``track_running_stats=True``) are dropped. ``ngf`` and ``n_blocks`` are inferred from the tensors.

    Raises
    ------
    UnsupportedGenerator : not a state_dict of tensors, or an official variant this generator
        cannot run (U-Net, batch or no norm, dropout, other channel counts); the message names it.
    """
    if not isinstance(sd, Mapping):
        raise UnsupportedGenerator(f"a {type(sd).__name__}, not a state_dict")
    if "models" in sd and "format" in sd:
        raise UnsupportedGenerator("a cyclegan_train training checkpoint (last.pt), not generator weights: "
                                   "use the exported data/cyclegan/model/generator_a2b.pt")
    not_tensor = next((k for k, v in sd.items() if not isinstance(v, torch.Tensor)), None)
    if not_tensor is not None:
        raise UnsupportedGenerator(f"not a state_dict of tensors (key {not_tensor!r} holds a "
                                   f"{type(sd[not_tensor]).__name__})")
    stripped = {(k[len("module."):] if k.startswith("module.") else k): v for k, v in sd.items()}
    _refuse_unsupported(stripped)
    out: dict[str, torch.Tensor] = {}
    renamed = dropped = 0
    for key, value in stripped.items():
        if key.endswith(_RUNNING_STATS):
            dropped += 1
            continue
        m = _OFFICIAL_BLOCK.match(key)
        if m:
            key, renamed = f"model.{m.group(1)}.body.{m.group(2)}.{m.group(3)}", renamed + 1
        out[key] = value
    official = bool(renamed or dropped or any(k.startswith("module.") for k in sd))
    arch = generator_arch(out)
    return out, GeneratorLayout("official" if official else "sim2real", arch["ngf"], arch["n_blocks"], dropped)


def load_generator(path: str | Path, device: str | torch.device = "cpu", *, param: str | None = None):
    """Load A→B generator weights (``weights_only=True``) into a fresh generator, eval mode.

    ``path`` holds this project's ``generator_a2b.pt`` or an official CycleGAN ResNet generator
    (see :func:`generator_state_dict`); ``param`` is the params key that chose the file, named in
    every error. The returned generator's ``layout`` attribute is its :class:`GeneratorLayout`.
    Warns (UserWarning) when InstanceNorm running statistics were dropped.

    Raises
    ------
    DataError : missing, corrupt, refused as unsafe, not a generator, or an unsupported official
        variant; one line naming the file (and ``param``).
    """
    from sim2real.cyclegan.networks import ResnetGenerator

    path = Path(path)
    src = f" (params.yaml {param})" if param else ""
    hint = "run the cyclegan_train stage (dvc repro cyclegan_train) to produce it"
    if param:
        hint += f", or set {param} to a pretrained generator file"
    sd = _load(path, "generator weights", hint, param=param)
    try:
        converted, layout = generator_state_dict(sd)
    except UnsupportedGenerator as exc:
        raise DataError(path, f"not a usable CycleGAN generator{src}: {exc}") from None
    net = ResnetGenerator(ngf=layout.ngf, n_blocks=layout.n_blocks)
    problem = state_dict_mismatch(net.state_dict(), converted)
    if problem is not None:
        raise DataError(path, f"not a CycleGAN ResNet generator{src} (ngf={layout.ngf}, "
                              f"n_blocks={layout.n_blocks} inferred): {problem}")
    net.load_state_dict(converted, strict=True)
    if layout.dropped_running_stats:
        warnings.warn(f"{path}: dropped {layout.dropped_running_stats} InstanceNorm running-statistics tensors "
                      f"(a 2018-era official checkpoint, track_running_stats=True); that generator was trained "
                      f"with per-image (train-mode) instance norm, which is what runs here", stacklevel=2)
    net.layout = layout
    return net.to(device).eval()
