"""Official clovaai/WCT2 checkpoints and transfer, rebuilt for tests from the documented layout.

- :func:`official_state_dicts`: random encoder/decoder state dicts with the official key names
  and shapes (``model.py``: ``conv0`` 1×1, ``convX_Y``, the cat5 decoder's ``conv3_4_2`` /
  ``conv2_2_2`` / ``conv1_2_2`` reading 5·C channels, the fixed Haar filters
  ``poolK.{LL,LH,HL,HH}.weight`` / ``recon_blockK.{…}.weight`` of shape (C, 1, 2, 2)).
- :class:`OfficialReference`: a small, deliberately plain re-statement of the official forward
  pass (``WaveEncoder.encode`` / ``WaveDecoder.decode`` level by level, Haar pooling as stride-2
  grouped convolutions, unpooling as transposed ones, ``cat5`` = concat of the four unpooled
  bands and the pre-pooling feature) and of the official transfer (``transfer.py``
  ``WCT2.transfer`` with ``get_all_feature``; ``utils/core.py`` ``wct_core`` with SVD of the
  covariance + I, ``get_rank``, clamp; ``wct_core_segment`` with PIL nearest resizing;
  ``utils/io.py`` ``compute_label_info``). It shares no code with ``sim2real.style.wct2``.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

ENC_CONVS = [("conv1_1", 3, 64), ("conv1_2", 64, 64), ("conv2_1", 64, 128), ("conv2_2", 128, 128),
             ("conv3_1", 128, 256), ("conv3_2", 256, 256), ("conv3_3", 256, 256), ("conv3_4", 256, 256),
             ("conv4_1", 256, 512)]


def haar_filters() -> dict[str, np.ndarray]:
    """The official get_wav: L = [1, 1]/√2, H = [-1, 1]/√2, XY = Xᵀ·Y (2×2)."""
    lo = np.ones((1, 2)) / math.sqrt(2)
    hi = np.ones((1, 2)) / math.sqrt(2)
    hi[0, 0] = -hi[0, 0]
    return {"LL": lo.T * lo, "LH": lo.T * hi, "HL": hi.T * lo, "HH": hi.T * hi}


def _haar_weight(c: int, band: str) -> torch.Tensor:
    return torch.from_numpy(haar_filters()[band]).float()[None, None].expand(c, 1, 2, 2).clone()


def _conv(gen, cout, cin, k=3, gain=2.0, bias_std=0.05):
    w = torch.randn(cout, cin, k, k, generator=gen) * math.sqrt(gain / (cin * k * k))
    return w, torch.randn(cout, generator=gen) * bias_std


def official_state_dicts(option: str, seed: int = 0) -> tuple[dict, dict]:
    """(encoder, decoder) state dicts in the official layout, seeded random weights.

    He-scaled convolutions with small random biases; the last decoder conv is scaled so the
    reconstruction is an image-like signal around 0.5 with standard deviation 0.15.
    """
    gen = torch.Generator().manual_seed(seed)
    m = {"sum": 1, "cat5": 5}[option]
    enc = {}
    a = torch.eye(3) + 0.2 * torch.randn(3, 3, generator=gen)
    enc["conv0.weight"], enc["conv0.bias"] = a[:, :, None, None], 0.1 * torch.randn(3, generator=gen)
    for name, cin, cout in ENC_CONVS:
        enc[f"{name}.weight"], enc[f"{name}.bias"] = _conv(gen, cout, cin)
    for k, c in ((1, 64), (2, 128), (3, 256)):
        for band in ("LL", "LH", "HL", "HH"):
            enc[f"pool{k}.{band}.weight"] = _haar_weight(c, band)
    dec = {}
    suffix = "" if option == "sum" else "_2"
    for name, cin, cout in [("conv4_1", 512, 256), (f"conv3_4{suffix}", 256 * m, 256), ("conv3_3", 256, 256),
                            ("conv3_2", 256, 256), ("conv3_1", 256, 128), (f"conv2_2{suffix}", 128 * m, 128),
                            ("conv2_1", 128, 64), (f"conv1_2{suffix}", 64 * m, 64)]:
        dec[f"{name}.weight"], dec[f"{name}.bias"] = _conv(gen, cout, cin)
    w, _ = _conv(gen, 3, 64)
    dec["conv1_1.weight"], dec["conv1_1.bias"] = w, torch.full((3,), 0.5)
    for k, c in ((1, 64), (2, 128), (3, 256)):
        for band in ("LL", "LH", "HL", "HH"):
            dec[f"recon_block{k}.{band}.weight"] = _haar_weight(c, band)
    # scale the last conv so a smooth test image reconstructs with a standard deviation of 0.15
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 32), torch.linspace(0, 1, 64), indexing="ij")
    out = OfficialReference(enc, dec, option).reconstruct(torch.stack([yy, xx, 1 - yy])[None])
    dec["conv1_1.weight"] *= 0.15 / float(out.std())
    return enc, dec


# ---------------------------------------------------------------------------- reference
def _pil_nearest(seg: np.ndarray, hw) -> np.ndarray:
    return np.asarray(Image.fromarray(seg).resize((hw[1], hw[0]), Image.NEAREST))


def label_info(cseg: np.ndarray, sseg: np.ndarray):
    """utils/io.py compute_label_info."""
    label_set = np.unique(cseg)
    indicator = np.zeros(int(cseg.max()) + 1)
    for lab in label_set:
        c, s = int((cseg == lab).sum()), int((sseg == lab).sum())
        indicator[lab] = c > 10 and s > 10 and c / s < 100 and s / c < 100
    return label_set, indicator


def _svd(feat, iden):
    f = feat - feat.mean(1, keepdim=True)
    conv = f @ f.t() / (feat.shape[1] - 1) if feat.shape[1] > 1 else f @ f.t()
    if iden:
        conv = conv + torch.eye(feat.shape[0], dtype=feat.dtype)
    return torch.linalg.svd(conv)  # torch.svd(conv, some=False) in the official code (deprecated alias)


def _rank(s, eps=1e-5):
    for i in range(len(s) - 1, -1, -1):
        if s[i] >= eps:
            return i + 1
    return len(s)


def wct_core(cf, sf):
    """utils/core.py wct_core (float32, as the official)."""
    lo, hi = cf.min(), cf.max()
    c0 = cf - cf.mean(1, keepdim=True)
    cu, ce, _ = _svd(cf, True)
    su, se, _ = _svd(sf, True)
    ks, kc = _rank(se), _rank(ce)
    ede = su[:, :ks] @ torch.diag(se[:ks].sqrt()) @ su[:, :ks].t()
    white = cu[:, :kc] @ torch.diag(ce[:kc].pow(-0.5)) @ cu[:, :kc].t() @ c0
    return (ede @ white + sf.mean(1, keepdim=True)).clamp(lo, hi)


def feature_wct(cfeat, sfeat, cseg=None, sseg=None, label_set=None, indicator=None):
    """utils/core.py feature_wct (alpha = 1) for one image (1, C, h, w)."""
    c = cfeat[0].reshape(cfeat.shape[1], -1)
    s = sfeat[0].reshape(sfeat.shape[1], -1)
    if label_set is None:
        return wct_core(c, s).reshape(cfeat.shape)
    rc = _pil_nearest(cseg, cfeat.shape[-2:]).reshape(-1)
    rs = _pil_nearest(sseg, sfeat.shape[-2:]).reshape(-1)
    out = c.clone()
    for lab in label_set:
        if not indicator[lab]:
            continue
        ic, is_ = np.where(rc == lab)[0], np.where(rs == lab)[0]
        if ic.size == 0 or is_.size == 0:
            continue
        out[:, torch.from_numpy(ic)] = wct_core(c[:, torch.from_numpy(ic)], s[:, torch.from_numpy(is_)])
    return out.reshape(cfeat.shape)


class OfficialReference:
    """The official encoder/decoder levels and WCT2.transfer, on state dicts in the official layout."""

    def __init__(self, enc: dict, dec: dict, option: str):
        self.e, self.d, self.option = enc, dec, option

    def _c(self, sd, name, x, relu=True):
        y = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), sd[f"{name}.weight"], sd[f"{name}.bias"])
        return F.relu(y) if relu else y

    def _pool(self, k, x):
        return [F.conv2d(x, self.e[f"pool{k}.{b}.weight"], stride=2, groups=x.shape[1])
                for b in ("LL", "LH", "HL", "HH")]

    def _unpool(self, k, ll, lh, hl, hh, original):
        parts = [F.conv_transpose2d(t, self.d[f"recon_block{k}.{b}.weight"], stride=2, groups=t.shape[1])
                 for t, b in zip((ll, lh, hl, hh), ("LL", "LH", "HL", "HH"))]
        return parts[0] + parts[1] + parts[2] + parts[3] if self.option == "sum" else torch.cat(parts + [original], 1)

    def encode(self, x, skips, level):
        e, c = self.e, self._c
        if level == 1:
            x = F.conv2d(x, e["conv0.weight"], e["conv0.bias"])
            x = c(e, "conv1_1", x)
            if self.option == "cat5":
                return x
        if self.option == "sum":
            names = {1: ["conv1_2"], 2: ["conv2_1", "conv2_2"], 3: ["conv3_1", "conv3_2", "conv3_3", "conv3_4"]}
            if level == 4:
                return c(e, "conv4_1", x)
            for n in names[level]:
                x = c(e, n, x)
            skips[names[level][-1]] = x
            ll, lh, hl, hh = self._pool(level, x)
            skips[f"pool{level}"] = [lh, hl, hh]
            return ll
        names = {2: (["conv1_2"], "conv2_1"), 3: (["conv2_2"], "conv3_1"),
                 4: (["conv3_2", "conv3_3", "conv3_4"], "conv4_1")}
        pre, post = names[level]
        for n in pre:
            x = c(e, n, x)
        skips[pre[-1]] = x
        ll, lh, hl, hh = self._pool(level - 1, x)
        skips[f"pool{level - 1}"] = [lh, hl, hh]
        return c(e, post, ll)

    def decode(self, x, skips, level):
        d, c = self.d, self._c
        sfx = "" if self.option == "sum" else "_2"
        if level == 4:
            x = c(d, "conv4_1", x)
            x = self._unpool(3, x, *skips["pool3"], skips.get("conv3_4"))
            for n in (f"conv3_4{sfx}", "conv3_3", "conv3_2"):
                x = c(d, n, x)
            return x
        if level == 3:
            x = c(d, "conv3_1", x)
            return c(d, f"conv2_2{sfx}", self._unpool(2, x, *skips["pool2"], skips.get("conv2_2")))
        if level == 2:
            x = c(d, "conv2_1", x)
            return c(d, f"conv1_2{sfx}", self._unpool(1, x, *skips["pool1"], skips.get("conv1_2")))
        return c(d, "conv1_1", x, relu=False)

    def reconstruct(self, x):
        skips = {}
        for level in (1, 2, 3, 4):
            x = self.encode(x, skips, level)
        for level in (4, 3, 2, 1):
            x = self.decode(x, skips, level)
        return x

    def transfer(self, content, style, cseg=None, sseg=None, transfer_at=("encoder", "skip", "decoder")):
        """transfer.py WCT2.transfer for one image pair (1, 3, H, W); segments (H, W) uint8 or None."""
        at = set(transfer_at)
        label_set, indicator = label_info(cseg, sseg) if cseg is not None and sseg is not None else (None, None)

        def wct(a, b):
            return feature_wct(a, b, cseg, sseg, label_set, indicator)

        feats = {"encoder": {}, "decoder": {}}
        s_skips, x = {}, style
        for level in (1, 2, 3, 4):
            x = self.encode(x, s_skips, level)
            if "encoder" in at:
                feats["encoder"][level] = x
        if "encoder" not in at:
            feats["decoder"][4] = x
        for level in (4, 3, 2):
            x = self.decode(x, s_skips, level)
            if "decoder" in at:
                feats["decoder"][level - 1] = x
        c_skips, x = {}, content
        for level in (1, 2, 3, 4):
            x = self.encode(x, c_skips, level)
            if "encoder" in at:
                x = wct(x, feats["encoder"][level])
        if "skip" in at:
            for k in ("pool1", "pool2", "pool3"):
                c_skips[k] = [wct(a, b) for a, b in zip(c_skips[k], s_skips[k])]
        for level in (4, 3, 2, 1):
            if "decoder" in at and level in feats["decoder"]:
                x = wct(x, feats["decoder"][level])
            x = self.decode(x, c_skips, level)
        return x.clamp(0, 1)


def save_official(root, option: str, seed: int = 0) -> tuple[dict, dict]:
    """Write wave_{encoder,decoder}_<option>_l4.pth under ``root``; return the state dicts."""
    enc, dec = official_state_dicts(option, seed)
    root.mkdir(parents=True, exist_ok=True)
    torch.save(enc, root / f"wave_encoder_{option}_l4.pth")
    torch.save(dec, root / f"wave_decoder_{option}_l4.pth")
    return enc, dec
