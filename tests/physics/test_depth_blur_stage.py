"""Stage depth_blur: a small synthetic dedupe output (fast), then the real DVC pipeline (slow)."""
from __future__ import annotations

import filecmp
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from sim2real.errors import DataError
from sim2real.formats.images import write_gray, write_image
from sim2real.formats.vkitti2 import write_depth
from sim2real.formats.yolo import read_labels
from sim2real.physics.dataset import run
from sim2real.safety import data_roots

ROOT = Path(__file__).resolve().parents[2]
W, H = 320, 120


def fake_dedupe(root: Path, n_frames: int = 3) -> Path:
    """frames.csv + boxes_kept.csv like the dedupe stage's, with a near car (8 m) and a far one (400 m)."""
    rng = np.random.default_rng(0)
    rows, boxes = [], []
    for i in range(n_frames):
        fid = f"Scene01_clone_c0_{i:05d}"
        img = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
        depth = np.full((H, W), 30.0, np.float32)
        depth[:40] = np.inf
        inst = np.zeros((H, W), np.uint8)
        depth[60:110, 20:120], inst[60:110, 20:120] = 8.0, 1  # trackID 0, near
        depth[45:55, 200:220], inst[45:55, 200:220] = 400.0, 3  # trackID 2, far: hidden by the haze
        paths = {k: root / "src" / f"{k}_{i}.{'jpg' if k == 'rgb' else 'png'}" for k in ("rgb", "depth", "inst")}
        write_image(paths["rgb"], img)
        write_depth(paths["depth"], depth)
        write_gray(paths["inst"], inst)
        rows.append(dict(frame_id=fid, scene="Scene01", variation="clone", camera=0, frame=i, width=W, height=H,
                         rgb=str(paths["rgb"]), depth=str(paths["depth"]), class_seg="", instance_seg=str(paths["inst"]),
                         fx=725.0, fy=725.0, cx=W / 2, cy=H / 2, image=str(paths["rgb"]),
                         label=str(root / "dedupe" / "labels" / f"{fid}.txt"), n_boxes=2))
        boxes.append(dict(frame_id=fid, trackID=0, label="Car", class_id=0, left=20, right=119, top=60, bottom=109))
        boxes.append(dict(frame_id=fid, trackID=2, label="Van", class_id=1, left=200, right=219, top=45, bottom=54))
    d = root / "dedupe"
    d.mkdir(parents=True)
    pd.DataFrame(rows).to_csv(d / "frames.csv", index=False)
    pd.DataFrame(boxes).to_csv(d / "boxes_kept.csv", index=False)
    return d


PARAMS = {"blur": {"mode": "distance", "sigma": [1.0, 3.0], "near_m": 5.0, "far_m": 70.0},
          "haze": {"enabled": True, "visibility_m": [150, 250], "airlight": "auto", "min_transmission": 0.1},
          "camera": {"shot_gain": 0.1, "read_sigma": [0.5, 2.0], "jpeg_quality": [80, 90], "vignetting": 0.1}}


def test_stage_writes_variant_drops_hidden_boxes_and_is_deterministic(tmp_path):
    d = fake_dedupe(tmp_path)
    s1 = run(d, tmp_path / "a", tmp_path / "a.json", PARAMS, seed=0, workers=1, roots=[tmp_path])
    s2 = run(d, tmp_path / "b", tmp_path / "b.json", PARAMS, seed=0, workers=2, roots=[tmp_path])
    assert s1 == s2 == json.loads((tmp_path / "a.json").read_text())
    assert s1["frames"] == 3 and s1["boxes_in"] == 6 and s1["boxes_dropped_low_transmission"] == 3
    assert s1["boxes_out"] == 3 and 1.0 <= s1["mean_blur_sigma_px"] <= 3.0
    frames = pd.read_csv(tmp_path / "a" / "frames.csv")
    assert {"frame_id", "image", "label", "blur_sigma_px", "haze_visibility_m", "camera_jpeg_quality",
            "noise_seed", "n_dropped_low_transmission"} <= set(frames.columns)
    assert frames["blur_sigma_px"].nunique() == 3  # drawn per frame
    for row in frames.itertuples():
        fid = row.frame_id
        for sub in ("images", "labels"):
            ext = "jpg" if sub == "images" else "txt"
            assert filecmp.cmp(tmp_path / "a" / sub / f"{fid}.{ext}", tmp_path / "b" / sub / f"{fid}.{ext}", shallow=False)
        lab = read_labels(tmp_path / "a" / "labels" / f"{fid}.txt")
        assert lab["cls"].tolist() == [0]  # the near car stays, the far van (t ~ 0.002) is dropped
        assert lab.iloc[0][["cx", "cy", "w", "h"]].tolist() == pytest.approx(
            [(20 + 119) / 2 / W, (60 + 109) / 2 / H, 99 / W, 49 / H], abs=1e-6)
        assert row.image == str(tmp_path / "a" / "images" / f"{fid}.jpg")
    # one frame can be re-rendered alone from (seed, frame id)
    one = tmp_path / "one"
    d1 = tmp_path / "d1"
    d1.mkdir()
    pd.read_csv(d / "frames.csv").iloc[[1]].to_csv(d1 / "frames.csv", index=False)
    pd.read_csv(d / "boxes_kept.csv").query("frame_id == 'Scene01_clone_c0_00001'").to_csv(d1 / "boxes_kept.csv", index=False)
    run(d1, one, tmp_path / "one.json", PARAMS, seed=0, workers=1, roots=[tmp_path])
    assert filecmp.cmp(one / "images" / "Scene01_clone_c0_00001.jpg", tmp_path / "a" / "images" / "Scene01_clone_c0_00001.jpg",
                       shallow=False)
    run(d, tmp_path / "c", tmp_path / "c.json", PARAMS, seed=1, workers=1, roots=[tmp_path])
    assert not filecmp.cmp(tmp_path / "c" / "images" / f"{fid}.jpg", tmp_path / "a" / "images" / f"{fid}.jpg", shallow=False)


