"""Neural style transfer (Gatys et al.) with VGG16 features, plain and fast.

Plain Gatys optimises the pixels of an image so that its deep features match the content
image's (content loss) and the Gram matrices of its features match the style image's (style
loss). This module keeps that objective and makes it fast:

- coarse-to-fine: solve at a low resolution, upsample the *change* (result − content), add it to
  the content at the next resolution and refine there with fewer steps; when the last scale is
  below 1 the final change is upsampled onto the full-resolution content, so the content's
  full-resolution edges (and therefore its boxes) stay where they were;
- batched frames: a batch of (content, style) pairs is optimised in one graph (the losses are
  per image, so the images do not interact);
- optional autocast (bfloat16) on CUDA for the VGG forward pass;
- early stop when the loss plateaus.

- warm start (``init``): the optimisation may start from an image that already has the scene's
  geometry and roughly the style's colours — the stage passes the weight-free photoreal transfer
  of the same frame (``style.nst.init: photoreal``), which costs well under a second and starts
  the Gatys loss far closer to its minimum than the content image does.

The result is initialised from the content image (default) or from such a warm start, so the
scene geometry stays put either way.

Losses are *normalised* so that one set of weights works for random and trained VGG features:
content loss = mean over content layers of ‖F(x) − F(c)‖² / ‖F(c)‖², style loss = mean over
style layers of ‖G(x) − G(s)‖² / ‖G(s)‖², G the Gram matrix of the layer's features divided by
the number of positions. Both are per image, shape (B,).

Tensors are float32 (B, 3, H, W) RGB in [0, 1] unless stated otherwise.

References
----------
Gatys, Ecker, Bethge, "Image Style Transfer Using Convolutional Neural Networks", CVPR 2016.
Gatys et al., "Controlling Perceptual Factors in Neural Style Transfer", CVPR 2017 (coarse-to-fine).
Johnson, Alahi, Fei-Fei, "Perceptual Losses for Real-Time Style Transfer", ECCV 2016 (VGG16 layers).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sim2real.errors import ConfigError
from sim2real.style.weights import VGG16_LAYERS

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# ---------------------------------------------------------------------------- conversions
def to_tensor(images_u8: Sequence[np.ndarray], device: str | torch.device = "cpu") -> torch.Tensor:
    """Stack RGB uint8 (H, W, 3) images of one size into float32 (B, 3, H, W) in [0, 1]."""
    if not images_u8:
        raise ValueError("to_tensor: no images")
    shape = images_u8[0].shape
    for im in images_u8:
        if im.dtype != np.uint8 or im.ndim != 3 or im.shape[2] != 3 or im.shape != shape:
            raise ValueError(f"to_tensor expects RGB uint8 (H, W, 3) images of one size, got {im.shape} {im.dtype}")
    arr = np.stack(images_u8).astype(np.float32) / 255.0
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous().to(device)


def to_u8(x: torch.Tensor) -> list[np.ndarray]:
    """(B, 3, H, W) in [0, 1] → list of RGB uint8 (H, W, 3) (rounded, clipped)."""
    arr = (x.detach().float().clamp(0, 1) * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return [np.ascontiguousarray(a) for a in arr]


def resize(x: torch.Tensor, size_hw: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize with antialiasing when shrinking; identity when the size already matches."""
    if tuple(x.shape[-2:]) == tuple(size_hw):
        return x
    shrink = size_hw[0] < x.shape[-2] or size_hw[1] < x.shape[-1]
    return F.interpolate(x, size=size_hw, mode="bilinear", align_corners=False, antialias=shrink)


