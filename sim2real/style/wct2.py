"""WCT2: photorealistic style transfer with a wavelet-pooling VGG autoencoder (optional method).

The network follows the official release (clovaai/WCT2, ``model.py``), written here from its
documented layout, so its checkpoints load (:mod:`sim2real.style.wct2_checkpoints`):

- encoder: VGG-19 layers conv1_1 … conv4_1 (3×3 convolutions, reflection padding, ReLU) with
  every 2×2 max-pooling replaced by Haar *wavelet pooling*: the low-pass LL component goes on
  to the next layer, the high-pass components LH, HL, HH are kept as skip connections (the
  official 1×1 ``conv0`` in front is folded into conv1_1 when a checkpoint is loaded);
- decoder: the mirror image with *wavelet unpooling*, in one of the two official variants
  (``option_unpool``): ``sum`` — the exact inverse Haar transform of the decoder's feature (as
  LL) and the encoder's skips — or ``cat5`` (the official default) — the four bands unpooled
  separately and concatenated with the encoder's feature before pooling (5·C channels), which
  the next convolution reads;
- stylisation: whitening–colouring transforms (WCT) of the content's features towards the
  style's, on one of two schedules (``style.wct2_schedule``):

  ``official`` (default): the official ``transfer.py`` — WCT after every encoder level, on every
  skip band (LH, HL, HH of pool1–3) and before every decoder level (``transfer_at`` picks any of
  ``encoder``, ``skip``, ``decoder``; all three is the official default), each with the official
  ``wct_core``: covariances regularised with ``+ 1·I``, eigenvalues under 1e-5 dropped, and the
  result clamped to the content feature's range. With a content and a style label map it is the
  official label-wise transfer (``wct_core_segment``): each label present in both with more than
  10 pixels (and sizes within a factor 100, counted on the full-resolution maps) gets its own
  WCT, the label maps resized to each feature map with PIL-style nearest sampling; pixels of
  other labels keep their content features. Without label maps, one global WCT per point.

  ``bottleneck_skips``: this project's earlier schedule — WCT at the bottleneck (conv4_1) and on
  the skip bands only, ``+ 1e-5·I``, no clamp, always global.

Haar filters are the official ones (orthonormal, LL = ½[[1, 1], [1, 1]], LH = ½[[-1, 1], [-1, 1]],
HL = ½[[-1, -1], [1, 1]], HH = ½[[1, -1], [-1, 1]]; rows = y). Odd feature sides are
replicate-padded before pooling and cropped after unpooling (the official code needs sides that
are multiples of 8 and centre-crops its inputs to multiples of 16; on such sizes both agree).

Tensors: float32 (B, 3, H, W) RGB in [0, 1]; label maps (H, W) integer arrays.

References
----------
Yoo, Uh, Chun, Kang, Ha, "Photorealistic Style Transfer via Wavelet Transforms", ICCV 2019, and
its code github.com/clovaai/WCT2 (``model.py``, ``transfer.py``, ``utils/core.py``).
Li et al., "Universal Style Transfer via Feature Transforms", NeurIPS 2017.
Li et al., "A Closed-form Solution to Photorealistic Image Stylization", ECCV 2018 (label-wise WCT).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sim2real.errors import ConfigError

UNPOOL_OPTIONS = ("sum", "cat5")
SCHEDULES = ("official", "bottleneck_skips")
TRANSFER_AT = ("encoder", "skip", "decoder")
OFFICIAL_REG = 1.0            # wct_core: covariance + 1·I
OFFICIAL_RANK_EPS = 1e-5      # wct_core: eigenvalues below this are dropped
PROJECT_EPS = 1e-5            # bottleneck_skips: covariance + 1e-5·I
MIN_LABEL_PIXELS = 10         # compute_label_info: a label needs more pixels than this in both maps ...
MAX_LABEL_RATIO = 100.0       # ... and sizes within this factor of each other

# (in, out) channels per encoder conv; "P" = wavelet pooling. Names as in the official model.
ENCODER_CFG = [(3, 64), (64, 64), "P", (64, 128), (128, 128), "P", (128, 256), (256, 256), (256, 256),
               (256, 256), "P", (256, 512)]
ENCODER_NAMES = ("conv1_1", "conv1_2", "pool1", "conv2_1", "conv2_2", "pool2", "conv3_1", "conv3_2", "conv3_3",
                 "conv3_4", "pool3", "conv4_1")
DECODER_NAMES = ("conv4_1", "unpool3", "conv3_4", "conv3_3", "conv3_2", "conv3_1", "unpool2", "conv2_2", "conv2_1",
                 "unpool1", "conv1_2", "conv1_1")
# official encoder levels: index of the layer whose output is level k's feature (transfer point)
ENCODER_LEVEL_END = {"sum": {2: 1, 5: 2, 10: 3, 11: 4}, "cat5": {0: 1, 3: 2, 6: 3, 11: 4}}
# official decoder levels: index of the layer where decode(k) starts (its input is the transfer point)
DECODER_LEVEL_START = {0: 4, 5: 3, 8: 2, 11: 1}
# 2×2 Haar filters [row][col], as the official get_wav builds them
HAAR = {"LL": ((0.5, 0.5), (0.5, 0.5)), "LH": ((-0.5, 0.5), (-0.5, 0.5)),
        "HL": ((-0.5, -0.5), (0.5, 0.5)), "HH": ((0.5, -0.5), (-0.5, 0.5))}
BANDS = ("LL", "LH", "HL", "HH")

Hook = Callable[[int, torch.Tensor], torch.Tensor]


# ---------------------------------------------------------------------------- Haar wavelets
def haar_pool(x: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Orthonormal Haar wavelet pooling of (B, C, H, W) with the official filters (odd sides replicate-padded).

    Returns LL (B, C, ⌈H/2⌉, ⌈W/2⌉) and the skips (LH, HL, HH) of the same shape.
    """
    ph, pw = x.shape[-2] % 2, x.shape[-1] % 2
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    px = [[x[..., 0::2, 0::2], x[..., 0::2, 1::2]], [x[..., 1::2, 0::2], x[..., 1::2, 1::2]]]
    ll, lh, hl, hh = (sum(f[p][q] * px[p][q] for p in (0, 1) for q in (0, 1)) for f in (HAAR[b] for b in BANDS))
    return ll, (lh, hl, hh)