def test_stage_bad_inputs_name_the_frame_or_file(tmp_path):
    d = fake_dedupe(tmp_path, n_frames=1)
    frames = pd.read_csv(d / "frames.csv")
    depth8 = tmp_path / "depth8.png"
    write_gray(depth8, np.full((H, W), 30, np.uint8))
    frames.assign(depth=str(depth8)).to_csv(d / "frames.csv", index=False)
    with pytest.raises(DataError, match=r"depth8\.png: frame Scene01_clone_c0_00000: .*16-bit"):
        run(d, tmp_path / "o", tmp_path / "o.json", PARAMS, seed=0, workers=1, roots=[tmp_path])
    small = tmp_path / "small.png"
    write_depth(small, np.full((H, W - 2), 30.0, np.float32))
    frames.assign(depth=str(small)).to_csv(d / "frames.csv", index=False)
    with pytest.raises(DataError, match=r"small\.png: frame Scene01_clone_c0_00000: depth map is 318x120"):
        run(d, tmp_path / "o", tmp_path / "o.json", PARAMS, seed=0, workers=2, roots=[tmp_path])
    assert not (tmp_path / "o").exists()  # atomic: nothing half-written
    frames.to_csv(d / "frames.csv", index=False)
    bad = {**PARAMS, "haze": {**PARAMS["haze"], "visibility_m": -100}}
    with pytest.raises(Exception, match="visibility_m must be > 0"):
        run(d, tmp_path / "o", tmp_path / "o.json", bad, seed=0, workers=1, roots=[tmp_path])