# ---------------------------------------------------------------------------- features and losses
class VGGFeatures(nn.Module):
    """Runs frozen VGG16 ``features`` up to the deepest requested layer; returns {name: (B, C, h, w)}.

    The input is RGB in [0, 1]; ImageNet normalisation happens inside.
    """

    def __init__(self, features: nn.Sequential, layers: Sequence[str]):
        super().__init__()
        unknown = [n for n in layers if n not in VGG16_LAYERS]
        if unknown:
            raise ConfigError(f"params.yaml: style.nst: unknown VGG16 layer(s) {unknown}; use names like relu2_2")
        self.names = tuple(dict.fromkeys(layers))
        self.index = {VGG16_LAYERS.index(n): n for n in self.names}
        last = max(self.index)
        if len(features) <= last:
            raise ConfigError(f"params.yaml: style.nst: layer {VGG16_LAYERS[last]} is deeper than the network built")
        self.body = features[: last + 1]
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {}
        h = (x - self.mean) / self.std
        for i, layer in enumerate(self.body):
            h = layer(h)
            if i in self.index:
                out[self.index[i]] = h
        return out


def gram(f: torch.Tensor) -> torch.Tensor:
    """Gram matrix of features (B, C, h, w) → (B, C, C), divided by h·w; computed in float32."""
    b, c, h, w = f.shape
    flat = f.float().reshape(b, c, h * w)
    return flat @ flat.transpose(1, 2) / float(h * w)