def haar_upsample(band: torch.Tensor, name: str, size_hw: tuple[int, int]) -> torch.Tensor:
    """One band unpooled with its filter (the official stride-2 transposed conv), cropped to ``size_hw``."""
    f = HAAR[name]
    b, c, h, w = band.shape
    out = band.new_empty(b, c, 2 * h, 2 * w)
    for p in (0, 1):
        for q in (0, 1):
            out[..., p::2, q::2] = f[p][q] * band
    return out[..., : size_hw[0], : size_hw[1]]


def haar_unpool(ll: torch.Tensor, skips: Sequence[torch.Tensor], size_hw: tuple[int, int]) -> torch.Tensor:
    """Inverse of :func:`haar_pool` (exact): the sum of the four unpooled bands."""
    return sum(haar_upsample(t, n, size_hw) for t, n in zip((ll, *skips), BANDS))


# ---------------------------------------------------------------------------- networks
@dataclass
class Skip:
    """What an encoder pooling layer hands its decoder mirror."""

    bands: list[torch.Tensor]          # LH, HL, HH (B, C, ⌈h/2⌉, ⌈w/2⌉)
    size_hw: tuple[int, int]           # the feature size before pooling
    original: torch.Tensor | None = None  # the feature before pooling (cat5 decoders read it)


class _Conv(nn.Module):
    def __init__(self, cin: int, cout: int, relu: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3)
        self.relu = relu

    def forward(self, x):
        x = self.conv(F.pad(x, (1, 1, 1, 1), mode="reflect"))
        return F.relu(x) if self.relu else x


