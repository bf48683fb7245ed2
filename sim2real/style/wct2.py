"""WCT2: photorealistic style transfer with a wavelet-pooling VGG autoencoder (optional method).

Implemented from the paper's description (not from the reference code):

- encoder: VGG-19 layers conv1_1 … conv4_1 (3×3 convolutions, reflection padding, ReLU) with
  every 2×2 max-pooling replaced by Haar *wavelet pooling*: the low-pass LL component goes on
  to the next layer, the high-pass components LH, HL, HH are kept as skip connections;
- decoder: the mirror image, with *wavelet unpooling* — the exact inverse Haar transform of the
  decoder's feature (as LL) and the encoder's skip (LH, HL, HH) — so the autoencoder can
  reconstruct fine detail without the blurring of max-pool/upsample autoencoders;
- stylisation: whitening–colouring transforms (WCT) of the content's features towards the
  style's at the bottleneck and on every high-frequency skip.

The networks need trained weights: ``style.wct2_checkpoints`` names a directory holding
``encoder.pth`` and ``decoder.pth``, state dicts of :class:`WaveEncoder` / :class:`WaveDecoder`
(read with ``torch.load(..., weights_only=True)``). They are not shipped; a missing directory or
file raises :class:`~sim2real.errors.ConfigError` naming the param. :func:`random_wct2` builds
seeded random weights for timing the forward pass only.

Tensors: float32 (B, 3, H, W) RGB in [0, 1].

References
----------
Yoo, Uh, Chun, Kang, Ha, "Photorealistic Style Transfer via Wavelet Transforms", ICCV 2019.
Li et al., "Universal Style Transfer via Feature Transforms", NeurIPS 2017.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from sim2real.errors import ConfigError
from sim2real.style.weights import load_state_dict_file

PARAM = "style.wct2_checkpoints"
ENCODER_FILE, DECODER_FILE = "encoder.pth", "decoder.pth"
# (in, out) channels per encoder conv; "P" = wavelet pooling
ENCODER_CFG = [(3, 64), (64, 64), "P", (64, 128), (128, 128), "P", (128, 256), (256, 256), (256, 256),
               (256, 256), "P", (256, 512)]


def haar_pool(x: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Orthonormal Haar wavelet pooling of (B, C, H, W) (odd sides reflect-padded).

    Returns LL (B, C, ⌈H/2⌉, ⌈W/2⌉) and the skips (LH, HL, HH) of the same shape.
    """
    ph, pw = x.shape[-2] % 2, x.shape[-1] % 2
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    a, b = x[..., 0::2, 0::2], x[..., 0::2, 1::2]
    c, d = x[..., 1::2, 0::2], x[..., 1::2, 1::2]
    return (a + b + c + d) / 2, ((a - b + c - d) / 2, (a + b - c - d) / 2, (a - b - c + d) / 2)


def haar_unpool(ll: torch.Tensor, skips: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
                size_hw: tuple[int, int]) -> torch.Tensor:
    """Inverse of :func:`haar_pool` (exact), cropped to ``size_hw``."""
    lh, hl, hh = skips
    b, c, h, w = ll.shape
    out = ll.new_empty(b, c, 2 * h, 2 * w)
    out[..., 0::2, 0::2] = (ll + lh + hl + hh) / 2
    out[..., 0::2, 1::2] = (ll - lh + hl - hh) / 2
    out[..., 1::2, 0::2] = (ll + lh - hl - hh) / 2
    out[..., 1::2, 1::2] = (ll - lh - hl + hh) / 2
    return out[..., : size_hw[0], : size_hw[1]]


class _Conv(nn.Module):
    def __init__(self, cin: int, cout: int, relu: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3)
        self.relu = relu

    def forward(self, x):
        x = self.conv(F.pad(x, (1, 1, 1, 1), mode="reflect"))
        return F.relu(x) if self.relu else x


