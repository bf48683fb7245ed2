"""Unit tests of sim2real.cyclegan: networks, one training step, short runs, resume, translation."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import yaml
import torch

from sim2real.cyclegan import checkpoint as ckpt
from sim2real.cyclegan.networks import ImagePool, PatchDiscriminator, ResnetGenerator, receptive_field_px
from sim2real.cyclegan.stats import DomainStats, edge_correlation, histogram_w1, lab_histogram
from sim2real.cyclegan.train import (CropSampler, CycleGANTrainConfig, Trainer, discriminator_objective, domain_frames,
                                     generator_objective, lr_factor, train)
from sim2real.cyclegan.translate import translate_image
from sim2real.errors import ConfigError, DataError
from sim2real.formats.images import write_image
from sim2real.params import build, validate_section

ROOT = Path(__file__).resolve().parents[2]

@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny networks: one thread is as fast and immune to OpenMP spinning on a busy machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


TINY = dict(ngf=8, n_blocks=1, ndf=8, crop_px=32, scale_range=[0.9, 1.1], iterations=12, checkpoint_every=4,
            pool_size=4)


def tiny_cfg(**kw) -> CycleGANTrainConfig:
    return build(CycleGANTrainConfig, {**TINY, **kw}, seed=0, device="cpu")


def scene(rng: np.random.Generator, h: int = 72, w: int = 120) -> np.ndarray:
    """A synthetic 'street': vertical gradient background plus random coloured boxes (RGB uint8)."""
    img = np.zeros((h, w, 3), np.float32)
    img[:] = np.linspace(60, 200, h, dtype=np.float32)[:, None, None]
    for _ in range(6):
        x0, y0 = int(rng.integers(0, w - 12)), int(rng.integers(0, h - 12))
        x1, y1 = x0 + int(rng.integers(8, 40)), y0 + int(rng.integers(8, 30))
        img[y0:y1, x0:x1] = rng.uniform(20, 235, 3)
    return np.clip(img, 0, 255).astype(np.uint8)


def realish(img: np.ndarray) -> np.ndarray:
    """The 'real' look: warm colour cast, lower contrast, blur."""
    x = img.astype(np.float32) * np.array([1.1, 0.95, 0.75]) * 0.8 + 30
    return cv2.GaussianBlur(np.clip(x, 0, 255).astype(np.uint8), (5, 5), 1.2)


@pytest.fixture(scope="module")
def domains(tmp_path_factory) -> tuple[list[Path], list[Path]]:
    root = tmp_path_factory.mktemp("domains")
    rng = np.random.default_rng(1)
    a, b = [], []
    for i in range(6):
        pa, pb = root / f"a{i}.png", root / f"b{i}.png"
        write_image(pa, scene(rng))
        write_image(pb, realish(scene(rng)))
        a.append(pa)
        b.append(pb)
    return a, b


# ------------------------------------------------------------------------------ networks
def test_generator_is_fully_convolutional_and_discriminator_is_70px():
    g = ResnetGenerator(8, 2)
    assert g(torch.zeros(1, 3, 40, 64)).shape == (1, 3, 40, 64)
    with pytest.raises(ValueError, match="multiples of 4"):
        g(torch.zeros(1, 3, 375, 1242))
    assert receptive_field_px(3) == 70
    assert PatchDiscriminator(8)(torch.zeros(1, 3, 128, 128)).shape == (1, 1, 14, 14)


def test_image_pool_returns_new_until_full_then_mixes():
    pool, rng = ImagePool(2), np.random.default_rng(0)
    x = [torch.full((1, 3, 4, 4), float(i)) for i in range(40)]
    assert torch.equal(pool.query(x[0], rng), x[0]) and torch.equal(pool.query(x[1], rng), x[1])
    outs = [float(pool.query(t, rng)[0, 0, 0, 0]) for t in x[2:]]
    assert any(o < i + 2 for i, o in enumerate(outs)), "history images are returned"
    assert any(o == i + 2 for i, o in enumerate(outs)), "new images are returned"
    assert ImagePool(0).query(x[5], rng) is x[5]


def test_lr_schedule_constant_then_linear_to_zero():
    total = 100
    f = [lr_factor(i, total, 0.5) for i in range(total)]
    assert f[:50] == [1.0] * 50
    assert all(a > b for a, b in zip(f[50:], f[51:])) and 0 < f[-1] <= 0.02


def test_config_rejects_unknown_keys_and_bad_values():
    cyclegan = yaml.safe_load((ROOT / "params.yaml").read_text())["cyclegan"]
    with pytest.raises(ConfigError, match=r"cyclegan\.train\.ngff: unknown key"):
        validate_section("cyclegan", {**cyclegan, "train": {**cyclegan["train"], "ngff": 3}})
    with pytest.raises(ConfigError, match="crop_px"):
        tiny_cfg(crop_px=30)
    with pytest.raises(ConfigError, match="PatchGAN"):
        tiny_cfg(crop_px=20)
    with pytest.raises(ConfigError, match="compute.device"):
        CycleGANTrainConfig(device="tpu")


def test_crop_sampler_scale_jitter_and_shape(domains):
    s = CropSampler(domains[0], 32, (0.5, 2.0), flip=True)
    batch = s.sample(np.random.default_rng(0), 3)
    assert batch.shape == (3, 3, 32, 32) and batch.dtype == torch.float32
    assert -1.0 <= float(batch.min()) and float(batch.max()) <= 1.0


# ------------------------------------------------------------------------------ training
def test_one_training_step_reduces_g_and_d_losses_on_a_fixed_batch(domains):
    cfg = tiny_cfg()
    tr = Trainer(cfg)
    rng = np.random.default_rng(3)
    a = CropSampler(domains[0], 32, (1, 1)).sample(rng, 2)
    b = CropSampler(domains[1], 32, (1, 1)).sample(rng, 2)
    before = copy.deepcopy(tr.model)
    with torch.no_grad():
        g0, _, fb0, fa0 = generator_objective(before, a, b, cfg)
        d0 = discriminator_objective(before.d_b, b, fb0) + discriminator_objective(before.d_a, a, fa0)
    tr.step(a, b)
    mixed = copy.deepcopy(tr.model)          # updated generators, discriminators as before the step
    mixed.d_a.load_state_dict(before.d_a.state_dict())
    mixed.d_b.load_state_dict(before.d_b.state_dict())
    with torch.no_grad():
        g1 = generator_objective(mixed, a, b, cfg)[0]
        # the pool is not full yet, so the D step saw exactly the fakes of the old generators
        d1 = discriminator_objective(tr.model.d_b, b, fb0) + discriminator_objective(tr.model.d_a, a, fa0)
    assert float(g1) < float(g0)
    assert float(d1) < float(d0)


@pytest.fixture(scope="module")
def short_run(domains, tmp_path_factory):
    cfg = tiny_cfg(iterations=150, checkpoint_every=150, ngf=8, n_blocks=1, lr=1e-3)
    res = train(cfg, *domains, tmp_path_factory.mktemp("short"), params_hash="x")
    return cfg, res


def test_cycle_reconstruction_after_short_run_beats_baselines(domains, short_run):
    cfg, res = short_run
    untrained = Trainer(cfg).model.eval()    # same seed: the weights the run started from
    model = res.trainer.model.eval()
    a = CropSampler(domains[0], 64, (1, 1), flip=False).sample(np.random.default_rng(9), 4)
    with torch.no_grad():
        err = float(torch.mean(torch.abs(model.g_ba(model.g_ab(a)) - a)))
        err0 = float(torch.mean(torch.abs(untrained.g_ba(untrained.g_ab(a)) - a)))
    # a reconstruction that ignores the image structure: each crop's mean colour
    mean_colour = float(torch.mean(torch.abs(a - a.mean(dim=(2, 3), keepdim=True))))
    assert err < 0.8 * err0, (err, err0)
    assert err < 0.9 * mean_colour, (err, mean_colour)


def test_edge_correlation_tells_kept_geometry_from_moved_geometry():
    """The geometry measure used on the trained demo model (tests/cyclegan/test_cyclegan_stages.py)."""
    rng = np.random.default_rng(5)
    img = scene(rng, 188, 620)
    restyled = realish(img)                         # colour, contrast and blur change, same geometry
    shifted = np.ascontiguousarray(np.roll(img, 24, axis=1))  # geometry moved by 24 px
    assert edge_correlation(img, restyled) > 0.8
    assert edge_correlation(img, shifted) < 0.5
    assert edge_correlation(img, scene(rng, 188, 620)) < 0.5


def test_training_is_deterministic_and_resumes_from_the_checkpoint_iteration(domains, tmp_path):
    cfg = tiny_cfg()
    full = train(cfg, *domains, tmp_path / "full", params_hash="h")

    class Killed(Exception):
        pass

    def kill_at_10(step, losses):
        if step == 10:
            raise Killed

    with pytest.raises(Killed):
        train(cfg, *domains, tmp_path / "run", params_hash="h", on_iteration=kill_at_10)
    assert ckpt.load_checkpoint(tmp_path / "run" / "last.pt")["iteration"] == 8  # checkpoint_every 4
    resumed = train(cfg, *domains, tmp_path / "run", params_hash="h")
    assert resumed.resumed_from == 8
    assert resumed.trainer.history["step"] == list(range(1, 13))
    for k, v in full.trainer.model.state_dict().items():
        assert torch.equal(v, resumed.trainer.model.state_dict()[k]), k
    assert resumed.trainer.history["loss_G"] == full.trainer.history["loss_G"]
    # a finished run reruns as a no-op
    assert train(cfg, *domains, tmp_path / "run", params_hash="h").resumed_from == 12


def test_changed_params_restart_or_refuse(domains, tmp_path):
    train(tiny_cfg(iterations=4), *domains, tmp_path, params_hash="old")
    res = train(tiny_cfg(iterations=4), *domains, tmp_path, params_hash="new")
    assert res.resumed_from == 0 and "hash" in res.restarted_reason
    with pytest.raises(ConfigError, match="on_params_change"):
        train(tiny_cfg(iterations=4, on_params_change="error"), *domains, tmp_path, params_hash="other")
    assert train(tiny_cfg(iterations=4, resume=False), *domains, tmp_path, params_hash="new").resumed_from == 0


def test_missing_or_corrupt_checkpoint_gives_a_clear_error(domains, tmp_path):
    with pytest.raises(DataError, match="not found"):
        ckpt.load_checkpoint(tmp_path / "nope.pt")
    train(tiny_cfg(iterations=4), *domains, tmp_path, params_hash="h")
    last = tmp_path / "last.pt"
    last.write_bytes(last.read_bytes()[:2000])  # truncated, as by a full disk
    with pytest.raises(DataError, match=r"last\.pt.*corrupt"):
        train(tiny_cfg(iterations=4), *domains, tmp_path, params_hash="h")
    torch.save({"hello": torch.zeros(1)}, last)
    with pytest.raises(DataError, match="not a CycleGAN checkpoint"):
        ckpt.load_checkpoint(last)
    with pytest.raises(DataError, match="generator weights not found"):
        ckpt.load_generator(tmp_path / "generator_a2b.pt")
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"bad\.pt.*corrupt"):
        ckpt.load_generator(tmp_path / "bad.pt")


def test_exported_generator_loads_with_weights_only(tmp_path):
    g = ResnetGenerator(8, 3)
    ckpt.save_generator(tmp_path / "g.pt", g)
    sd = torch.load(tmp_path / "g.pt", weights_only=True)
    assert ckpt.generator_arch(sd) == {"ngf": 8, "n_blocks": 3}
    g2 = ckpt.load_generator(tmp_path / "g.pt")
    x = torch.rand(1, 3, 16, 20) * 2 - 1
    with torch.no_grad():
        assert torch.equal(g.eval()(x), g2(x))


# ------------------------------------------------------------------------------ translation
@pytest.mark.parametrize("mode", ["whole", "tiled"])
@pytest.mark.parametrize("hw", [(375, 1242), (374, 1241), (37, 53)])
def test_translate_output_has_exactly_the_input_size(mode, hw):
    torch.manual_seed(0)
    g = ResnetGenerator(4, 1).eval()
    img = np.random.default_rng(0).integers(0, 256, (*hw, 3), dtype=np.uint8)
    out = translate_image(g, img, mode=mode, tile_px=256, overlap_px=32)
    assert out.shape == img.shape and out.dtype == np.uint8


def test_tiled_blending_is_exact_for_a_pointwise_network():
    net = torch.nn.Conv2d(3, 3, 1)
    with torch.no_grad():
        net.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
        net.bias.zero_()
    img = np.random.default_rng(0).integers(0, 256, (101, 263, 3), dtype=np.uint8)
    out = translate_image(net, img, mode="tiled", tile_px=64, overlap_px=16)
    assert np.abs(out.astype(int) - img).max() <= 1
    with pytest.raises(ConfigError, match="mode"):
        translate_image(net, img, mode="sliding")


# ------------------------------------------------------------------------------ data + stats
def test_domain_b_is_the_real_train_split_only():
    frames = pd.DataFrame({"frame_id": ["s1", "s2", "s3"], "variation": ["clone", "fog", "clone"],
                           "image": ["a1.jpg", "a2.jpg", "a3.jpg"]})
    real = pd.DataFrame({"image_id": ["r1", "r2", "r3", "r4"], "split": ["train", "val", "val", "train"],
                         "image": ["t1.png", "v1.png", "v2.png", "t2.png"]})
    a, b = domain_frames(frames, real, ["clone"])
    assert a == ["a1.jpg", "a3.jpg"] and b == ["t1.png", "t2.png"]
    with pytest.raises(DataError, match="split == 'train'"):
        domain_frames(frames, real[real["split"] == "val"], ["clone"])
    with pytest.raises(ConfigError, match="rain"):
        domain_frames(frames, real, ["rain"])


def test_domain_statistics():
    rng = np.random.default_rng(0)
    img = scene(rng)
    h = lab_histogram(img)
    assert h.shape == (3, 256) and h.sum() == 3 * img.shape[0] * img.shape[1]
    assert histogram_w1(h, h) == 0
    shifted = np.roll(h, 5, axis=1)  # every level +5 → W1 = 5 bins per channel
    shifted[:, :5] = 0
    assert histogram_w1(h, shifted) == pytest.approx(5.0, abs=0.05) or histogram_w1(h, shifted) > 4
    sim, real, warm = DomainStats(), DomainStats(), DomainStats()
    for _ in range(3):
        x = scene(rng)
        sim.add(x)
        warm.add(realish(x))
        real.add(realish(scene(rng)))
    assert warm.distance(real)["lab_w1"] < sim.distance(real)["lab_w1"]
    assert warm.distance(real)["sharpness_gap"] < sim.distance(real)["sharpness_gap"]
    assert edge_correlation(img, img) == pytest.approx(1.0)


# ------------------------------------------------------------------------------ stage CLIs (no DVC)
def _stage_world(root: Path, rng: np.random.Generator) -> None:
    """A tiny world in ``root``: data/dedupe/frames.csv (odd-sized frames + labels), data/ingest/real_frames.csv
    (inside the data roots the stages build from params)."""
    rows, real = [], []
    for i, var in enumerate(["clone", "clone", "fog"]):
        img = root / f"data/sim/{i}.png"
        write_image(img, scene(rng, 45, 75))
        label = root / f"data/dedupe/labels/f{i}.txt"
        label.parent.mkdir(parents=True, exist_ok=True)
        label.write_text(f"0 0.5 0.5 0.2 0.{i + 1}\n")
        rows.append({"frame_id": f"f{i}", "variation": var, "image": f"data/sim/{i}.png",
                     "label": f"data/dedupe/labels/f{i}.txt"})
    for i, split in enumerate(["train", "train", "val"]):
        write_image(root / f"data/real/{i}.png", realish(scene(rng, 46, 74)))
        real.append({"image_id": f"{i:06d}", "split": split, "image": f"data/real/{i}.png"})
    pd.DataFrame(rows).to_csv(root / "data/dedupe/frames.csv", index=False)
    (root / "data/ingest").mkdir()
    pd.DataFrame(real).to_csv(root / "data/ingest/real_frames.csv", index=False)
    shipped = yaml.safe_load((Path(__file__).resolve().parents[2] / "params.yaml").read_text())
    params = {"seed": 0, "compute": {**shipped["compute"], "processes": 1, "torch_threads": 1, "device": "cpu"},
              "data": {**shipped["data"], "on_error": "fail"}, "tracking": shipped["tracking"],
              "cyclegan": {**shipped["cyclegan"], "variations": ["clone"],
                           "train": {**shipped["cyclegan"]["train"], **TINY, "ngf": 4, "ndf": 4, "crop_px": 24,
                                     "iterations": 3, "checkpoint_every": 2},
                           "translate": {"mode": "whole", "tile_px": 64, "overlap_px": 8, "amp": True,
                                         "jpeg_quality": 95}}}
    (root / "params.yaml").write_text(yaml.safe_dump(params))


def test_stage_clis_train_then_translate(tmp_path, monkeypatch):
    from stages import cyclegan_train, cyclegan_translate

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    _stage_world(tmp_path, np.random.default_rng(0))
    translate_args = ["--synthetic", "data/dedupe", "--real", "data/ingest", "--model", "model", "--out", "aug/cyclegan",
                      "--report", "reports/translate.json"]
    with pytest.raises(DataError, match=r"generator_a2b\.pt.*not found"):
        cyclegan_translate.main(translate_args)
    cyclegan_train.main(["--synthetic", "data/dedupe", "--real", "data/ingest", "--checkpoints", "ckpt", "--out", "model",
                         "--losses", "reports/losses.csv", "--report", "reports/train.json", "--live", "live"])
    assert pd.read_csv("reports/losses.csv")["step"].tolist() == [1, 2, 3]
    assert json.loads(Path("reports/train.json").read_text())["frames_b"] == 2  # the val row is not used
    assert (tmp_path / "model/samples.jpg").exists() and (tmp_path / "live/metrics.json").exists()
    curve = (tmp_path / "live/plots/metrics/loss_G.tsv").read_text()
    first = {f: json.loads(Path(f).read_text()) for f in ("reports/train.json", "live/metrics.json")}
    # rerun on the finished (persisted) checkpoint: no training, and the DVCLive curves are kept;
    # the metrics are equal (run history such as resumed_from is not a DVC metric)
    cyclegan_train.main(["--synthetic", "data/dedupe", "--real", "data/ingest", "--checkpoints", "ckpt", "--out", "model",
                         "--losses", "reports/losses.csv", "--report", "reports/train.json", "--live", "live"])
    assert {f: json.loads(Path(f).read_text()) for f in first} == first
    assert (tmp_path / "live/plots/metrics/loss_G.tsv").read_text() == curve
    assert pd.read_csv("reports/losses.csv")["step"].tolist() == [1, 2, 3]
    cyclegan_translate.main(translate_args)
    out = pd.read_csv("aug/cyclegan/frames.csv", dtype=str)
    assert out["frame_id"].tolist() == ["f0", "f1"]                     # variation 'clone' only
    for row in out.itertuples():
        assert cv2.imread(row.image).shape == (45, 75, 3)
        assert Path(row.label).read_bytes() == Path(row.source_image.replace("sim/", "dedupe/labels/f")
                                                        .replace(".png", ".txt")).read_bytes()
    report = json.loads(Path("reports/translate.json").read_text())
    assert report["frames"] == 2 and {"real_train", "real_val"} <= set(report)
    # data.on_error: skip -> a corrupt frame is left out and listed; fail (above) stops naming it
    Path("data/sim/1.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(DataError, match=r"sim/1\.png"):
        cyclegan_translate.main(translate_args)
    params = yaml.safe_load(Path("params.yaml").read_text())
    params["data"]["on_error"] = "skip"  # 1 of 2 frames: more than the default data.max_skip_fraction 0.05
    Path("params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(DataError, match=r"1 of 2 frames skipped .*max_skip_fraction"):
        cyclegan_translate.main(translate_args)
    params["data"]["max_skip_fraction"] = 0.5
    Path("params.yaml").write_text(yaml.safe_dump(params))
    cyclegan_translate.main(translate_args)
    report = json.loads(Path("reports/translate.json").read_text())
    assert report["frames_in"] == 2 and report["frames_out"] == 1 and report["frames_skipped"] == 1
    assert [s["frame_id"] for s in report["skipped"]] == ["f1"]
    assert pd.read_csv("aug/cyclegan/frames.csv", dtype=str)["frame_id"].tolist() == ["f0"]
