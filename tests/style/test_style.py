"""Unit tests for sim2real.style on small synthetic arrays (no files from the pipeline, no network)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

from sim2real.errors import ConfigError
from sim2real.params import build, validate_section
from sim2real.style import nst, photoreal, weights, wct2
from sim2real.style.photoreal import PhotorealConfig, class_moments, photoreal_transfer
from sim2real.style.wct2_checkpoints import load_wct2

ROOT = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------------- fixtures
def scene(h=96, w=160, seed=0, palette=None, noise=3.0):
    """A driving-like frame: sky / building / road bands, a 'car' box; labels in coarse classes."""
    rng = np.random.default_rng(seed)
    lab = np.zeros((h, w), np.uint8)                  # road
    lab[: h // 3] = 1                                  # sky
    lab[h // 3: h // 2] = 3                            # building
    lab[int(h * 0.45): int(h * 0.75), w // 3: w // 2] = 4  # vehicle
    palette = palette or {0: (90, 80, 90), 1: (120, 190, 250), 3: (140, 140, 140), 4: (200, 60, 40)}
    img = np.zeros((h, w, 3), np.float64)
    for k, c in palette.items():
        img[lab == k] = c
    img += rng.normal(0, noise, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8), lab


def real_like(h=96, w=160, seed=1):
    img, lab = scene(h, w, seed, palette={0: (60, 60, 55), 1: (200, 210, 220), 3: (110, 100, 90), 4: (30, 40, 140)},
                     noise=10.0)
    return cv2.GaussianBlur(img, (0, 0), 0.8), lab


@pytest.fixture(scope="module")
def vgg():
    torch.manual_seed(0)
    net, source = weights.load_vgg16_features("random", seed=0, n_layers=23, allow_download=False)
    assert source == "random"
    return net


def small_cfg(**kw):
    base = dict(content_layers=("relu2_2",), style_layers=("relu1_2", "relu2_2", "relu3_3"), style_weight=10.0,
                lr=0.03, scales=(0.5, 1.0), steps=(12, 6), plateau_patience=0)
    base.update(kw)
    return nst.NSTConfig(**base)


def edge_map(img_u8):
    g = cv2.cvtColor(img_u8, cv2.COLOR_RGB2GRAY).astype(np.float64)
    return np.hypot(cv2.Sobel(g, cv2.CV_64F, 1, 0), cv2.Sobel(g, cv2.CV_64F, 0, 1))


# ------------------------------------------------------------------------- NST
def test_style_loss_decreases_over_steps(vgg):
    torch.set_num_threads(1)
    c, _ = scene(64, 96)
    s, _ = real_like(64, 96)
    cfg = small_cfg()
    feats = nst.build_features(vgg, cfg)
    ct, st = nst.to_tensor([c]), nst.to_tensor([s])
    obj = nst.StyleObjective(feats, ct, st, cfg)
    with torch.no_grad():
        lc0, ls0, _ = obj.losses(ct)
    assert float(lc0[0]) == pytest.approx(0.0, abs=1e-9)  # initialised from the content image
    out, res = nst.gatys(feats, ct, st, cfg, steps=25)
    assert res.steps == 25
    assert res.style_loss[0] < 0.7 * float(ls0[0])
    hist = np.array(res.history)
    assert hist[-1] < hist[0] and hist[len(hist) // 2] < hist[0]
    assert out.shape == ct.shape and float(out.min()) >= 0 and float(out.max()) <= 1


def test_fast_nst_keeps_content_edges_and_reduces_style_loss(vgg):
    torch.set_num_threads(1)
    c, lab = scene(96, 160, noise=1.0)
    s, _ = real_like(96, 160)
    cfg = small_cfg()
    feats = nst.build_features(vgg, cfg)
    out, res = nst.fast_nst(feats, nst.to_tensor([c]), nst.to_tensor([s]), cfg)
    o = nst.to_u8(out)[0]
    assert o.shape == c.shape
    assert res.steps == sum(cfg.steps)
    corr = np.corrcoef(edge_map(c).ravel(), edge_map(o).ravel())[0, 1]
    assert corr > 0.6, f"edge-map correlation {corr:.3f}"
    # the box of the vehicle is still where its edges are: strongest column edges at the box sides
    col = edge_map(o)[int(96 * 0.5): int(96 * 0.7)].sum(0)
    sides = sorted(np.argsort(col)[-2:])
    assert abs(sides[0] - 160 // 3) <= 2 and abs(sides[1] - 160 // 2) <= 2
    obj = nst.StyleObjective(feats, nst.to_tensor([c]), nst.to_tensor([s]), cfg)
    with torch.no_grad():
        _, ls_in, _ = obj.losses(nst.to_tensor([c]))
        _, ls_out, _ = obj.losses(out)
    assert float(ls_out[0]) < float(ls_in[0])


def test_fast_nst_warm_started_from_photoreal_keeps_edges_and_lowers_the_loss(vgg):
    """init = the photoreal transfer: the Gatys loss starts far below the content's and still falls;
    the content's edges (box sides) survive; same inputs give the same bytes."""
    torch.set_num_threads(1)
    c, lab = scene(96, 160, noise=1.0)
    s, slab = real_like(96, 160)
    warm = photoreal_transfer(c, s, lab, slab, PhotorealConfig(), rng=np.random.default_rng(0))
    cfg = small_cfg(init="photoreal", scales=(0.5, 1.0), steps=(6, 3))
    feats = nst.build_features(vgg, cfg)
    ct, st, wt = nst.to_tensor([c]), nst.to_tensor([s]), nst.to_tensor([warm])
    obj = nst.StyleObjective(feats, ct, st, cfg)
    with torch.no_grad():
        l_content, l_warm = float(obj.losses(ct)[2][0]), float(obj.losses(wt)[2][0])
    assert l_warm < 0.5 * l_content  # the warm start is already much closer to the objective's minimum
    out, res = nst.fast_nst(feats, ct, st, cfg, init=wt)
    with torch.no_grad():
        l_out = float(obj.losses(out)[2][0])
    assert l_out < l_warm and res.steps == 9 and res.evals >= 9
    o = nst.to_u8(out)[0]
    corr = np.corrcoef(edge_map(c).ravel(), edge_map(o).ravel())[0, 1]
    assert corr > 0.6, f"edge-map correlation {corr:.3f}"
    col = edge_map(o)[int(96 * 0.5): int(96 * 0.7)].sum(0)
    mid = (160 // 3 + 160 // 2) // 2  # the strongest column edge left and right of the box centre
    assert abs(int(np.argmax(col[:mid])) - 160 // 3) <= 2 and abs(mid + int(np.argmax(col[mid:])) - 160 // 2) <= 2
    again, _ = nst.fast_nst(feats, ct, st, cfg, init=wt)
    assert np.array_equal(nst.to_u8(again)[0], o)
    with pytest.raises(ValueError, match="init"):
        nst.fast_nst(feats, ct, st, cfg, init=wt[..., :48, :])


def test_nst_batch_matches_and_same_seed_same_bytes(vgg):
    torch.set_num_threads(1)
    c1, _ = scene(48, 80, seed=0)
    c2, _ = scene(48, 80, seed=3)
    s1, _ = real_like(48, 80, seed=1)
    s2, _ = real_like(48, 80, seed=2)
    cfg = small_cfg(scales=(1.0,), steps=(5,))
    feats = nst.build_features(vgg, cfg)
    a, ra = nst.fast_nst(feats, nst.to_tensor([c1, c2]), nst.to_tensor([s1, s2]), cfg)
    b, rb = nst.fast_nst(feats, nst.to_tensor([c1, c2]), nst.to_tensor([s1, s2]), cfg)
    assert all(np.array_equal(x, y) for x, y in zip(nst.to_u8(a), nst.to_u8(b)))
    np.testing.assert_array_equal(ra.style_loss, rb.style_loss)
    # a second network built from the same seed is the same network
    net2, _ = weights.load_vgg16_features("random", seed=0, n_layers=23, allow_download=False)
    for p, q in zip(vgg.parameters(), net2.parameters()):
        assert torch.equal(p, q)


def test_lbfgs_and_plateau_stop(vgg):
    torch.set_num_threads(1)
    c, _ = scene(32, 48)
    s, _ = real_like(32, 48)
    cfg = small_cfg(optimizer="lbfgs")
    feats = nst.build_features(vgg, cfg)
    _, res = nst.gatys(feats, nst.to_tensor([c]), nst.to_tensor([s]), cfg, steps=4)
    assert res.history[-1] < res.history[0]
    # a huge tolerance stops as soon as the patience window is full
    cfg = small_cfg(plateau_rel_tol=10.0, plateau_patience=2)
    _, res = nst.gatys(feats, nst.to_tensor([c]), nst.to_tensor([s]), cfg, steps=20)
    assert res.steps == 3


def test_nst_config_errors_name_the_param():
    style = yaml.safe_load((ROOT / "params.yaml").read_text())["style"]
    with pytest.raises(ConfigError, match="style.nst.optimizer"):
        validate_section("style", {**style, "nst": {**style["nst"], "optimizer": "sgd"}})
    with pytest.raises(ConfigError, match="style.nst.scales"):
        nst.NSTConfig(scales=(0.5, 0.25), steps=(1, 1))
    with pytest.raises(ConfigError, match=r"style\.nst\.stpes: unknown key"):
        validate_section("style", {**style, "nst": {**style["nst"], "stpes": [1]}})
    with pytest.raises(ConfigError, match="style.nst.init"):
        nst.NSTConfig(init="noise")
    assert build(nst.NSTConfig, validate_section("style", style).nst).scales == tuple(style["nst"]["scales"])


# ------------------------------------------------------------------------- weights, offline
def test_missing_vgg_weights_give_the_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(ConfigError, match=r"style\.vgg_weights") as err:
        weights.resolve_vgg16_weights(str(tmp_path / "nope.pth"), allow_download=False)
    assert "nope.pth" in str(err.value) and "vgg16-397923af.pth" in str(err.value)
    with pytest.raises(ConfigError, match=r"style\.vgg_weights"):
        weights.load_vgg16_features("imagenet", allow_download=False)


def test_vgg_weights_resolve_path_then_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    net = weights.init_random_(weights.make_vgg16_features(), seed=5)
    state = {f"features.{k}": v for k, v in net.state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(2, 2)  # a full torchvision file has more keys
    path = tmp_path / "mine.pth"
    torch.save(state, path)
    assert weights.resolve_vgg16_weights(str(path), allow_download=False) == path
    loaded, source = weights.load_vgg16_features(str(path), n_layers=10, allow_download=False)
    assert source == str(path)
    assert torch.equal(loaded[0].weight, net[0].weight)
    cached = tmp_path / "torch" / "hub" / "checkpoints" / weights.VGG16_FILE
    cached.parent.mkdir(parents=True)
    torch.save(state, cached)
    assert weights.resolve_vgg16_weights(str(tmp_path / "missing.pth"), allow_download=False) == cached
    assert weights.resolve_vgg16_weights("imagenet", allow_download=False) == cached
    bad = tmp_path / "bad.pth"
    torch.save({"x": torch.zeros(1)}, bad)
    with pytest.raises(ConfigError, match=r"style\.vgg_weights"):
        weights.load_vgg16_features(str(bad), allow_download=False)


def test_wct2_missing_checkpoints_give_the_clear_error(tmp_path):
    with pytest.raises(ConfigError, match=r"style\.wct2_checkpoints"):
        load_wct2(None)
    with pytest.raises(ConfigError, match=r"style\.wct2_checkpoints.*encoder\.pth"):
        load_wct2(tmp_path)
    model = wct2.random_wct2(seed=1)
    torch.save(model.encoder.state_dict(), tmp_path / "encoder.pth")
    torch.save({"nope": torch.zeros(1)}, tmp_path / "decoder.pth")
    with pytest.raises(ConfigError, match=r"style\.wct2_checkpoints"):
        load_wct2(tmp_path)
    torch.save(model.decoder.state_dict(), tmp_path / "decoder.pth")
    loaded = load_wct2(tmp_path)
    assert torch.equal(loaded.encoder.layers[0].conv.weight, model.encoder.layers[0].conv.weight)


def test_wct2_wavelet_pooling_is_invertible_and_forward_runs():
    x = torch.rand(2, 5, 37, 51, generator=torch.Generator().manual_seed(0))
    ll, skips = wct2.haar_pool(x)
    assert ll.shape == (2, 5, 19, 26)
    torch.testing.assert_close(wct2.haar_unpool(ll, skips, (37, 51)), x, atol=1e-6, rtol=0)
    model = wct2.random_wct2(seed=0)
    with torch.no_grad():
        f, sk = model.encoder(torch.rand(1, 3, 40, 72))
    assert f.shape[1] == 512 and len(sk) == 3 and sk[0].size_hw == (40, 72)
    out = model.stylize(torch.rand(1, 3, 40, 72), torch.rand(1, 3, 36, 64))
    assert out.shape == (1, 3, 40, 72)
    # WCT moves feature mean/covariance to the style's
    fc, fs = torch.randn(1, 4, 30, 30), 2 * torch.randn(1, 4, 20, 20) + 1
    y = wct2.wct(fc, fs)[0].reshape(4, -1)
    torch.testing.assert_close(y.mean(1), fs[0].reshape(4, -1).mean(1), atol=1e-4, rtol=0)
    torch.testing.assert_close(torch.cov(y), torch.cov(fs[0].reshape(4, -1)), atol=1e-3, rtol=1e-3)


# ------------------------------------------------------------------------- photoreal
def _mismatch(a, la, b, lb):
    ma, mb = class_moments(a, la), class_moments(b, lb)
    out = {}
    for k in ma:
        if k in mb and ma[k][2] > 100:
            scale = np.sqrt(np.trace(mb[k][1]) / 3)
            out[k] = (np.abs(ma[k][0] - mb[k][0]).max() / scale, np.abs(ma[k][1] - mb[k][1]).max() / np.abs(mb[k][1]).max())
    return out


def test_photoreal_moves_class_moments_to_the_style():
    c, lab = scene(120, 200)
    s, slab = real_like(120, 200)
    # hard masks: per-class mean and covariance match closely
    out = photoreal_transfer(c, s, lab, slab, PhotorealConfig(smooth_px=0, global_classes=()),
                             rng=np.random.default_rng(0))
    before = _mismatch(c, lab, s, slab)
    after = _mismatch(out, lab, s, slab)
    assert set(after) == {0, 1, 3, 4}
    for k, (dmu, dcov) in after.items():
        assert dmu < 0.02, (k, dmu, before[k])
        assert dcov < 0.03, (k, dcov, before[k])
        assert before[k][0] > 1.0  # the test is not trivially satisfied
    # default (edge-aware blended boundaries): still much closer than before
    out = photoreal_transfer(c, s, lab, slab, PhotorealConfig(global_classes=()), rng=np.random.default_rng(0))
    m_before = photoreal.moment_mismatch(c, lab, s, slab, min_pixels=100)
    m_after = photoreal.moment_mismatch(out, lab, s, slab, min_pixels=100)
    assert m_after < 0.1 * m_before  # blended boundaries mix neighbouring transforms a little


def test_photoreal_global_classes_follow_the_frame_transform():
    c, lab = scene(120, 200)
    s, slab = real_like(120, 200)
    own = photoreal_transfer(c, s, lab, slab, PhotorealConfig(smooth_px=0, global_classes=(), noise=False))
    glob = photoreal_transfer(c, s, lab, slab, PhotorealConfig(smooth_px=0, noise=False))  # vehicle global
    car, road = lab == 4, lab == 0
    np.testing.assert_array_equal(own[road], glob[road])
    ms = class_moments(s, slab)[4][0]
    d_own = np.abs(class_moments(own, lab)[4][0] - ms).max()
    d_glob = np.abs(class_moments(glob, lab)[4][0] - ms).max()
    assert d_own < 0.01 < d_glob  # the car keeps its own colour identity instead of the real cars' mean
    with pytest.raises(ConfigError, match="global_classes"):
        PhotorealConfig(global_classes=("cars",))


def test_photoreal_transfers_detail_noise_and_keeps_edges():
    c, lab = scene(120, 200, noise=0.5)
    s, slab = scene(120, 200, seed=4, noise=12.0)  # same colours, much noisier
    out = photoreal_transfer(c, s, lab, slab, PhotorealConfig(), rng=np.random.default_rng(0))
    inner = np.zeros_like(lab, bool)
    inner[70:110, 120:190] = True  # road interior
    std = lambda im: float(im[inner].astype(np.float64).std(0).mean())
    assert std(out) > 0.85 * std(s) and std(c) < 0.2 * std(s)  # pixel-only WCT (levels=0) reaches ~0.7
    corr = np.corrcoef(cv2.GaussianBlur(edge_map(c), (0, 0), 2).ravel(),
                       cv2.GaussianBlur(edge_map(out), (0, 0), 2).ravel())[0, 1]
    assert corr > 0.7


def test_photoreal_is_identity_when_style_is_content():
    c, lab = scene(101, 157)  # odd sides exercise the wavelet padding
    out = photoreal_transfer(c, c, lab, lab, PhotorealConfig(), rng=np.random.default_rng(0))
    np.testing.assert_array_equal(out, c)
    out = photoreal_transfer(c, c, None, None, PhotorealConfig(), rng=np.random.default_rng(0))
    np.testing.assert_array_equal(out, c)


def test_photoreal_same_seed_same_bytes_and_region_fallback():
    c, lab = scene(96, 160)
    s, _ = real_like(96, 160)
    a = photoreal_transfer(c, s, None, None, PhotorealConfig(), rng=np.random.default_rng([0, 7]))
    b = photoreal_transfer(c, s, None, None, PhotorealConfig(), rng=np.random.default_rng([0, 7]))
    assert a.tobytes() == b.tobytes()
    assert not np.array_equal(a, c)
    with pytest.raises(ValueError, match="content_labels"):
        photoreal_transfer(c, s, lab[:10], lab)


def test_coarse_class_maps():
    from sim2real.formats.vkitti2 import CATEGORY_COLORS, category_index
    names = list(CATEGORY_COLORS)
    idx = np.array([[category_index(n) for n in names]], np.uint8)
    coarse = photoreal.coarse_from_vkitti2(idx)[0]
    get = lambda n: photoreal.COARSE_CLASSES[coarse[names.index(n)]]
    assert get("Road") == "road" and get("Sky") == "sky" and get("Tree") == "vegetation"
    assert get("Car") == get("Van") == get("Truck") == "vehicle" and get("Building") == "building"
    ids = np.array([[7, 8, 11, 21, 22, 23, 26, 27, 28, 17, 0]])
    got = [photoreal.COARSE_CLASSES[k] for k in photoreal.coarse_from_cityscapes(ids)[0]]
    assert got == ["road", "road", "building", "vegetation", "vegetation", "sky", "vehicle", "vehicle", "vehicle",
                   "other", "other"]