def _check_unpool(unpool: str) -> str:
    if unpool not in UNPOOL_OPTIONS:
        raise ValueError(f"unpool must be one of {UNPOOL_OPTIONS}, got {unpool!r}")
    return unpool


class WaveEncoder(nn.Module):
    """VGG-19 conv1_1…conv4_1 with Haar wavelet pooling; returns (bottleneck, skips)."""

    def __init__(self, unpool: str = "sum"):
        super().__init__()
        self.unpool = _check_unpool(unpool)
        self.layers = nn.ModuleList([_Conv(*c) if c != "P" else nn.Identity() for c in ENCODER_CFG])
        self.is_pool = [c == "P" for c in ENCODER_CFG]

    def forward(self, x: torch.Tensor, hook: Hook | None = None) -> tuple[torch.Tensor, list[Skip]]:
        """``hook(level, feature) -> feature`` runs on each official encoder level's output (1…4)."""
        skips: list[Skip] = []
        ends = ENCODER_LEVEL_END[self.unpool]
        for i, (layer, pool) in enumerate(zip(self.layers, self.is_pool)):
            if pool:
                size = (int(x.shape[-2]), int(x.shape[-1]))
                orig = x if self.unpool == "cat5" else None
                x, bands = haar_pool(x)
                skips.append(Skip(list(bands), size, orig))
            else:
                x = layer(x)
            if hook is not None and i in ends:
                x = hook(ends[i], x)
        return x, skips


class WaveDecoder(nn.Module):
    """Mirror of :class:`WaveEncoder`; ``sum`` or ``cat5`` (5·C-channel) wavelet unpooling."""

    def __init__(self, unpool: str = "sum"):
        super().__init__()
        self.unpool = _check_unpool(unpool)
        k = 5 if unpool == "cat5" else 1
        cfg = [c if c == "P" else (c[1], c[0]) for c in reversed(ENCODER_CFG)]
        layers = []
        for i, c in enumerate(cfg):
            if c == "P":
                layers.append(nn.Identity())
            else:
                after_unpool = i > 0 and cfg[i - 1] == "P"
                layers.append(_Conv(c[0] * (k if after_unpool else 1), c[1], relu=(i != len(cfg) - 1)))
        self.layers = nn.ModuleList(layers)
        self.is_pool = [c == "P" for c in cfg]

    def forward(self, x: torch.Tensor, skips: Sequence[Skip], hook: Hook | None = None) -> torch.Tensor:
        """``hook(level, feature) -> feature`` runs on the input of each official decoder level (4…1)."""
        skips = list(skips)
        for i, (layer, pool) in enumerate(zip(self.layers, self.is_pool)):
            if hook is not None and i in DECODER_LEVEL_START:
                x = hook(DECODER_LEVEL_START[i], x)
            if not pool:
                x = layer(x)
                continue
            s = skips.pop()
            if self.unpool == "sum":
                x = haar_unpool(x, s.bands, s.size_hw)
            else:
                if s.original is None:
                    raise ValueError("a cat5 decoder needs the encoder's pre-pooling features (cat5 encoder)")
                ups = [haar_upsample(t, n, s.size_hw) for t, n in zip((x, *s.bands), BANDS)]
                x = torch.cat([*ups, s.original], dim=1)
        return x


