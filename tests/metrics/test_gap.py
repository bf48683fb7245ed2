"""sim2real.metrics.gap on arrays made here: each measure responds to what it claims to measure."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from sim2real.errors import ConfigError, DataError
from sim2real.formats.images import encode_jpeg_roundtrip
from sim2real.metrics import colour, features, gap, pad, plots, sharpness, spectrum


def textured(seed: int = 0, h: int = 120, w: int = 160) -> np.ndarray:
    """A textured RGB uint8 image with edges at several scales."""
    rng = np.random.default_rng(seed)
    img = np.zeros((h, w, 3), np.float32)
    for s in (1.0, 2.0, 4.0):
        img += cv2.GaussianBlur(rng.normal(0, 40, (h, w, 1)).astype(np.float32), (0, 0), s)[..., None]
    yy, xx = np.indices((h, w))
    img += 50.0 * ((xx // 12 + yy // 12) % 2)[..., None]
    return np.clip(img + 100, 0, 255).astype(np.uint8)


def blur(rgb: np.ndarray, sigma: float) -> np.ndarray:
    return np.clip(np.round(cv2.GaussianBlur(rgb.astype(np.float32), (0, 0), sigma)), 0, 255).astype(np.uint8)


def add_noise(rgb: np.ndarray, sigma: float, seed: int = 1) -> np.ndarray:
    n = np.random.default_rng(seed).normal(0, sigma, rgb.shape)
    return np.clip(np.round(rgb + n), 0, 255).astype(np.uint8)


BOX = np.array([[20, 20, 140, 100]], np.float64)


def log_s(rgb, **kw):
    return float(np.log10(sharpness.box_sharpness(rgb, BOX, **kw)[0]))


# ----------------------------------------------------------------------------- sharpness
def test_sharpness_falls_with_blur_and_ignores_contrast_haze_and_noise():
    img = textured()
    s = [log_s(blur(img, sg)) if sg else log_s(img) for sg in (0, 1.0, 2.0, 3.0)]
    assert s[0] > s[1] > s[2] > s[3]
    one_px = s[0] - s[1]
    # affine intensity change (haze towards a pale airlight, lower contrast): same sharpness
    hazy = np.clip(np.round(img.astype(np.float32) * 0.6 + 90), 0, 255).astype(np.uint8)
    assert abs(log_s(hazy) - s[0]) < 0.1 * one_px
    # sensor noise (sigma 2.5 gray levels, like the demo's real camera) moves it far less than
    # 1 px of blur does, on a sharp and on a blurred box
    for base in (img, blur(img, 2.0)):
        assert abs(log_s(add_noise(base, 2.5)) - log_s(base)) < 0.25 * one_px
    # ... and the noise correction is what makes it so at the default denoise
    raw = abs(log_s(add_noise(blur(img, 2.0), 2.5), noise_sigma_gray=0) - log_s(blur(img, 2.0), noise_sigma_gray=0))
    fixed = abs(log_s(add_noise(blur(img, 2.0), 2.5)) - log_s(blur(img, 2.0)))
    assert fixed < raw


def test_sharpness_small_boxes_clipping_and_bad_input():
    img = textured()
    boxes = np.array([[0, 0, 5, 5], [-30, -30, 60, 60], [155, 100, 400, 300], [150, 110, 400, 300]], np.float64)
    s = sharpness.box_sharpness(img, boxes, min_size_px=8)
    # too small; clipped to 60x60; clipped to 5 px wide; clipped to 10x10
    assert np.isnan(s[0]) and np.isfinite(s[1]) and np.isnan(s[2]) and np.isfinite(s[3])
    flat = np.full((64, 64, 3), 128, np.uint8)
    assert np.isnan(sharpness.box_sharpness(flat, np.array([[0, 0, 64, 64]]), noise_sigma_gray=0)[0])
    with pytest.raises(DataError, match="RGB uint8"):
        sharpness.box_sharpness(img.astype(np.float32), BOX)
    with pytest.raises(ConfigError, match="denoise_sigma_px"):
        sharpness.box_sharpness(img, BOX, denoise_sigma_px=-1)


def test_noise_gain_matches_measured_noise():
    gv, gg = sharpness.noise_gain(0.5)
    n = np.random.default_rng(5).normal(0, 3.0, (256, 256)).astype(np.float32)
    smooth, energy = sharpness._filtered(n, 0.5)
    assert smooth[8:-8, 8:-8].var() == pytest.approx(gv * 9.0, rel=0.05)
    assert energy[8:-8, 8:-8].mean() == pytest.approx(gg * 9.0, rel=0.05)


# ----------------------------------------------------------------------------- profile
def test_blur_profile_bins_and_distance():
    h = np.array([12, 15, 30, 35, 40, 80, 90, np.nan, 500])
    s = np.array([1.0, 1.0, 0.1, 0.1, np.nan, 0.01, 0.01, 1.0, 1.0])
    prof = sharpness.blur_profile(h, s, [10, 25, 50, 100])
    assert prof["n"].tolist() == [2, 2, 2]
    assert prof["median_log10_sharpness"].tolist() == pytest.approx([0.0, -1.0, -2.0])
    other = prof.copy()
    other["median_log10_sharpness"] = other["median_log10_sharpness"] + np.array([0.3, -0.3, 0.0])
    assert sharpness.profile_distance(prof, prof, 2) == (0.0, 3)
    d, used = sharpness.profile_distance(prof, other, 2)
    assert used == 3 and d == pytest.approx(0.2)
    with pytest.raises(ValueError, match="no height bin"):
        sharpness.profile_distance(prof, other, 5)
    with pytest.raises(ConfigError, match="height_bins_px"):
        sharpness.blur_profile(h, s, [10, 5])


# ----------------------------------------------------------------------------- colour, spectrum, noise
def test_lab_wasserstein_measures_a_shift():
    a = np.zeros(64); a[10] = 5
    b = np.zeros(64); b[13] = 2
    assert colour.wasserstein_1d_hist(a, b, (0.0, 64.0)) == pytest.approx(3.0)
    img = textured()
    warm = np.clip(img.astype(np.int32) + np.array([20, 0, -20]), 0, 255).astype(np.uint8)
    ha, hb = colour.lab_histograms(img), colour.lab_histograms(warm)
    assert ha.shape == (3, 64) and ha[0].sum() == (120 // 2) * (160 // 2)
    w = [colour.wasserstein_1d_hist(ha[c], hb[c], colour.LAB_RANGES[c]) for c in range(3)]
    assert w[2] > 5 and colour.wasserstein_1d_hist(ha[2], ha[2], colour.LAB_RANGES[2]) == 0.0


def test_spectrum_slope_and_noise_sigma():
    rng = np.random.default_rng(0)
    white = rng.normal(0, 10, (256, 256))
    f, p = spectrum.radial_power_spectrum(white)
    assert abs(spectrum.spectrum_slope(f, p)) < 0.3                      # white noise: flat
    fy, fx = np.meshgrid(np.fft.fftfreq(256), np.fft.fftfreq(256), indexing="ij")
    r = np.sqrt(fx ** 2 + fy ** 2); r[0, 0] = 1
    pink = np.real(np.fft.ifft2(np.fft.fft2(white) / r))             # amplitude 1/f -> power 1/f^2
    f, p = spectrum.radial_power_spectrum(pink)
    assert spectrum.spectrum_slope(f, p) == pytest.approx(-2.0, abs=0.3)
    img = textured(h=256, w=256)
    f, p0 = spectrum.radial_power_spectrum(sharpness.luminance(img))
    _, p1 = spectrum.radial_power_spectrum(sharpness.luminance(blur(img, 2.0)))
    assert spectrum.spectrum_slope(f, p1) < spectrum.spectrum_slope(f, p0) - 0.5   # blur steepens
    flat = np.full((128, 128, 3), 120, np.uint8)
    lum_sigma = 5.0 * np.sqrt(0.299 ** 2 + 0.587 ** 2 + 0.114 ** 2)   # independent RGB noise -> luminance
    assert spectrum.noise_sigma(add_noise(flat, 5.0)) == pytest.approx(lum_sigma, rel=0.1)
    assert spectrum.noise_sigma(flat) < 0.1


# ----------------------------------------------------------------------------- features, KID, PAD
def test_random_fallback_extractor_is_deterministic_and_inception_never_downloads(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    thumbs = [textured(i, 64, 96) for i in range(3)]
    m1, name, hw = features.load_feature_extractor(None, seed=3, thumb_hw=(64, 96))
    m2, _, _ = features.load_feature_extractor(None, seed=3, thumb_hw=(64, 96))
    m3, _, _ = features.load_feature_extractor(None, seed=4, thumb_hw=(64, 96))
    f1, f2, f3 = (features.extract_features(m, thumbs) for m in (m1, m2, m3))
    assert name == features.FALLBACK_NAME and hw == (64, 96) and f1.shape == (3, 240)
    assert np.array_equal(f1, f2) and not np.allclose(f1, f3)
    with pytest.raises(ConfigError, match="gap.kid.inception_weights"):
        features.load_feature_extractor(str(tmp_path / "missing.pth"), seed=0, thumb_hw=(64, 96))
    assert features.find_inception_weights(None) is None                   # empty cache: fallback, no download


def test_kid_fid_and_pad_separate_shifted_distributions():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, (40, 8)), rng.normal(0, 1, (40, 8))
    c = rng.normal(1.5, 1, (40, 8))
    same = features.kid_fid(a, b, subset_size=100, subsets=20, seed=0)
    diff = features.kid_fid(a, c, subset_size=100, subsets=20, seed=0)
    assert same["kid_subset_size"] == 40                              # capped at N
    assert diff["kid"] > 10 * max(same["kid"], 1e-3) and diff["fid"] > same["fid"]
    assert features.kid_fid(a, c, subset_size=10, subsets=5, seed=1) == features.kid_fid(a, c, subset_size=10, subsets=5, seed=1)
    small = features.kid_fid(a[:5], c[:5], subset_size=50, subsets=5, seed=0)
    assert "fid" not in small and "FID needs" in small["fid_skipped"] and np.isfinite(small["kid"])
    sep = pad.proxy_a_distance(a, c + 3, folds=5, seed=0)
    mixed = pad.proxy_a_distance(a, b, folds=5, seed=0)
    assert sep["pad"] == 2.0 and sep["pad_error"] == 0.0
    assert mixed["pad"] < 1.0


def test_compare_domains_prefers_distance_blur_when_real_is_blurrier_far_away():
    """The library-level version of the headline: real = far objects blurred (+ noise, haze,
    JPEG); a sim set blurred the same way is closer in blur profile than the sharp one."""
    def scene(seed, far_blur, real):
        rng = np.random.default_rng(seed)
        img = np.full((200, 640, 3), 110.0, np.float32)
        boxes, x = [], 10
        for k in range(6):
            hgt = [14, 20, 30, 45, 70, 110][k]
            tex = textured(seed * 10 + k, hgt, int(hgt * 1.4)).astype(np.float32)
            s = far_blur * max(0.0, 1 - hgt / 110)
            if s > 0.2:
                tex = cv2.GaussianBlur(tex, (0, 0), s)
            img[190 - hgt:190, x:x + tex.shape[1]] = tex
            boxes.append([x, 190 - hgt, x + tex.shape[1], 190])
            x += tex.shape[1] + 20
        if real:
            img = img * 0.85 + 30 + rng.normal(0, 2.5, img.shape)
        out = np.clip(np.round(img), 0, 255).astype(np.uint8)
        return gap.image_stats(encode_jpeg_roundtrip(out, 80) if real else out, np.array(boxes, float),
                               image_id=str(seed), thumb_hw=(32, 96))
    real = [scene(100 + i, 3.0, True) for i in range(8)]
    sharp = [scene(i, 0.0, False) for i in range(8)]
    blurred = [scene(i, 3.0, False) for i in range(8)]
    s = gap.GapSettings(height_bins_px=(10, 25, 50, 120), thumb_hw=(32, 96), kid_subsets=5, pad_folds=4)
    r_sharp, curves = gap.compare_domains(sharp, real, s)
    r_blur, _ = gap.compare_domains(blurred, real, s)
    assert r_blur["blur_profile_distance"] < 0.5 * r_sharp["blur_profile_distance"]
    assert r_sharp["feature_extractor"] == features.FALLBACK_NAME
    for r in (r_sharp, r_blur):
        for k in ("blur_profile_distance", "kid", "pad", "colour_w1_lab", "spectrum_slope_abs_diff"):
            assert np.isfinite(r[k])
    prof = curves["blur_profile"]
    assert list(prof.columns[:2]) == ["height_px", "height_lo_px"] and prof["real_n"].sum() == 8 * 6
    rgb = plots.plot_blur_profile(prof, "sharp")
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.std() > 5


def test_local_inception_weights_are_used_and_named(tmp_path, monkeypatch):
    """A local torchvision Inception-v3 state dict (random weights here: no downloads) is loaded
    and labelled; features are Inception's 2048-d pool."""
    import torch
    import torchvision
    torch.manual_seed(0)
    net = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False)
    path = tmp_path / "torch" / "hub" / "checkpoints" / features.INCEPTION_CACHE_NAME
    path.parent.mkdir(parents=True)
    torch.save(net.state_dict(), path)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert features.find_inception_weights(None) == path          # found in the cache, by name
    module, name, hw = features.load_feature_extractor(str(path), seed=0, thumb_hw=(64, 96))
    assert name == f"inception-v3-torchvision:{features.INCEPTION_CACHE_NAME}" and hw == (299, 299)
    feats = features.extract_features(module, [cv2.resize(textured(i), (299, 299)) for i in range(2)])
    assert feats.shape == (2, 2048) and np.isfinite(feats).all()
    bad = tmp_path / "bad.pth"
    torch.save({"not": torch.zeros(1)}, bad)
    with pytest.raises(ConfigError, match="not a torchvision Inception-v3"):
        features.load_feature_extractor(str(bad), seed=0, thumb_hw=(64, 96))