def _rel_sq(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image ‖a − b‖² / ‖b‖² over all but the batch dimension → (B,)."""
    num = (a.float() - b.float()).pow(2).flatten(1).sum(1)
    den = b.float().pow(2).flatten(1).sum(1).clamp_min(1e-12)
    return num / den


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Mean absolute neighbour difference per image → (B,)."""
    dx = (x[..., :, 1:] - x[..., :, :-1]).abs().flatten(1).mean(1)
    dy = (x[..., 1:, :] - x[..., :-1, :]).abs().flatten(1).mean(1)
    return dx + dy


@dataclass(frozen=True)
class NSTConfig:
    """All knobs of :func:`gatys` / :func:`fast_nst` (mirrors ``params.yaml: style.nst``)."""

    content_layers: tuple[str, ...] = ("relu3_3",)
    style_layers: tuple[str, ...] = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")
    content_weight: float = 1.0
    style_weight: float = 10.0
    tv_weight: float = 0.0
    optimizer: str = "adam"          # adam | lbfgs
    lr: float = 0.015                # Adam step in [0, 1] pixel units; L-BFGS uses lr=1 + line search
    scales: tuple[float, ...] = (1.0,)
    steps: tuple[int, ...] = (5,)    # per scale
    plateau_rel_tol: float = 1e-3    # stop a scale when the loss improved less than this ...
    plateau_patience: int = 10       # ... relative amount over this many steps (0 = never stop early)
    amp: bool = False                # bfloat16 autocast for the VGG forward pass (CUDA only)
    init: str = "photoreal"          # photoreal (warm start; the stage computes it) | content (plain Gatys)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if self.optimizer not in ("adam", "lbfgs"):
            raise ConfigError(f"params.yaml: style.nst.optimizer must be adam or lbfgs, got {self.optimizer!r}")
        if len(self.scales) != len(self.steps) or not self.scales:
            raise ConfigError("params.yaml: style.nst.scales and style.nst.steps must be non-empty lists of equal length")
        if any(not (0 < s <= 1) for s in self.scales) or list(self.scales) != sorted(self.scales):
            raise ConfigError(f"params.yaml: style.nst.scales must increase within (0, 1], got {list(self.scales)}")
        if any(int(n) < 0 for n in self.steps):
            raise ConfigError("params.yaml: style.nst.steps must be >= 0")
        if self.init not in ("content", "photoreal"):
            raise ConfigError(f"params.yaml: style.nst.init must be content or photoreal, got {self.init!r}")


@dataclass
class NSTResult:
    """Per-image final losses (B,) and the run's bookkeeping."""

    content_loss: np.ndarray
    style_loss: np.ndarray
    steps: int
    seconds: float
    history: list[float] = field(default_factory=list)  # total loss (batch sum) before each step, then the final
    evals: int = 0                   # forward+backward passes (L-BFGS's line search may take several a step)
    elapsed: list[float] = field(default_factory=list)  # seconds since the start, after each step
    evals_after: list[int] = field(default_factory=list)  # forward+backward passes so far, after each step


class StyleObjective:
    """The Gatys objective for fixed content and style images at one resolution."""

    def __init__(self, feats: VGGFeatures, content: torch.Tensor, style: torch.Tensor, cfg: NSTConfig):
        self.feats, self.cfg = feats, cfg
        self.autocast = cfg.amp and content.device.type == "cuda"
        with torch.no_grad():
            fc = self._forward(content)
            fs = self._forward(resize(style, tuple(content.shape[-2:])))
        self.content_t = {n: fc[n].detach() for n in cfg.content_layers}
        self.style_t = {n: gram(fs[n]).detach() for n in cfg.style_layers}

    def _forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.autocast:
            with torch.autocast("cuda", dtype=torch.bfloat16):
                return self.feats(x)
        return self.feats(x)

    def losses(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(content (B,), style (B,), weighted total (B,)) for the image batch ``x``."""
        f = self._forward(x)
        lc = torch.stack([_rel_sq(f[n], self.content_t[n]) for n in self.cfg.content_layers]).mean(0)
        ls = torch.stack([_rel_sq(gram(f[n]), self.style_t[n]) for n in self.cfg.style_layers]).mean(0)
        total = self.cfg.content_weight * lc + self.cfg.style_weight * ls
        if self.cfg.tv_weight:
            total = total + self.cfg.tv_weight * total_variation(x)
        return lc, ls, total


class _Adam:
    """Adam (Kingma & Ba 2015) on one tensor, without torch.optim (whose first use imports
    torch._dynamo, seconds of start-up per stage process). Same update as torch.optim.Adam."""

    def __init__(self, x: torch.Tensor, lr: float, betas=(0.9, 0.999), eps: float = 1e-8):
        self.x, self.lr, self.b1, self.b2, self.eps = x, float(lr), betas[0], betas[1], eps
        self.m = torch.zeros_like(x)
        self.v = torch.zeros_like(x)
        self.t = 0

    @torch.no_grad()
    def step(self, closure):
        with torch.enable_grad():
            loss = closure()
        g = self.x.grad
        self.t += 1
        self.m.mul_(self.b1).add_(g, alpha=1 - self.b1)
        self.v.mul_(self.b2).addcmul_(g, g, value=1 - self.b2)
        m_hat = self.m / (1 - self.b1 ** self.t)
        v_hat = self.v / (1 - self.b2 ** self.t)
        self.x.sub_(self.lr * m_hat / (v_hat.sqrt() + self.eps))
        return loss


def optimise(objective: StyleObjective, init: torch.Tensor, steps: int, cfg: NSTConfig,
             stop_below: float | None = None) -> tuple[torch.Tensor, NSTResult]:
    """Optimise pixels from ``init`` for up to ``steps`` steps (Adam or L-BFGS), clamped to [0, 1].

    ``stop_below``: also stop as soon as the loss (batch sum) of the current image is at or below
    this value (used by the benchmark to time plain Gatys to a given loss).
    """
    t0 = time.perf_counter()
    x = init.detach().clone().requires_grad_(True)
    if cfg.optimizer == "adam":
        opt = _Adam(x, lr=cfg.lr)
    else:
        opt = torch.optim.LBFGS([x], lr=1.0, max_iter=1, history_size=20, line_search_fn="strong_wolfe")
    history: list[float] = []
    elapsed: list[float] = []
    evals_after: list[int] = []
    evals = 0

    def closure():
        nonlocal evals
        evals += 1
        x.grad = None
        _, _, total = objective.losses(x)
        loss = total.sum()
        loss.backward()
        return loss

    done = 0
    for _ in range(int(steps)):
        loss = opt.step(closure)
        history.append(float(loss.detach()))
        with torch.no_grad():
            x.clamp_(0.0, 1.0)
        done += 1
        elapsed.append(time.perf_counter() - t0)
        evals_after.append(evals)
        if stop_below is not None and history[-1] <= stop_below:  # the image before this step was there
            break
        pat = cfg.plateau_patience
        if pat and len(history) > pat:
            old, new = history[-pat - 1], history[-1]
            if old - new < cfg.plateau_rel_tol * abs(old):
                break
    with torch.no_grad():
        lc, ls, total = objective.losses(x)
    history.append(float(total.sum()))
    res = NSTResult(lc.float().cpu().numpy(), ls.float().cpu().numpy(), done, time.perf_counter() - t0, history,
                    evals, elapsed, evals_after)
    return x.detach(), res


def gatys(feats: VGGFeatures, content: torch.Tensor, style: torch.Tensor, cfg: NSTConfig,
          steps: int) -> tuple[torch.Tensor, NSTResult]:
    """Plain Gatys NST at the content's resolution, initialised from the content image.

    Parameters
    ----------
    feats : VGG16 feature extractor holding the content and style layers of ``cfg``.
    content : (B, 3, H, W) float32 in [0, 1].
    style : (B, 3, Hs, Ws) float32 in [0, 1]; resized to (H, W).
    steps : optimiser steps (early stop per ``cfg.plateau_*``).
    """
    _check(content, style)
    obj = StyleObjective(feats, content, style, cfg)
    return optimise(obj, content, steps, cfg)


def fast_nst(feats: VGGFeatures, content: torch.Tensor, style: torch.Tensor,
             cfg: NSTConfig, init: torch.Tensor | None = None) -> tuple[torch.Tensor, NSTResult]:
    """Coarse-to-fine Gatys NST over ``cfg.scales`` with ``cfg.steps`` steps per scale.

    At each scale the initial image is that scale's start image (``init``, default the content)
    plus the upsampled change found at the previous scale; the output at full resolution is the
    full-resolution start image plus the upsampled final change (when the last scale is 1 it is
    the optimised image itself). The objective is always the content/style one of ``cfg``.
    Returned losses are those at the last scale solved.

    Parameters
    ----------
    init : optional (B, 3, H, W) float32 start image in [0, 1] of the content's shape, e.g. the
        photoreal transfer of the same frames (a warm start).

    Returns
    -------
    (styled (B, 3, H, W) in [0, 1], NSTResult) — ``steps`` is the total over all scales.
    """
    _check(content, style)
    cfg.validate()
    if init is not None and init.shape != content.shape:
        raise ValueError(f"init {tuple(init.shape)} must have the content's shape {tuple(content.shape)}")
    base = content if init is None else init
    h, w = content.shape[-2:]
    style_full = resize(style, (h, w))
    delta = None
    total_steps, t0, hist, evals = 0, time.perf_counter(), [], 0
    res = None
    x = base
    for scale, n in zip(cfg.scales, cfg.steps):
        size = (max(16, round(h * scale)), max(16, round(w * scale)))
        b_s = resize(base, size)
        start = b_s if delta is None else (b_s + resize(delta, size)).clamp(0, 1)
        obj = StyleObjective(feats, resize(content, size), resize(style_full, size), cfg)
        x, res = optimise(obj, start, int(n), cfg)
        delta = x - b_s
        total_steps += res.steps
        evals += res.evals
        hist += res.history
    out = x if tuple(x.shape[-2:]) == (h, w) else (base + resize(delta, (h, w))).clamp(0, 1)
    assert res is not None
    return out, NSTResult(res.content_loss, res.style_loss, total_steps, time.perf_counter() - t0, hist, evals)


def _check(content: torch.Tensor, style: torch.Tensor) -> None:
    for name, t in (("content", content), ("style", style)):
        if t.ndim != 4 or t.shape[1] != 3 or not t.is_floating_point():
            raise ValueError(f"{name} must be float (B, 3, H, W), got {tuple(t.shape)} {t.dtype}")
    if content.shape[0] != style.shape[0]:
        raise ValueError(f"content batch {content.shape[0]} != style batch {style.shape[0]}")


def build_features(net: nn.Sequential, cfg: NSTConfig, device: str | torch.device = "cpu") -> VGGFeatures:
    """Wrap VGG16 ``features`` for the layers of ``cfg`` and move it to ``device``."""
    return VGGFeatures(net, list(cfg.content_layers) + list(cfg.style_layers)).to(device).eval()