class WaveEncoder(nn.Module):
    """VGG-19 conv1_1…conv4_1 with Haar wavelet pooling; returns (bottleneck, skips, sizes)."""

    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList([_Conv(*c) if c != "P" else nn.Identity() for c in ENCODER_CFG])
        self.is_pool = [c == "P" for c in ENCODER_CFG]

    def forward(self, x: torch.Tensor):
        skips, sizes = [], []
        for layer, pool in zip(self.layers, self.is_pool):
            if pool:
                sizes.append(tuple(x.shape[-2:]))
                x, s = haar_pool(x)
                skips.append(s)
            else:
                x = layer(x)
        return x, skips, sizes


class WaveDecoder(nn.Module):
    """Mirror of :class:`WaveEncoder` with Haar wavelet unpooling fed by the encoder's skips."""

    def __init__(self):
        super().__init__()
        cfg = []
        for c in reversed(ENCODER_CFG):
            cfg.append(c if c == "P" else (c[1], c[0]))
        self.layers = nn.ModuleList([
            nn.Identity() if c == "P" else _Conv(*c, relu=(i != len(cfg) - 1)) for i, c in enumerate(cfg)])
        self.is_pool = [c == "P" for c in cfg]

    def forward(self, x: torch.Tensor, skips, sizes) -> torch.Tensor:
        skips, sizes = list(skips), list(sizes)
        for layer, pool in zip(self.layers, self.is_pool):
            if pool:
                x = haar_unpool(x, skips.pop(), sizes.pop())
            else:
                x = layer(x)
        return x


def wct(fc: torch.Tensor, fs: torch.Tensor, alpha: float = 1.0, eps: float = 1e-5) -> torch.Tensor:
    """Whitening–colouring transform of content features (B, C, h, w) to style features (B, C, h', w')."""
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


class WCT2(nn.Module):
    """Encoder + decoder; :meth:`stylize` runs the wavelet-corrected transfer."""

    def __init__(self):
        super().__init__()
        self.encoder, self.decoder = WaveEncoder(), WaveDecoder()

    @torch.no_grad()
    def stylize(self, content: torch.Tensor, style: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
        """content (B, 3, H, W), style (B, 3, H', W') in [0, 1] → (B, 3, H, W) in [0, 1]."""
        fc, sk_c, sizes = self.encoder(content)
        fs, sk_s, _ = self.encoder(style)
        f = wct(fc, fs, alpha)
        skips = [tuple(wct(a, b, alpha) for a, b in zip(sc, ss)) for sc, ss in zip(sk_c, sk_s)]
        return self.decoder(f, skips, sizes).clamp(0, 1)


def random_wct2(seed: int = 0) -> WCT2:
    """WCT2 with seeded random weights (forward-pass timing only; the output is not an image)."""
    torch.manual_seed(0)  # nn.Module constructors draw from the global RNG; fixed below anyway
    model = WCT2()
    gen = torch.Generator().manual_seed(int(seed))
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu", generator=gen)
            nn.init.zeros_(m.bias)
    return model.eval()


def load_wct2(checkpoints: str | Path | None) -> WCT2:
    """Load encoder.pth and decoder.pth from the ``style.wct2_checkpoints`` directory.

    Raises
    ------
    ConfigError naming ``style.wct2_checkpoints`` when the directory or a file is missing or
    does not fit the architecture.
    """
    if checkpoints in (None, "", "null"):
        raise ConfigError(f"params.yaml: {PARAM} is not set; the wct2 method needs trained WCT2 weights "
                          f"({ENCODER_FILE}, {DECODER_FILE}) in a directory")
    root = Path(checkpoints).expanduser()
    model = WCT2()
    for name, part in ((ENCODER_FILE, model.encoder), (DECODER_FILE, model.decoder)):
        path = root / name
        if not path.is_file():
            raise ConfigError(f"params.yaml: {PARAM}: {path} not found; put the WCT2 {name} state dict there")
        state = load_state_dict_file(path, f"WCT2 {name} ({PARAM})")
        try:
            part.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ConfigError(f"{path}: does not fit the WCT2 architecture ({PARAM}): {str(exc)[:300]}") from None
    return model.eval()