def test_stage_cli_prints_one_line_error(tmp_path):
    d = fake_dedupe(tmp_path / "data", n_frames=1)  # inside the data roots the stage builds from params
    frames = pd.read_csv(d / "frames.csv")
    small = tmp_path / "data" / "small.png"
    write_depth(small, np.full((H - 1, W), 30.0, np.float32))
    frames.assign(depth=str(small)).to_csv(d / "frames.csv", index=False)
    shipped = yaml.safe_load((ROOT / "params.yaml").read_text())  # sections are validated whole on load
    params = {**shipped, **{k: {**shipped[k], **PARAMS[k]} for k in PARAMS}, "seed": 0,
              "compute": {**shipped["compute"], "processes": 1}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    proc = subprocess.run([sys.executable, "-m", "stages.depth_blur", "--dedupe", str(d), "--out", str(tmp_path / "o"),
                           "--report", str(tmp_path / "r.json")], cwd=tmp_path, capture_output=True, text=True,
                          env={"PYTHONPATH": str(ROOT), "SIM2REAL_NO_PROGRESS": "1", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith(f"error: {small}: frame Scene01_clone_c0_00000: depth map is")


# ------------------------------------------------------------------------- the real pipeline
def _dvc(repo, *args, check=True):
    from conftest import dvc
    return dvc(repo, *args, check=check)


@pytest.mark.slow
def test_pipeline_output_and_label_honesty(pipeline_repo):
    rep = json.loads((pipeline_repo / "reports" / "depth_blur.json").read_text())
    aug = pd.read_csv(pipeline_repo / "data" / "aug" / "depth_blur" / "frames.csv")
    base = pd.read_csv(pipeline_repo / "data" / "dedupe" / "frames.csv")
    assert rep["frames"] == len(aug) == len(base) > 0
    assert rep["boxes_in"] == int(base["n_boxes"].sum())
    assert rep["boxes_in"] - rep["boxes_out"] == rep["boxes_dropped_low_transmission"]
    assert rep["boxes_dropped_low_transmission"] > 0  # haze.min_transmission 0.6 in pipeline_overrides.yaml
    assert rep["boxes_dropped_low_transmission"] == int(aug["n_dropped_low_transmission"].sum())
    dropped = aug[aug["n_dropped_low_transmission"] > 0]
    assert (dropped["min_object_transmission"] < 0.6).all()
    for row in aug.itertuples():
        got = read_labels(pipeline_repo / row.label)
        ref = read_labels(pipeline_repo / "data" / "dedupe" / "labels" / f"{row.frame_id}.txt")
        assert len(ref) - len(got) == row.n_dropped_low_transmission
        ref_rows = {tuple(np.round(r, 6)) for r in ref.to_numpy()}
        assert {tuple(np.round(r, 6)) for r in got.to_numpy()} <= ref_rows  # boxes never move
        assert (pipeline_repo / row.image).is_file()


@pytest.mark.slow
def test_pipeline_rerun_is_byte_identical(pipeline_repo, tmp_path, monkeypatch):
    """Same seed => same bytes, whatever the number of workers."""
    monkeypatch.chdir(pipeline_repo)
    p = yaml.safe_load((pipeline_repo / "params.yaml").read_text())
    params = {k: p[k] for k in ("blur", "haze", "camera")}
    run("data/dedupe", tmp_path / "again", tmp_path / "again.json", params, seed=int(p["seed"]), workers=1,
        roots=data_roots(p["data"]))
    ref = pipeline_repo / "data" / "aug" / "depth_blur"
    names = sorted(x.name for x in (ref / "images").iterdir())
    assert names == sorted(x.name for x in (tmp_path / "again" / "images").iterdir())
    for sub, ext in (("images", "jpg"), ("labels", "txt")):
        match, mismatch, errors = filecmp.cmpfiles(ref / sub, tmp_path / "again" / sub,
                                                   [n.replace(".jpg", f".{ext}") for n in names], shallow=False)
        assert not mismatch and not errors
    assert json.loads((tmp_path / "again.json").read_text()) == json.loads(
        (pipeline_repo / "reports" / "depth_blur.json").read_text())


def _descendants(repo: Path, stage: str) -> set[str]:
    dot = _dvc(repo, "dag", "--dot").stdout
    edges = re.findall(r'"([^"]+)"\s*->\s*"([^"]+)"', dot)
    out, todo = set(), [stage]
    while todo:
        s = todo.pop()
        for a, b in edges:
            if a == s and b not in out:
                out.add(b)
                todo.append(b)
    return out


@pytest.mark.slow
def test_changing_blur_sigma_reruns_only_depth_blur_and_dependants(pipeline_repo):
    """`dvc exp run -S blur.sigma=3`: checked with `dvc status` / `dvc repro --dry` on the edited params.

    Stages that would run even without the edit (none, after a full repro) are subtracted, so the
    test checks exactly what the edit adds: depth_blur and only stages downstream of it.
    """
    params_file = pipeline_repo / "params.yaml"
    original = params_file.read_text()
    # calibrate reads blur.* too (its "before" statistics; the calibrated render inherits unfitted keys)
    allowed = {"depth_blur", "calibrate"} | _descendants(pipeline_repo, "depth_blur") \
        | _descendants(pipeline_repo, "calibrate")

    def changed() -> tuple[set, set]:
        status = json.loads(_dvc(pipeline_repo, "status", "--json").stdout or "{}")
        dry = _dvc(pipeline_repo, "repro", "--dry", check=False).stdout
        return set(status), set(re.findall(r"Running stage '([^']+)'", dry))

    status0, running0 = changed()
    assert "depth_blur" not in status0 | running0
    try:
        p = yaml.safe_load(original)
        p["blur"]["sigma"] = 3
        params_file.write_text(yaml.safe_dump(p, sort_keys=False))
        status1, running1 = changed()
    finally:
        params_file.write_text(original)
    assert "depth_blur" in status1 and "depth_blur" in running1
    added = (status1 - status0) | (running1 - running0)
    assert added <= allowed, added - allowed
    assert not running1 & {"demo", "ingest", "dedupe"}


@pytest.mark.parametrize("workers", [1, 2])
def test_on_error_skip_lists_the_corrupt_frame_in_the_report(tmp_path, workers):
    d = fake_dedupe(tmp_path, n_frames=3)
    bad = pd.read_csv(d / "frames.csv").loc[1, "rgb"]
    Path(bad).write_bytes(b"\xff\xd8 truncated jpeg")
    with pytest.raises(DataError, match=r"rgb_1\.jpg"):
        run(d, tmp_path / "f", tmp_path / "f.json", PARAMS, seed=0, workers=workers, roots=[tmp_path])
    with pytest.raises(DataError, match=r"1 of 3 frames skipped .*data.max_skip_fraction"):
        run(d, tmp_path / "s", tmp_path / "s.json", PARAMS, seed=0, workers=workers, on_error="skip",
            roots=[tmp_path])
    assert not (tmp_path / "s").exists() and not (tmp_path / "s.json").exists()
    s = run(d, tmp_path / "s", tmp_path / "s.json", PARAMS, seed=0, workers=workers, on_error="skip",
            max_skip_fraction=0.5, roots=[tmp_path])
    assert s["frames_in"] == 3 and s["frames_out"] == 2 and s["frames_skipped"] == 1
    assert [k["frame_id"] for k in s["skipped"]] == ["Scene01_clone_c0_00001"]
    assert "rgb_1.jpg" in s["skipped"][0]["message"]
    assert pd.read_csv(tmp_path / "s" / "frames.csv")["frame_id"].tolist() == ["Scene01_clone_c0_00000", "Scene01_clone_c0_00002"]
