"""Stage tests for style_transfer: a tiny in-process run on files made here, and the DVC pipeline run."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from sim2real.errors import ConfigError
from sim2real.formats.images import read_rgb, write_gray, write_image
from sim2real.formats.vkitti2 import CATEGORY_COLORS
from stages import style_transfer as st

ROOT = Path(__file__).resolve().parents[1]
SPEC_COLUMNS = ["frame_id", "image", "label", "style_image_id", "method", "steps", "content_loss", "style_loss",
                "seconds"]


def style_params(**over) -> dict:
    p = yaml.safe_load((ROOT / "params.yaml").read_text())["style"]
    p["nst"].update(scales=[0.5], steps=[2])
    p.update(over)
    return p


def make_world(root: Path, h=48, w=96) -> tuple[Path, Path]:
    """dedupe/ (2 frames + class maps + labels) and ingest/ (train + val real frames)."""
    rng = np.random.default_rng(0)
    ded, ing = root / "dedupe", root / "ingest"
    rows = []
    seg = np.zeros((h, w, 3), np.uint8)
    seg[: h // 3] = CATEGORY_COLORS["Sky"]
    seg[h // 3:] = CATEGORY_COLORS["Road"]
    seg[h // 2: h - 4, 20:50] = CATEGORY_COLORS["Car"]
    for i in range(2):
        img = np.clip(rng.normal(120, 30, (h, w, 3)), 0, 255).astype(np.uint8)
        img[: h // 3] = (90, 200, 250)
        write_image(ded / "images" / f"f{i}.jpg", img)
        write_image(ded / "seg" / f"f{i}.png", seg)
        lab = ded / "labels" / f"f{i}.txt"
        lab.parent.mkdir(parents=True, exist_ok=True)
        lab.write_text(f"0 0.36458 0.7 0.3125 0.4{i}\n")
        rows.append(dict(frame_id=f"f{i}", image=str(ded / "images" / f"f{i}.jpg"), label=str(lab),
                         class_seg=str(ded / "seg" / f"f{i}.png")))
    pd.DataFrame(rows).to_csv(ded / "frames.csv", index=False)
    real = []
    for j in range(6):
        split = "val" if j % 2 else "train"
        if split == "val":  # val frames are exact copies of the content: nearest by histogram if allowed
            img = read_rgb(ded / "images" / f"f{(j // 2) % 2}.jpg")
        else:
            img = np.clip(rng.normal(60 + 20 * j, 20, (h, w, 3)), 0, 255).astype(np.uint8)
        p = ing / "img" / f"{j:06d}.png"
        write_image(p, img)
        sem = ""
        if j == 0:
            ids = np.full((h, w), 7, np.uint8)
            ids[: h // 3] = 23
            write_gray(ing / "sem" / f"{j:06d}.png", ids)
            sem = str(ing / "sem" / f"{j:06d}.png")
        real.append(dict(image_id=f"{j:06d}", split=split, image=str(p), label="", calib="", semantic=sem,
                         width=w, height=h))
    pd.DataFrame(real).to_csv(ing / "real_frames.csv", index=False)
    return ded, ing


def test_style_pool_is_train_only_even_when_val_matches_best(tmp_path):
    ded, ing = make_world(tmp_path)
    pool = st.read_style_pool(ing)
    assert {p["image_id"] for p in pool} == {"000000", "000002", "000004"}
    frames = st.read_content_frames(ded)
    for pairing in ("histogram", "random"):
        picks = st.pair_styles(frames, pool, pairing, seed=0)
        assert all(pool[k]["image_id"] in {"000000", "000002", "000004"} for k in picks)
    assert [p["image_id"] for p in st.read_style_pool(ing, semantic_only=True)] == ["000000"]


def test_stage_run_writes_variant_and_copies_labels(tmp_path):
    ded, ing = make_world(tmp_path)
    out, rep, grid = tmp_path / "out", tmp_path / "rep.json", tmp_path / "grid.jpg"
    s = st.run(ded, ing, out, rep, style_params(), seed=0, device="cpu", workers=1, grid=grid)
    table = pd.read_csv(out / "frames.csv", keep_default_na=False, dtype={"style_image_id": str})
    assert list(table.columns[: len(SPEC_COLUMNS)]) == SPEC_COLUMNS
    assert table["style_image_id"].isin(["000000", "000002", "000004"]).all()
    assert (table["method"] == "photoreal").all()
    for row in table.itertuples():
        assert Path(row.label).read_bytes() == (ded / "labels" / f"{row.frame_id}.txt").read_bytes()
        assert read_rgb(row.image).shape == (48, 96, 3)
    report = json.loads(rep.read_text())
    assert report["vgg_weights"] == "random" and report["frames"] == 2 and s["style_pool_train_frames"] == 3
    assert read_rgb(grid).shape[1] == 4 * 414
    # same params, same bytes
    out2 = tmp_path / "out2"
    st.run(ded, ing, out2, tmp_path / "rep2.json", style_params(), seed=0, device="cpu", workers=1)
    for f in ("f0", "f1"):
        assert (out / "images" / f"{f}.jpg").read_bytes() == (out2 / "images" / f"{f}.jpg").read_bytes()
    # nst through the stage: batched, steps recorded, labels still copied
    out3 = tmp_path / "out3"
    st.run(ded, ing, out3, tmp_path / "rep3.json", style_params(method="nst"), seed=0, device="cpu", workers=1)
    t3 = pd.read_csv(out3 / "frames.csv")
    assert (t3["steps"] == 2).all() and (t3["method"] == "nst").all() and np.isfinite(t3["style_loss"]).all()
    assert json.loads((tmp_path / "rep3.json").read_text())["vgg_weights"] == "random"


def test_stage_config_errors_name_the_param(tmp_path, monkeypatch):
    ded, ing = make_world(tmp_path)
    with pytest.raises(ConfigError, match="style.method"):
        st.run(ded, ing, tmp_path / "o", tmp_path / "r.json", style_params(method="gan"), 0, "cpu", 1)
    with pytest.raises(ConfigError, match=r"style\.wct2_checkpoints"):
        st.run(ded, ing, tmp_path / "o", tmp_path / "r.json", style_params(method="wct2"), 0, "cpu", 1)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("SIM2REAL_OFFLINE", "1")
    with pytest.raises(ConfigError, match=r"style\.vgg_weights"):
        st.run(ded, ing, tmp_path / "o", tmp_path / "r.json",
               style_params(method="nst", vgg_weights=str(tmp_path / "none.pth")), 0, "cpu", 1)
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_pipeline_style_variant(pipeline_repo, tmp_path, monkeypatch):
    repo = pipeline_repo
    table = pd.read_csv(repo / "data/aug/style/frames.csv", keep_default_na=False, dtype={"style_image_id": str})
    base = pd.read_csv(repo / "data/dedupe/frames.csv", keep_default_na=False)
    real = pd.read_csv(repo / "data/ingest/real_frames.csv", keep_default_na=False, dtype={"image_id": str})
    assert list(table.columns[: len(SPEC_COLUMNS)]) == SPEC_COLUMNS
    assert list(table["frame_id"]) == list(base["frame_id"])
    val = set(real.loc[real["split"] == "val", "image_id"])
    assert val and not (set(table["style_image_id"]) & val)
    assert set(table["style_image_id"]) <= set(real.loc[real["split"] == "train", "image_id"])
    for row in table.itertuples():
        assert (repo / row.label).read_bytes() == (repo / "data/dedupe/labels" / f"{row.frame_id}.txt").read_bytes()
    report = json.loads((repo / "reports/style_transfer.json").read_text())
    assert report["frames"] == len(base) and report["vgg_weights"] == "random"
    assert report["frames_semantic_regions"] > 0  # real frames with semantic maps were used per class
    assert (repo / "reports/style_grid.jpg").is_file()
    # one frame re-rendered here is byte-identical to the pipeline's
    monkeypatch.chdir(repo)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    frames = st.read_content_frames("data/dedupe")
    pool = {p["image_id"]: p for p in st.read_style_pool("data/ingest")}
    it = dict(frames[0])
    sp = pool[table["style_image_id"].iloc[0]]
    it.update(style_image_id=sp["image_id"], style_image=sp["image"], style_semantic=sp["semantic"])
    tmp = tmp_path / "rerender"
    (tmp / "images").mkdir(parents=True, exist_ok=True)
    (tmp / "labels").mkdir(exist_ok=True)
    threads = max(1, (os.cpu_count() or 1) // max(1, int(params["compute"]["workers"])))
    st.process_batch(dict(frame_id=it["frame_id"], frames=[it]), style_cfg=params["style"], seed=int(params["seed"]),
                     device="cpu", threads=threads, tmp_dir=str(tmp), out_dir="x")
    assert (tmp / "images" / f"{it['frame_id']}.jpg").read_bytes() == (repo / table["image"].iloc[0]).read_bytes()