# ---------------------------------------------------------------------------- WCT
def wct(fc: torch.Tensor, fs: torch.Tensor, alpha: float = 1.0, eps: float = PROJECT_EPS) -> torch.Tensor:
    """Whitening–colouring transform (``bottleneck_skips``) of content (B, C, h, w) to style (B, C, h', w')."""
    out = []
    for c, s in zip(fc, fs):
        ch = c.shape[0]
        xc = c.reshape(ch, -1).float()
        xs = s.reshape(ch, -1).float()
        mc, ms = xc.mean(1, keepdim=True), xs.mean(1, keepdim=True)
        xc, xs = xc - mc, xs - ms
        # covariances in float32 (large products), eigendecompositions in float64 (small)
        eye = torch.eye(ch, dtype=torch.float64, device=xc.device)
        cc = (xc @ xc.T).double() / max(xc.shape[1] - 1, 1) + eps * eye
        cs = (xs @ xs.T).double() / max(xs.shape[1] - 1, 1) + eps * eye
        vc, ec = torch.linalg.eigh(cc)
        vs, es = torch.linalg.eigh(cs)
        white = ec @ torch.diag(vc.clamp_min(eps).rsqrt()) @ ec.T
        colour = es @ torch.diag(vs.clamp_min(eps).sqrt()) @ es.T
        y = ((colour @ white).float() @ xc + ms).to(c.dtype).reshape(c.shape)
        out.append(alpha * y + (1 - alpha) * c)
    return torch.stack(out)


def _cov(x0: torch.Tensor, reg: float) -> torch.Tensor:
    n = x0.shape[1]
    cov = (x0 @ x0.T) / (n - 1 if n > 1 else 1)
    return cov + reg * torch.eye(x0.shape[0], dtype=x0.dtype, device=x0.device)


def _sqrtm_psd(cov: torch.Tensor, power: float, rank_eps: float) -> torch.Tensor:
    vals, vecs = torch.linalg.eigh(cov)
    keep = vals >= rank_eps
    v, e = vals[keep], vecs[:, keep]
    return (e * v.pow(power)) @ e.T


def wct_core(xc: torch.Tensor, xs: torch.Tensor, reg: float = OFFICIAL_REG,
             rank_eps: float = OFFICIAL_RANK_EPS) -> torch.Tensor:
    """The official WCT of content (C, n) to style (C, m) features, clamped to the content's range.

    y = Es·Λs^½·Esᵀ · Ec·Λc^-½·Ecᵀ · (xc − μc) + μs, with Λ, E the eigen-decompositions of the
    covariances (÷(n−1)) plus ``reg``·I, eigenvalues below ``rank_eps`` dropped; then clamped to
    [min xc, max xc] (one scalar range over all channels). In float32, as the official code
    (``+ reg·I`` keeps every eigenvalue ≥ ``reg``, so the whitening is well conditioned).
    """
    xc, xs = xc.float(), xs.float()
    lo, hi = xc.min(), xc.max()
    mc, ms = xc.mean(1, keepdim=True), xs.mean(1, keepdim=True)
    xc0 = xc - mc
    white = _sqrtm_psd(_cov(xc0, reg), -0.5, rank_eps)
    colour = _sqrtm_psd(_cov(xs - ms, reg), 0.5, rank_eps)
    return ((colour @ white) @ xc0 + ms).clamp(lo, hi)


@dataclass
class LabelMaps:
    """A content/style pair of label maps and the labels the official transfer pairs up.

    ``content`` (H, W) at the content image's resolution, ``style`` (H', W') at the style
    image's; ``labels``: content labels with more than :data:`MIN_LABEL_PIXELS` pixels in both
    maps and sizes within :data:`MAX_LABEL_RATIO` (official ``compute_label_info``).
    """

    content: np.ndarray
    style: np.ndarray
    labels: tuple[int, ...] = ()
    _resized: dict = field(default_factory=dict, repr=False)

    @classmethod
    def pair(cls, content: np.ndarray, style: np.ndarray) -> "LabelMaps":
        if content.ndim != 2 or style.ndim != 2:
            raise ValueError(f"label maps must be (H, W), got {content.shape} and {style.shape}")
        c_counts = np.bincount(content.ravel().astype(np.int64))
        s_counts = np.bincount(style.ravel().astype(np.int64), minlength=len(c_counts))
        labels = []
        for lab in np.flatnonzero(c_counts):
            c, s = int(c_counts[lab]), int(s_counts[lab])
            if c > MIN_LABEL_PIXELS and s > MIN_LABEL_PIXELS and c / s < MAX_LABEL_RATIO and s / c < MAX_LABEL_RATIO:
                labels.append(int(lab))
        return cls(content, style, tuple(labels))

    def at(self, which: str, size_hw: tuple[int, int]) -> np.ndarray:
        """The content or style map resized to ``size_hw`` by nearest sampling at pixel centres (as PIL)."""
        key = (which, tuple(size_hw))
        if key not in self._resized:
            m = self.content if which == "content" else self.style
            if m.shape != tuple(size_hw):
                m = cv2.resize(m.astype(np.int32 if m.max() > 255 else np.uint8), (size_hw[1], size_hw[0]),
                               interpolation=cv2.INTER_NEAREST_EXACT)
            self._resized[key] = m.reshape(-1)
        return self._resized[key]


