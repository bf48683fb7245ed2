"""Full-resolution translation with a fully-convolutional CycleGAN generator.

Frames are 1242×375 and not square. ``mode="whole"`` runs the generator on the whole frame at
once after reflect-padding it to a multiple of 4 (the generator downsamples twice by 2) and
crops the result back; ``mode="tiled"`` runs overlapping tiles and blends them with linear
ramps in the overlaps, for when a whole frame does not fit in memory. Either way the output has
exactly the input size.

Note: instance normalisation normalises over the tile, so tiled output can differ slightly in
tone from whole-frame output; prefer ``whole`` whenever memory allows.

References
----------
Zhu et al., "Unpaired Image-to-Image Translation using Cycle-Consistent Adversarial Networks",
ICCV 2017 (fully-convolutional generator applied at test resolution).
"""
from __future__ import annotations

import contextlib

import numpy as np
import torch
import torch.nn.functional as F

from sim2real.cyclegan.networks import SIZE_MULTIPLE
from sim2real.errors import ConfigError

MODES = ("whole", "tiled")


def to_tensor(rgb_u8: np.ndarray, device: str | torch.device = "cpu") -> torch.Tensor:
    """(H, W, 3) uint8 RGB → (1, 3, H, W) float32 in [-1, 1]."""
    if rgb_u8.dtype != np.uint8 or rgb_u8.ndim != 3 or rgb_u8.shape[2] != 3:
        raise ValueError(f"expected (H, W, 3) uint8, got {rgb_u8.shape} {rgb_u8.dtype}")
    t = torch.from_numpy(np.ascontiguousarray(rgb_u8)).to(device).permute(2, 0, 1).unsqueeze(0)
    return t.float().div_(127.5).sub_(1.0)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) or (3, H, W) float in [-1, 1] → (H, W, 3) uint8 RGB (rounded, clipped)."""
    if x.ndim == 4:
        x = x[0]
    y = ((x.detach().float() + 1.0) * 127.5).round_().clamp_(0, 255).to(torch.uint8)
    return y.permute(1, 2, 0).cpu().numpy()


def pad_to_multiple(x: torch.Tensor, multiple: int = SIZE_MULTIPLE) -> tuple[torch.Tensor, tuple[int, int]]:
    """Reflect-pad (N, C, H, W) on the bottom/right to multiples of ``multiple``; returns (padded, (H, W))."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        mode = "reflect" if (ph < h and pw < w) else "replicate"
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    return x, (h, w)


def _autocast(device: torch.device, amp: bool):
    if amp and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.float16)
    return contextlib.nullcontext()


def _run_whole(generator: torch.nn.Module, x: torch.Tensor, amp: bool) -> torch.Tensor:
    xp, (h, w) = pad_to_multiple(x)
    with _autocast(x.device, amp):
        y = generator(xp)
    return y[..., :h, :w].float()


def _starts(size: int, tile: int, overlap: int) -> list[int]:
    if size <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, size - tile, stride))
    starts.append(size - tile)
    return starts


def _ramp(length: int, overlap: int, at_start: bool, at_end: bool) -> torch.Tensor:
    """1-D blending weights: linear ramps of ``overlap`` px at inner edges, 1 elsewhere (> 0 everywhere)."""
    w = torch.ones(length)
    if overlap > 0:
        ramp = (torch.arange(overlap, dtype=torch.float32) + 0.5) / overlap
        n = min(overlap, length)
        if not at_start:
            w[:n] = torch.minimum(w[:n], ramp[:n])
        if not at_end:
            w[-n:] = torch.minimum(w[-n:], ramp[:n].flip(0))
    return w


def _run_tiled(generator: torch.nn.Module, x: torch.Tensor, tile_px: int, overlap_px: int, amp: bool) -> torch.Tensor:
    _, c, h, w = x.shape
    out = torch.zeros((1, 3, h, w), dtype=torch.float32, device=x.device)
    weight = torch.zeros((1, 1, h, w), dtype=torch.float32, device=x.device)
    ys, xs = _starts(h, tile_px, overlap_px), _starts(w, tile_px, overlap_px)
    for i, y0 in enumerate(ys):
        for j, x0 in enumerate(xs):
            tile = x[..., y0:y0 + tile_px, x0:x0 + tile_px]
            th, tw = tile.shape[-2:]
            y = _run_whole(generator, tile, amp)
            wy = _ramp(th, overlap_px, i == 0, i == len(ys) - 1).to(x.device)
            wx = _ramp(tw, overlap_px, j == 0, j == len(xs) - 1).to(x.device)
            wt = (wy[:, None] * wx[None, :])[None, None]
            out[..., y0:y0 + th, x0:x0 + tw] += y * wt
            weight[..., y0:y0 + th, x0:x0 + tw] += wt
    return out / weight


def check_translate_params(mode: str, tile_px: int, overlap_px: int) -> None:
    """Raise ConfigError for an unknown mode or an unusable tile/overlap size."""
    if mode not in MODES:
        raise ConfigError(f"cyclegan.translate.mode must be one of {MODES}, got '{mode}'")
    if mode == "tiled":
        if tile_px < 16 or tile_px % SIZE_MULTIPLE:
            raise ConfigError(f"cyclegan.translate.tile_px must be a multiple of {SIZE_MULTIPLE} and >= 16, got {tile_px}")
        if not 0 <= overlap_px < tile_px // 2 + 1:
            raise ConfigError(f"cyclegan.translate.overlap_px must be in [0, tile_px/2], got {overlap_px}")


@torch.inference_mode()
def translate_image(
    generator: torch.nn.Module,
    rgb_u8: np.ndarray,
    *,
    mode: str = "whole",
    tile_px: int = 512,
    overlap_px: int = 64,
    amp: bool = False,
) -> np.ndarray:
    """Translate one frame with a CycleGAN generator; the output has exactly the input size.

    Parameters
    ----------
    generator : a :class:`~sim2real.cyclegan.networks.ResnetGenerator` (eval mode), on the
        device the computation should run on.
    rgb_u8 : (H, W, 3) uint8 RGB, any H, W >= 2.
    mode : "whole" (reflect-pad to a multiple of 4, run once, crop back) or "tiled"
        (``tile_px`` square tiles overlapping by ``overlap_px``, blended with linear ramps).
    amp : float16 autocast when the generator is on CUDA (ignored on CPU).

    Returns
    -------
    (H, W, 3) uint8 RGB.
    """
    check_translate_params(mode, tile_px, overlap_px)
    if rgb_u8.ndim != 3 or rgb_u8.shape[0] < 2 or rgb_u8.shape[1] < 2:
        raise ValueError(f"expected (H, W, 3) with H, W >= 2, got {rgb_u8.shape}")
    device = next(generator.parameters()).device
    x = to_tensor(rgb_u8, device)
    y = _run_whole(generator, x, amp) if mode == "whole" else _run_tiled(generator, x, tile_px, overlap_px, amp)
    out = to_uint8(y)
    assert out.shape == rgb_u8.shape, (out.shape, rgb_u8.shape)
    return out
