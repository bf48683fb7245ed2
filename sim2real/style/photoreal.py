"""Photorealistic, segmentation-aware colour and detail transfer without learned weights.

For a synthetic frame (content) and a real frame (style), every semantic class present in both
frames gets its own whitening–colouring transform (WCT) that moves the content's colour mean
and covariance to the style's. The transform acts

- in Ruderman's decorrelated lαβ colour space (log-LMS, opponent axes), as in Reinhard et al.;
- per band of a Haar wavelet decomposition: first each detail band (LH, HL, HH at each of
  ``levels`` levels; they carry the real camera's sharpness, noise and compression texture) gets
  its own per-class WCT, so that spectrum transfers too — WCT2's wavelet idea applied to pixels
  instead of VGG features. Detail transforms never amplify (edges would ring); where a band of
  the content is flatter than the style's (rendered images are noise-free) the missing
  covariance is added as seeded Gaussian noise of exactly that covariance. Then the
  reconstructed image's colours get the per-class WCT, so the final per-class mean and
  covariance are the style's;
- with soft class weights (Gaussian-smoothed one-hot masks, renormalised), so neighbouring
  classes blend their transforms and no seams appear at class boundaries.

Classes missing in the style frame (or with fewer than ``min_pixels`` pixels) use the global
(whole-frame) transform. Without segmentation for either frame, horizontal image bands
(sky-ish top, road-ish bottom in driving frames) act as the regions.

The transform is the identity when style = content (same image, same labels): every per-class
WCT is then the identity and no noise is added.

Semantic maps use the coarse classes :data:`COARSE_CLASSES`; :func:`coarse_from_vkitti2` and
:func:`coarse_from_cityscapes` map vKITTI2 categories and Cityscapes label ids onto them.

References
----------
Reinhard, Ashikhmin, Gooch, Shirley, "Color Transfer between Images", IEEE CG&A 2001 (lαβ).
Ruderman, Cronin, Chiao, "Statistics of cone responses to natural images", JOSA A 1998.
Li et al., "Universal Style Transfer via Feature Transforms", NeurIPS 2017 (WCT).
Yoo et al., "Photorealistic Style Transfer via Wavelet Transforms", ICCV 2019 (WCT2).
Mallat, "A Theory for Multiresolution Signal Decomposition", IEEE PAMI 1989 (Haar pyramid).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from sim2real.formats.vkitti2 import CATEGORY_COLORS

# ---------------------------------------------------------------------------- coarse classes
COARSE_CLASSES: tuple[str, ...] = ("road", "sky", "vegetation", "building", "vehicle", "other")
_C = {n: i for i, n in enumerate(COARSE_CLASSES)}

#: vKITTI2 category (colors.txt) → coarse class
VKITTI2_TO_COARSE: dict[str, str] = {
    "Terrain": "vegetation", "Sky": "sky", "Tree": "vegetation", "Vegetation": "vegetation",
    "Building": "building", "Road": "road", "GuardRail": "other", "TrafficSign": "other",
    "TrafficLight": "other", "Pole": "other", "Misc": "other", "Truck": "vehicle", "Car": "vehicle",
    "Van": "vehicle", "Undefined": "other",
}
#: Cityscapes label id → coarse class (ids not listed → other)
CITYSCAPES_TO_COARSE: dict[int, str] = {
    7: "road", 8: "road", 11: "building", 12: "building", 13: "other", 14: "other", 17: "other",
    19: "other", 20: "other", 21: "vegetation", 22: "vegetation", 23: "sky", 24: "other",
    25: "other", 26: "vehicle", 27: "vehicle", 28: "vehicle", 29: "vehicle", 31: "vehicle",
    32: "other", 33: "other",
}


def coarse_from_vkitti2(category_index: np.ndarray) -> np.ndarray:
    """vKITTI2 class map (H, W) uint8, an index into ``CATEGORY_COLORS`` order → coarse (H, W) uint8."""
    lut = np.array([_C[VKITTI2_TO_COARSE[name]] for name in CATEGORY_COLORS], dtype=np.uint8)
    if category_index.size and int(category_index.max()) >= len(lut):
        raise ValueError(f"vKITTI2 category index {int(category_index.max())} out of range")
    return lut[category_index]


def coarse_from_cityscapes(label_ids: np.ndarray) -> np.ndarray:
    """Cityscapes label-id map (H, W) integer → coarse (H, W) uint8."""
    lut = np.full(256, _C["other"], dtype=np.uint8)
    for cid, name in CITYSCAPES_TO_COARSE.items():
        lut[cid] = _C[name]
    return lut[np.clip(label_ids.astype(np.int64), 0, 255)]


def region_labels(height: int, width: int, bands: int) -> np.ndarray:
    """Fallback regions: ``bands`` equal horizontal bands, top = 0 → (H, W) uint8."""
    rows = np.minimum((np.arange(height) * bands) // max(height, 1), bands - 1).astype(np.uint8)
    return np.repeat(rows[:, None], width, axis=1)


# ---------------------------------------------------------------------------- colour space
_RGB2LMS = np.array([[0.3811, 0.5783, 0.0402], [0.1967, 0.7244, 0.0782], [0.0241, 0.1288, 0.8444]])
_LOG2LAB = np.diag([1 / np.sqrt(3), 1 / np.sqrt(6), 1 / np.sqrt(2)]) @ np.array([[1, 1, 1], [1, 1, -2], [1, -1, 0]])
_LAB2LOG = np.linalg.inv(_LOG2LAB)
_LMS2RGB = np.linalg.inv(_RGB2LMS)
LOG_OFFSET = 0.02  # log(LMS + offset): a soft log so near-black pixels stay well conditioned


def rgb_to_lab(rgb_u8: np.ndarray) -> np.ndarray:
    """RGB uint8 (H, W, 3) → Ruderman lαβ float32 (H, W, 3) (log of LMS + :data:`LOG_OFFSET`)."""
    x = rgb_u8.astype(np.float32) * np.float32(1 / 255.0)
    lms = x @ _RGB2LMS.T.astype(np.float32)
    return np.log(np.maximum(lms, 0) + np.float32(LOG_OFFSET)) @ _LOG2LAB.T.astype(np.float32)


def lab_to_rgb(lab: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rgb_to_lab` → RGB uint8 (rounded, clipped)."""
    lab = lab.astype(np.float32, copy=False)
    lms = np.exp(lab @ _LAB2LOG.T.astype(np.float32)) - np.float32(LOG_OFFSET)
    rgb = lms @ _LMS2RGB.T.astype(np.float32)
    return np.clip(np.rint(rgb * np.float32(255.0)), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------- Haar wavelets
def _pad_even(x: np.ndarray) -> np.ndarray:
    ph, pw = x.shape[0] % 2, x.shape[1] % 2
    if ph or pw:
        pad = [(0, ph), (0, pw)] + [(0, 0)] * (x.ndim - 2)
        x = np.pad(x, pad, mode="edge")
    return x


def haar2(x: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """One level of the orthonormal 2-D Haar transform of (H, W, ...) (odd sides edge-padded).

    Returns LL and (LH, HL, HH), each (ceil(H/2), ceil(W/2), ...).
    """
    x = _pad_even(x)
    a, b = x[0::2, 0::2], x[0::2, 1::2]
    c, d = x[1::2, 0::2], x[1::2, 1::2]
    return (a + b + c + d) / 2, ((a - b + c - d) / 2, (a + b - c - d) / 2, (a - b - c + d) / 2)


def ihaar2(ll: np.ndarray, details: tuple[np.ndarray, np.ndarray, np.ndarray], shape_hw: tuple[int, int]) -> np.ndarray:
    """Inverse of :func:`haar2`, cropped to ``shape_hw``."""
    lh, hl, hh = details
    h2, w2 = ll.shape[:2]
    out = np.empty((2 * h2, 2 * w2) + ll.shape[2:], dtype=ll.dtype)
    out[0::2, 0::2] = (ll + lh + hl + hh) / 2
    out[0::2, 1::2] = (ll - lh + hl - hh) / 2
    out[1::2, 0::2] = (ll + lh - hl - hh) / 2
    out[1::2, 1::2] = (ll - lh - hl + hh) / 2
    return out[: shape_hw[0], : shape_hw[1]]


def _pool2(w: np.ndarray) -> np.ndarray:
    """2×2 mean pooling of weights (H, W, K), matching :func:`haar2`'s padding."""
    w = _pad_even(w)
    return (w[0::2, 0::2] + w[0::2, 1::2] + w[1::2, 0::2] + w[1::2, 1::2]) / 4


# ---------------------------------------------------------------------------- statistics
def _sqrtm(c: np.ndarray, inverse: bool = False, eps: float = 0.0) -> np.ndarray:
    vals, vecs = np.linalg.eigh((c + c.T) / 2)
    vals = np.maximum(vals, 0) + eps
    p = -0.5 if inverse else 0.5
    return (vecs * vals ** p) @ vecs.T


def weighted_moments(x: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Mean (3,), covariance (3, 3) and weight sum of pixels x (N, 3) with weights w (N,)."""
    s = float(w.sum())
    if s <= 0:
        return np.zeros(3), np.zeros((3, 3)), 0.0
    mu = (w @ x) / s
    xc = x - mu
    cov = (xc * w[:, None]).T @ xc / s
    return mu, cov, s


@dataclass(frozen=True)
class PhotorealConfig:
    """Knobs of :func:`photoreal_transfer` (mirrors ``params.yaml: style.photoreal``)."""

    levels: int = 1             # Haar levels; 0 = colour transfer on pixels only
    smooth_px: float = 6.0      # blend scale (px) at class boundaries; 0 = hard masks
    edge_aware: bool = True     # guided-filter blend (sharp at image edges) instead of a Gaussian
    min_pixels: int = 400       # smaller classes (in either frame) use the global transform
    region_bands: int = 3       # fallback regions when a frame has no semantic map (1 = global)
    noise: bool = True          # add the style's missing detail-band covariance as seeded noise
    eps: float = 1e-5           # covariance regulariser (lαβ units²)
    # classes whose colour follows the whole-frame transform (the camera's cast and tone) instead
    # of their own class statistics: a car's paint is its own, not the mean of the real cars
    global_classes: tuple[str, ...] = ("vehicle",)

    def __post_init__(self) -> None:
        bad = [c for c in self.global_classes if c not in COARSE_CLASSES]
        if bad:
            from sim2real.errors import ConfigError
            raise ConfigError(f"params.yaml: style.photoreal.global_classes: unknown {bad}; use {COARSE_CLASSES}")


def _onehot(labels: np.ndarray, n: int) -> np.ndarray:
    return (labels[..., None] == np.arange(n)[None, None, :]).astype(np.float32)


def _box(x: np.ndarray, r: int) -> np.ndarray:
    return cv2.boxFilter(x, -1, (2 * r + 1, 2 * r + 1), normalize=True, borderType=cv2.BORDER_REFLECT)


def guided_filter(guide: np.ndarray, src: np.ndarray, radius_px: int, eps: float) -> np.ndarray:
    """Grey-guide guided filter (He, Sun, Tang 2010): edge-preserving smoothing of ``src``.

    guide : (H, W) float32 in [0, 1]. src : (H, W) float32. Returns (H, W) float32.
    """
    mean_i, mean_p = _box(guide, radius_px), _box(src, radius_px)
    cov_ip = _box(guide * src, radius_px) - mean_i * mean_p
    var_i = _box(guide * guide, radius_px) - mean_i * mean_i
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    return _box(a, radius_px) * guide + _box(b, radius_px)


def _soft(onehot: np.ndarray, sigma: float, guide: np.ndarray | None = None) -> np.ndarray:
    """Soft class weights (H, W, K) summing to 1: one-hot masks smoothed by a Gaussian of ``sigma``
    px, or — with a grey ``guide`` image — by a guided filter of radius 2·sigma, which keeps the
    weights sharp where the class boundary is an image edge and blends where it is not."""
    if sigma <= 0:
        return onehot
    soft = np.empty(onehot.shape, dtype=np.float32)
    for k in range(onehot.shape[2]):
        m = onehot[..., k].astype(np.float32)
        if not m.any():
            soft[..., k] = 0
        elif guide is not None:
            soft[..., k] = guided_filter(guide, m, max(1, int(round(2 * sigma))), 1e-4)
        else:
            soft[..., k] = cv2.GaussianBlur(m, (0, 0), sigmaX=sigma, borderType=cv2.BORDER_REFLECT)
    soft = np.clip(soft, 0, None)
    # every pixel keeps at least its own class
    soft = np.maximum(soft, np.float32(1e-6) * onehot)
    return soft / soft.sum(-1, keepdims=True)


def moments_per_class(x: np.ndarray, labels: np.ndarray, n_classes: int, ref: np.ndarray | None = None
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Means (K+1, 3), covariances (K+1, 3, 3) and pixel counts (K+1,) of pixels x (N, 3) per
    class ``labels`` (N,) in [0, K) (−1 = excluded); row K holds the whole band (all pixels).

    Sums are weighted bincounts in float64 of pixels centred on ``ref`` (3,) (default: their
    mean), so the second moments do not cancel.
    """
    ref = x.mean(0, dtype=np.float64) if ref is None else np.asarray(ref, np.float64)
    xc = x.astype(np.float64) - ref
    lab = np.where(labels < 0, n_classes + 1, labels).astype(np.int64)  # excluded → a dropped bin
    k2 = n_classes + 2
    cnt = np.bincount(lab, minlength=k2).astype(np.float64)
    iu = np.triu_indices(3)
    cols = [xc[:, i] for i in range(3)] + [xc[:, i] * xc[:, j] for i, j in zip(*iu)]
    sums = np.stack([np.bincount(lab, weights=c, minlength=k2) for c in cols], 1)  # (K+2, 9)
    sums[n_classes] = sums.sum(0)        # whole band = all bins (including the excluded one)
    cnt[n_classes] = cnt.sum()
    sums, cnt = sums[: n_classes + 1], cnt[: n_classes + 1]
    safe = np.maximum(cnt, 1.0)[:, None]
    mu = sums[:, :3] / safe
    m2 = sums[:, 3:] / safe
    cov = np.empty((n_classes + 1, 3, 3))
    cov[:, iu[0], iu[1]] = m2
    cov[:, iu[1], iu[0]] = m2
    cov -= mu[:, :, None] * mu[:, None, :]
    return mu + ref, cov, cnt


def _band_transforms(xc: np.ndarray, lc: np.ndarray, xs: np.ndarray, ls: np.ndarray, n_classes: int,
                     min_w: float, cfg: PhotorealConfig, detail: bool, use_global: tuple[int, ...] = ()):
    """Per-class affine maps (A_k, b_k) and noise factors L_k for one band (flattened pixels,
    class labels (N,) with −1 = not used for statistics)."""
    ref = xc.mean(0, dtype=np.float64)  # one centring for both frames
    mu_c, cov_c, s_c = moments_per_class(xc, lc, n_classes, ref)
    mu_s, cov_s, s_s = moments_per_class(xs, ls, n_classes, ref)
    glob = _wct(mu_c[-1], cov_c[-1], mu_s[-1], cov_s[-1], cfg, detail)
    out = []
    for k in range(n_classes):
        if s_c[k] < min_w or s_s[k] < min_w or k in use_global:
            out.append(glob)
        else:
            out.append(_wct(mu_c[k], cov_c[k], mu_s[k], cov_s[k], cfg, detail))
    return out


def _wct(mu_c, cov_c, mu_s, cov_s, cfg: PhotorealConfig, detail: bool):
    eye = np.eye(3)
    a = _sqrtm(cov_s + cfg.eps * eye) @ _sqrtm(cov_c + cfg.eps * eye, inverse=True)
    lnoise = None
    if detail:
        gain = float(np.linalg.norm(a, 2))
        if gain > 1.0:  # never amplify detail (edges would ring); noise supplies the rest
            a = a / gain
    b = mu_s - a @ mu_c
    if detail and cfg.noise:
        resid = cov_s - a @ cov_c @ a.T
        vals, vecs = np.linalg.eigh((resid + resid.T) / 2)
        vals = np.where(vals > 4 * cfg.eps, vals, 0.0)
        if vals.any():
            lnoise = (vecs * np.sqrt(vals)) @ vecs.T
    return a, b, lnoise


def _apply(x: np.ndarray, w_soft: np.ndarray, maps, rng: np.random.Generator | None) -> np.ndarray:
    """Σ_k w_k (A_k x + b_k + L_k z) over (h, w, 3) pixels with soft weights (h, w, K).

    The weights blend the K affine maps into one 3×3 matrix and offset per pixel (two small
    matrix products) instead of K passes over the image.
    """
    shape = x.shape
    xf = x.reshape(-1, 3).astype(np.float32, copy=False)
    wf = w_soft.reshape(-1, w_soft.shape[-1]).astype(np.float32, copy=False)
    a = np.stack([m[0] for m in maps]).reshape(len(maps), 9).astype(np.float32)
    b = np.stack([m[1] for m in maps]).astype(np.float32)
    # most pixels lie inside one class: gather its map; blend only the mixed (boundary) pixels
    kmax = wf.argmax(1)
    mixed = np.flatnonzero(np.take_along_axis(wf, kmax[:, None], 1)[:, 0] < np.float32(0.9999))
    blend = lambda table: _blend(table, wf, kmax, mixed)
    out = _affine(blend(a), blend(b), xf)
    if rng is not None and any(m[2] is not None for m in maps):
        lk = np.stack([np.zeros((3, 3)) if m[2] is None else m[2] for m in maps]).reshape(len(maps), 9)
        z = rng.standard_normal(xf.shape, dtype=np.float32)
        out += _affine(blend(lk.astype(np.float32)), None, z)
    return out.reshape(shape)


def _blend(table: np.ndarray, wf: np.ndarray, kmax: np.ndarray, mixed: np.ndarray) -> np.ndarray:
    """Per-pixel Σ_k w_k table[k]: a gather for single-class pixels, a product for ``mixed`` ones."""
    out = np.take(table, kmax, axis=0)
    if mixed.size:
        out[mixed] = wf[mixed] @ table
    return out


def _affine(m9: np.ndarray, b: np.ndarray | None, x: np.ndarray) -> np.ndarray:
    """Per-pixel y = M x + b with M given row-major as (N, 9), x (N, 3)."""
    out = np.empty_like(x) if b is None else b.copy()
    for i in range(3):
        row = m9[:, 3 * i] * x[:, 0] + m9[:, 3 * i + 1] * x[:, 1] + m9[:, 3 * i + 2] * x[:, 2]
        if b is None:
            out[:, i] = row
        else:
            out[:, i] += row
    return out


def _resize_to(img: np.ndarray, hw: tuple[int, int], nearest: bool) -> np.ndarray:
    if img.shape[:2] == hw:
        return img
    interp = cv2.INTER_NEAREST if nearest else cv2.INTER_AREA
    return cv2.resize(img, (hw[1], hw[0]), interpolation=interp)


def photoreal_transfer(content_u8: np.ndarray, style_u8: np.ndarray,
                       content_labels: np.ndarray | None = None, style_labels: np.ndarray | None = None,
                       cfg: PhotorealConfig = PhotorealConfig(), rng: np.random.Generator | None = None,
                       n_classes: int = len(COARSE_CLASSES)) -> np.ndarray:
    """Segmentation-aware wavelet WCT of ``content_u8`` towards ``style_u8``.

    Parameters
    ----------
    content_u8, style_u8 : RGB uint8 (H, W, 3); the style is resized to the content's size.
    content_labels, style_labels : (H, W) integer class maps in ``[0, n_classes)`` (coarse
        classes), or None for either → :func:`region_labels` with ``cfg.region_bands`` for both.
    cfg : :class:`PhotorealConfig`.
    rng : seeds the detail-band noise (``cfg.noise``); None adds no noise.

    Returns
    -------
    RGB uint8 (H, W, 3), same geometry as the content.
    """
    for name, im in (("content", content_u8), ("style", style_u8)):
        if im.dtype != np.uint8 or im.ndim != 3 or im.shape[2] != 3:
            raise ValueError(f"{name} must be RGB uint8 (H, W, 3), got {im.shape} {im.dtype}")
    h, w = content_u8.shape[:2]
    style_u8 = _resize_to(style_u8, (h, w), nearest=False)
    use_global: tuple[int, ...] = tuple(COARSE_CLASSES.index(c) for c in cfg.global_classes
                                        if n_classes == len(COARSE_CLASSES))
    if content_labels is None or style_labels is None:
        content_labels = style_labels = region_labels(h, w, max(1, cfg.region_bands))
        n_classes = max(1, cfg.region_bands)
        use_global = ()
    for name, lab in (("content_labels", content_labels), ("style_labels", style_labels)):
        if lab.ndim != 2:
            raise ValueError(f"{name} must be (H, W), got {lab.shape}")
        if lab.size and (lab.min() < 0 or lab.max() >= n_classes):
            raise ValueError(f"{name} values must lie in [0, {n_classes})")
    if content_labels.shape != (h, w):
        raise ValueError(f"content_labels {content_labels.shape} do not match the content {(h, w)}")
    style_labels = _resize_to(style_labels.astype(np.uint8), (h, w), nearest=True)

    oc, os_ = _onehot(content_labels, n_classes), _onehot(style_labels, n_classes)
    guide = cv2.cvtColor(content_u8, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    soft_c = _soft(oc, cfg.smooth_px, guide if cfg.edge_aware else None)
    x, xs = rgb_to_lab(content_u8), rgb_to_lab(style_u8)
    if cfg.levels > 0:
        x = _detail_transfer(x, xs, oc, os_, soft_c, cfg, rng, n_classes)
    maps = _band_transforms(x.reshape(-1, 3), content_labels.reshape(-1).astype(np.int64), xs.reshape(-1, 3),
                            style_labels.reshape(-1).astype(np.int64), n_classes, cfg.min_pixels, cfg, detail=False,
                            use_global=use_global)
    return lab_to_rgb(_apply(x, soft_c, maps, None))


def _inner_labels(pooled_onehot: np.ndarray) -> np.ndarray:
    """(N,) class of each coefficient whose support lies inside one class, −1 elsewhere."""
    flat = pooled_onehot.reshape(-1, pooled_onehot.shape[-1])
    k = flat.argmax(1)
    return np.where(np.take_along_axis(flat, k[:, None], 1)[:, 0] > 0.999, k, -1)


def _detail_transfer(x: np.ndarray, xs: np.ndarray, oc: np.ndarray, os_: np.ndarray, soft_c: np.ndarray,
                     cfg: PhotorealConfig, rng: np.random.Generator | None, n_classes: int) -> np.ndarray:
    """Move each Haar detail band's per-class covariance to the style's (lαβ, (H, W, 3) float32).

    Statistics use only coefficients whose 2^l × 2^l support lies inside one class (so class
    boundaries do not count as texture); the transforms never amplify (largest singular value
    capped at 1) and the missing covariance is added as seeded noise instead.
    """
    shapes, dets_c, dets_s, inner_c, inner_s, softs = [], [], [], [], [], []
    ll_c, ll_s = x, xs
    for _ in range(cfg.levels):
        shapes.append(ll_c.shape[:2])
        ll_c, det_c = haar2(ll_c)
        ll_s, det_s = haar2(ll_s)
        oc, os_, soft_c = _pool2(oc), _pool2(os_), _pool2(soft_c)
        dets_c.append(det_c); dets_s.append(det_s); softs.append(soft_c)
        inner_c.append(_inner_labels(oc)); inner_s.append(_inner_labels(os_))
    out = ll_c
    for lvl in reversed(range(cfg.levels)):
        min_w = cfg.min_pixels / 4 ** (lvl + 1)
        new = []
        for dc, ds in zip(dets_c[lvl], dets_s[lvl]):
            maps = _band_transforms(dc.reshape(-1, 3), inner_c[lvl], ds.reshape(-1, 3), inner_s[lvl],
                                    n_classes, min_w, cfg, detail=True)
            new.append(_apply(dc, softs[lvl], maps, rng))
        out = ihaar2(out, tuple(new), shapes[lvl])
    return out


def class_moments(rgb_u8: np.ndarray, labels: np.ndarray, n_classes: int = len(COARSE_CLASSES),
                  ) -> dict[int, tuple[np.ndarray, np.ndarray, int]]:
    """Per-class (mean (3,), covariance (3, 3), pixel count) of the lαβ colours of an image."""
    lab = rgb_to_lab(rgb_u8).reshape(-1, 3)
    flat = labels.reshape(-1)
    out = {}
    for k in range(n_classes):
        sel = flat == k
        if sel.sum() >= 2:
            mu, cov, s = weighted_moments(lab[sel], np.ones(int(sel.sum())))
            out[k] = (mu, cov, int(s))
    return out


def moment_mismatch(a_u8: np.ndarray, a_labels: np.ndarray, b_u8: np.ndarray, b_labels: np.ndarray,
                    n_classes: int = len(COARSE_CLASSES), min_pixels: int = 400) -> float:
    """Mean over classes with ≥ ``min_pixels`` in both images of
    (‖μ_a − μ_b‖² + ‖Σ_a − Σ_b‖_F) / (tr Σ_b + ‖Σ_b‖_F) in lαβ; NaN when no class is shared."""
    ma = class_moments(a_u8, a_labels, n_classes)
    mb = class_moments(b_u8, b_labels, n_classes)
    vals = []
    for k in ma:
        if k in mb and ma[k][2] >= min_pixels and mb[k][2] >= min_pixels:
            (mu_a, c_a, _), (mu_b, c_b, _) = ma[k], mb[k]
            den = np.trace(c_b) + np.linalg.norm(c_b) + 1e-12
            vals.append((np.sum((mu_a - mu_b) ** 2) + np.linalg.norm(c_a - c_b)) / den)
    return float(np.mean(vals)) if vals else float("nan")