def wct_official(fc: torch.Tensor, fs: torch.Tensor, labels: Sequence[LabelMaps | None] | None = None,
                 alpha: float = 1.0) -> torch.Tensor:
    """Official ``feature_wct`` on a batch: content (B, C, h, w) towards style (B, C, h', w').

    ``labels[b]``: that sample's :class:`LabelMaps` (label-wise WCT) or None (one global WCT).
    """
    out = []
    for b, (c, s) in enumerate(zip(fc, fs)):
        ch = c.shape[0]
        xc, xs = c.reshape(ch, -1), s.reshape(ch, -1)
        lm = labels[b] if labels is not None else None
        if lm is None:
            y = wct_core(xc, xs)
        else:
            lc = lm.at("content", tuple(c.shape[-2:]))
            ls = lm.at("style", tuple(s.shape[-2:]))
            y = xc.clone()
            for lab in lm.labels:
                ic, is_ = np.flatnonzero(lc == lab), np.flatnonzero(ls == lab)
                if ic.size == 0 or is_.size == 0:
                    continue
                ic_t = torch.from_numpy(ic).to(xc.device)
                y[:, ic_t] = wct_core(xc[:, ic_t], xs[:, torch.from_numpy(is_).to(xs.device)])
        out.append(alpha * y.reshape(c.shape) + (1 - alpha) * c)
    return torch.stack(out)


# ---------------------------------------------------------------------------- model + schedules
@dataclass(frozen=True)
class WCT2Options:
    """How :meth:`WCT2.stylize` transfers: ``style.wct2_schedule`` and ``style.wct2_transfer_at``."""

    schedule: str = "official"
    transfer_at: tuple[str, ...] = TRANSFER_AT

    @classmethod
    def from_params(cls, style: Mapping) -> "WCT2Options":
        schedule = style["wct2_schedule"]
        if schedule not in SCHEDULES:
            raise ConfigError(f"params.yaml: style.wct2_schedule must be one of {', '.join(SCHEDULES)}, "
                              f"got {schedule!r}")
        at = style["wct2_transfer_at"]
        if isinstance(at, str) or not at or any(a not in TRANSFER_AT for a in at):
            raise ConfigError(f"params.yaml: style.wct2_transfer_at must be a non-empty list of "
                              f"{', '.join(TRANSFER_AT)}, got {at!r}")
        return cls(str(schedule), tuple(a for a in TRANSFER_AT if a in at))


