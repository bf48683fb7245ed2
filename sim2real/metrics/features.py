"""Feature-distribution distance: KID/FID on Inception-v3 features (local weights only) or a
fixed-seed random CNN fallback."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from sim2real.errors import ConfigError
from sim2real.safety import load_torch_file, state_dict_mismatch

INCEPTION_CACHE_NAME = "inception_v3_google-0cc3c7bd.pth"  # torchvision's ImageNet Inception-v3 file
INCEPTION_PARAM = "gap.kid.inception_weights"
FALLBACK_NAME = "random-fallback"


def _torch():
    import torch
    return torch


class RandomConvFeatures:
    """A fixed-seed, randomly initialised 4-layer CNN: uint8 (N, 3, H, W) -> (N, 240) features.

    Features are the global average (post-ReLU) of every layer, concatenated (16+32+64+128 = 240);
    deterministic for a given seed. Used only when no Inception weights are available locally.
    """

    def __new__(cls, seed: int = 0):
        torch = _torch()
        nn = torch.nn

        class _Net(nn.Module):
            def __init__(self):
                super().__init__()
                gen = torch.Generator().manual_seed(int(seed))
                chans = [3, 16, 32, 64, 128]
                self.convs = nn.ModuleList(nn.Conv2d(a, b, 3, stride=2, padding=1) for a, b in zip(chans[:-1], chans[1:]))
                with torch.no_grad():
                    for conv in self.convs:   # He-normal init from our own generator (not the global RNG)
                        fan_in = conv.in_channels * 9
                        conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen) * np.sqrt(2.0 / fan_in))
                        conv.bias.zero_()
                self.num_features = sum(chans[1:])
                self.eval()

            def forward(self, x):
                x = x.float() / 127.5 - 1.0
                feats = []
                for conv in self.convs:
                    x = torch.relu(conv(x))
                    feats.append(x.mean(dim=(2, 3)))
                return torch.cat(feats, dim=1)

        return _Net()


def find_inception_weights(path: str | None) -> Path | None:
    """Local Inception-v3 weights: ``path`` when given (must exist), else the torch hub cache file
    ``<TORCH_HOME>/hub/checkpoints/inception_v3_google-0cc3c7bd.pth`` when present, else None.
    Never downloads."""
    if path:
        p = Path(path).expanduser()
        if not p.is_file():
            raise ConfigError(f"gap.kid.inception_weights: {p} not found (set it to a local torchvision "
                              f"Inception-v3 state dict, or null to use the cache / the random fallback)")
        return p
    torch = _torch()
    cached = Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_CACHE_NAME
    return cached if cached.is_file() else None


def load_feature_extractor(inception_weights: str | None, seed: int, thumb_hw: tuple[int, int]):
    """Return (module, name, input_hw). The module maps uint8 (N, 3, h, w) to (N, D) float features."""
    torch = _torch()
    weights = find_inception_weights(inception_weights)
    if weights is None:
        return RandomConvFeatures(seed), FALLBACK_NAME, tuple(thumb_hw)
    param = INCEPTION_PARAM if inception_weights else f"{INCEPTION_PARAM} is null: torch hub cache"
    state = load_torch_file(weights, what="Inception-v3 weights", param=param,  # weights_only=True, one line
                            hint=f"set {INCEPTION_PARAM} to torchvision's {INCEPTION_CACHE_NAME}")
    import torchvision

    net = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False)
    problem = (f"a {type(state).__name__}, not a state dict" if not isinstance(state, dict)
               else state_dict_mismatch(net.state_dict(), state))
    if problem is not None:
        raise ConfigError(f"{INCEPTION_PARAM}: {weights} is not a torchvision Inception-v3 state dict ({problem})")
    net.load_state_dict(state)
    net.fc = torch.nn.Identity()
    net.eval()
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)

    class _Pool3(torch.nn.Module):
        num_features = 2048

        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, x):
            return self.net((x.float() / 255.0 - mean) / std)

    return _Pool3(), f"inception-v3-torchvision:{weights.name}", (299, 299)


def extract_features(module, thumbs: Sequence[np.ndarray], batch: int = 16) -> np.ndarray:
    """(N, D) float64 features of uint8 (h, w, 3) images (all the same size)."""
    torch = _torch()
    out = []
    with torch.no_grad():
        for i in range(0, len(thumbs), batch):
            x = torch.from_numpy(np.stack(thumbs[i:i + batch])).permute(0, 3, 1, 2).contiguous()
            out.append(module(x).double().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0))


def kid_fid(sim_feats: np.ndarray, real_feats: np.ndarray, *, subset_size: int, subsets: int, seed: int,
            fid_min_n: int | None = None) -> dict:
    """KID (mean, std over subsets) and, when both sides have >= ``fid_min_n`` samples
    (default: feature dimension + 1, so the covariances are full rank), FID; torchmetrics.

    ``subset_size`` is capped at the smaller sample count (reported as ``kid_subset_size``).
    Subset sampling uses ``seed`` without touching the global torch RNG.
    """
    torch = _torch()
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.kid import KernelInceptionDistance

    n = min(len(sim_feats), len(real_feats))
    if n < 2:
        raise ValueError(f"KID needs at least 2 images per side, got {len(sim_feats)} sim and {len(real_feats)} real")
    dim = sim_feats.shape[1]
    ident = torch.nn.Identity()
    ident.num_features = dim
    size = int(min(subset_size, n))
    out: dict = {"kid_subset_size": size, "kid_subsets": int(subsets), "n_sim": int(len(sim_feats)),
                 "n_real": int(len(real_feats)), "feature_dim": int(dim)}
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*will save all extracted features.*")
        torch.manual_seed(int(seed))
        kid = KernelInceptionDistance(feature=ident, subsets=int(subsets), subset_size=size)
        kid.update(torch.from_numpy(real_feats).double(), real=True)
        kid.update(torch.from_numpy(sim_feats).double(), real=False)
        mean, std = kid.compute()
    out["kid"] = float(mean)
    out["kid_std"] = float(std)
    need = dim + 1 if fid_min_n is None else int(fid_min_n)
    if n >= need:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*will save all extracted features.*")
            fid = FrechetInceptionDistance(feature=ident)
            fid.update(torch.from_numpy(real_feats).double(), real=True)
            fid.update(torch.from_numpy(sim_feats).double(), real=False)
            out["fid"] = float(fid.compute())
    else:
        out["fid_skipped"] = f"FID needs >= {need} images per side (feature dim {dim}); have {n}"
    return out
