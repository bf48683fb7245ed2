"""VGG16 feature weights for neural style transfer, resolved offline-first.

``style.vgg_weights`` is resolved in this order:

1. a local file path (a torchvision ``vgg16-*.pth`` state dict, or one holding only the
   ``features.*`` keys);
2. torchvision's cache: ``$TORCH_HOME/hub/checkpoints/vgg16-397923af.pth`` (``TORCH_HOME``
   defaults to ``~/.cache/torch``);
3. a download from download.pytorch.org, only when the host is reachable and downloads are
   allowed;
4. otherwise :class:`~sim2real.errors.ConfigError` naming ``style.vgg_weights``.

The value ``random`` builds the network with a seeded He initialisation instead (used by the
offline demo and the tests; results made with it are marked ``"vgg_weights": "random"``).
Every checkpoint is read with ``torch.load(..., weights_only=True)``.

References
----------
Simonyan & Zisserman, "Very Deep Convolutional Networks for Large-Scale Image Recognition",
ICLR 2015. He et al., "Delving Deep into Rectifiers", ICCV 2015 (the initialisation).
"""
from __future__ import annotations

import os
import socket
from pathlib import Path

import torch
from torch import nn

from sim2real.errors import ConfigError, DataError
from sim2real.safety import load_torch_file

VGG16_FILE = "vgg16-397923af.pth"
VGG16_URL = f"https://download.pytorch.org/models/{VGG16_FILE}"
PARAM = "style.vgg_weights"
RANDOM = "random"
# torchvision's VGG16 configuration "D": conv widths, "M" = 2x2 max-pool
VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")

# names of the modules of torchvision's vgg16().features, by index
VGG16_LAYERS: tuple[str, ...] = (
    "conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1",
    "conv2_1", "relu2_1", "conv2_2", "relu2_2", "pool2",
    "conv3_1", "relu3_1", "conv3_2", "relu3_2", "conv3_3", "relu3_3", "pool3",
    "conv4_1", "relu4_1", "conv4_2", "relu4_2", "conv4_3", "relu4_3", "pool4",
    "conv5_1", "relu5_1", "conv5_2", "relu5_2", "conv5_3", "relu5_3", "pool5",
)


def torch_hub_checkpoint(filename: str = VGG16_FILE) -> Path:
    """Where torchvision caches ``filename``: ``$TORCH_HOME/hub/checkpoints/<filename>``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def _online(host: str = "download.pytorch.org", timeout_s: float = 2.0) -> bool:
    if os.environ.get("SIM2REAL_OFFLINE") == "1":
        return False
    try:
        with socket.create_connection((host, 443), timeout=timeout_s):
            return True
    except OSError:
        return False


def resolve_vgg16_weights(spec: str | os.PathLike | None, *, allow_download: bool = True) -> str | Path:
    """Return ``"random"`` or the path of a VGG16 state dict, following the documented order.

    Parameters
    ----------
    spec : ``"random"``, a file path, or ``None`` / ``"imagenet"`` (cache, then download).
    allow_download : try download.pytorch.org when the cache misses and the host answers.

    Raises
    ------
    ConfigError naming ``style.vgg_weights`` when no weights can be found.
    """
    if spec is not None and str(spec).lower() == RANDOM:
        return RANDOM
    tried = []
    if spec is not None and str(spec).lower() not in ("imagenet", "torchvision"):
        path = Path(spec).expanduser()
        if path.is_file():
            return path
        tried.append(f"path {path} (not a file)")
    cached = torch_hub_checkpoint()
    if cached.is_file():
        return cached
    tried.append(f"torchvision cache {cached} (TORCH_HOME)")
    if allow_download and _online():
        try:
            torch.hub.load_state_dict_from_url(VGG16_URL, model_dir=str(cached.parent), progress=False,
                                               check_hash=True, weights_only=True)
        except Exception as exc:  # noqa: BLE001 - turned into the documented error
            tried.append(f"download {VGG16_URL} ({type(exc).__name__}: {exc})")
        else:
            if cached.is_file():
                return cached
    elif allow_download:
        tried.append(f"download {VGG16_URL} (offline)")
    raise ConfigError(
        f"params.yaml: {PARAM}: no VGG16 weights found; tried {'; '.join(tried)}. Put torchvision's "
        f"{VGG16_FILE} at a path and set {PARAM} to it, copy it into the torch cache, or set "
        f"{PARAM}: random (seeded random features, results marked as such)")


def make_vgg16_features(n_layers: int = len(VGG16_LAYERS)) -> nn.Sequential:
    """The first ``n_layers`` modules of torchvision's ``vgg16().features`` (same indices)."""
    layers: list[nn.Module] = []
    in_ch = 3
    for v in VGG16_CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(in_ch, int(v), kernel_size=3, padding=1), nn.ReLU(inplace=False)]
            in_ch = int(v)
    return nn.Sequential(*layers[:n_layers])


def init_random_(net: nn.Module, seed: int) -> nn.Module:
    """Seeded He (fan-out) initialisation, as torchvision initialises an untrained VGG."""
    gen = torch.Generator().manual_seed(int(seed))
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu", generator=gen)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return net


def load_state_dict_file(path: str | Path, what: str) -> dict:
    """``torch.load(path, weights_only=True)`` with a one-line error that names the file and param
    (:func:`sim2real.safety.load_torch_file`: unsafe pickles refused, corrupt files named)."""
    try:
        state = load_torch_file(path, what=f"{what} checkpoint")
    except DataError as exc:
        raise ConfigError(str(exc)) from None
    if not isinstance(state, dict):
        raise ConfigError(f"{path}: {what} checkpoint is not a state dict")
    return state


def load_vgg16_features(spec: str | os.PathLike | None, *, seed: int = 0, n_layers: int = len(VGG16_LAYERS),
                        allow_download: bool = True) -> tuple[nn.Sequential, str]:
    """Build frozen VGG16 features (eval mode, no grads) and say where the weights came from.

    Returns
    -------
    (net, source) where ``source`` is ``"random"`` or the checkpoint path.
    """
    where = resolve_vgg16_weights(spec, allow_download=allow_download)
    net = make_vgg16_features(n_layers)
    if where == RANDOM:
        init_random_(net, seed)
        source = RANDOM
    else:
        state = load_state_dict_file(where, f"VGG16 ({PARAM})")
        if any(k.startswith("features.") for k in state):
            state = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
        own = net.state_dict()
        missing = [k for k in own if k not in state]
        if missing:
            raise ConfigError(f"{where}: not a VGG16 state dict ({PARAM}); missing {missing[:3]}")
        net.load_state_dict({k: state[k] for k in own})
        source = str(where)
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net, source