class WCT2(nn.Module):
    """Encoder + decoder (``unpool``: sum | cat5); :meth:`stylize` runs the wavelet-corrected transfer."""

    def __init__(self, unpool: str = "sum"):
        super().__init__()
        self.unpool = _check_unpool(unpool)
        self.encoder, self.decoder = WaveEncoder(unpool), WaveDecoder(unpool)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """decoder(encoder(x)), unclamped."""
        f, skips = self.encoder(x)
        return self.decoder(f, skips)

    @torch.no_grad()
    def stylize(self, content: torch.Tensor, style: torch.Tensor, alpha: float = 1.0,
                options: WCT2Options = WCT2Options(),
                labels: Sequence[LabelMaps | None] | None = None) -> torch.Tensor:
        """content (B, 3, H, W), style (B, 3, H', W') in [0, 1] → (B, 3, H, W) in [0, 1].

        ``labels``: per sample, :class:`LabelMaps` for the official label-wise transfer, or None
        (global); the ``bottleneck_skips`` schedule ignores them.
        """
        if options.schedule == "bottleneck_skips":
            fc, sk_c = self.encoder(content)
            fs, sk_s = self.encoder(style)
            f = wct(fc, fs, alpha)
            for a, b in zip(sk_c, sk_s):
                a.bands = [wct(x, y, alpha) for x, y in zip(a.bands, b.bands)]
            return self.decoder(f, sk_c).clamp(0, 1)
        return self._official(content, style, alpha, set(options.transfer_at), labels).clamp(0, 1)

    def _official(self, content, style, alpha, at: set, labels) -> torch.Tensor:
        # style features at every transfer point (official get_all_feature)
        s_enc: dict[int, torch.Tensor] = {}
        s_dec: dict[int, torch.Tensor] = {}

        def keep_enc(level, x):
            if "encoder" in at:
                s_enc[level] = x
            return x

        fs, sk_s = self.encoder(style, keep_enc)
        if "encoder" not in at:
            s_dec[4] = fs

        def keep_dec(level, x):
            if "decoder" in at and level < 4:
                s_dec[level] = x
            return x

        self.decoder(fs, sk_s, keep_dec)

        def w(x, y):
            return wct_official(x, y, labels, alpha)

        fc, sk_c = self.encoder(content, lambda level, x: w(x, s_enc[level]) if "encoder" in at else x)
        if "skip" in at:
            for a, b in zip(sk_c, sk_s):
                a.bands = [w(x, y) for x, y in zip(a.bands, b.bands)]
        return self.decoder(fc, sk_c, lambda level, x: w(x, s_dec[level]) if "decoder" in at and level in s_dec
                            else x)


def stylize_frames(model: WCT2, contents_u8: Sequence[np.ndarray], styles_u8: Sequence[np.ndarray],
                   content_labels: Sequence[np.ndarray | None] | None = None,
                   style_labels: Sequence[np.ndarray | None] | None = None,
                   options: WCT2Options = WCT2Options(), device: str = "cpu") -> tuple[list[np.ndarray], list[str]]:
    """Stylise same-size RGB uint8 frames; each style frame (and its label map) is resized to its content's size.

    Label-wise transfer (official schedule) for a frame that has both a content and a style label
    map (same class ids, e.g. :data:`sim2real.style.photoreal.COARSE_CLASSES`), global otherwise.

    Returns (RGB uint8 outputs, regions per frame: ``"semantic"`` or ``"global"``).
    """
    from sim2real.style.nst import to_tensor, to_u8
    h, w = contents_u8[0].shape[:2]
    n = len(contents_u8)
    c_labs = list(content_labels) if content_labels is not None else [None] * n
    s_labs = list(style_labels) if style_labels is not None else [None] * n
    styles, labels = [], []
    for s, cl, sl in zip(styles_u8, c_labs, s_labs):
        styles.append(s if s.shape[:2] == (h, w) else cv2.resize(s, (w, h), interpolation=cv2.INTER_AREA))
        if options.schedule == "official" and cl is not None and sl is not None:
            if sl.shape != (h, w):
                sl = cv2.resize(sl, (w, h), interpolation=cv2.INTER_NEAREST_EXACT)
            labels.append(LabelMaps.pair(cl, sl))
        else:
            labels.append(None)
    out = model.stylize(to_tensor(list(contents_u8), device), to_tensor(styles, device), options=options,
                        labels=labels)
    return to_u8(out), ["semantic" if lm is not None else "global" for lm in labels]


def random_wct2(seed: int = 0, unpool: str = "sum") -> WCT2:
    """WCT2 with seeded random weights (forward-pass timing only; the output is not an image)."""
    torch.manual_seed(0)  # nn.Module constructors draw from the global RNG; fixed below anyway
    model = WCT2(unpool)
    gen = torch.Generator().manual_seed(int(seed))
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu", generator=gen)
            nn.init.zeros_(m.bias)
    return model.eval()
