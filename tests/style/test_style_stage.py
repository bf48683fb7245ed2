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
from sim2real.io import tree_digest
from sim2real.params import load_params
from sim2real.safety import data_roots
from sim2real.style import stage as st
from stages import style_transfer

ROOT = Path(__file__).resolve().parents[2]
SPEC_COLUMNS = ["frame_id", "image", "label", "style_image_id", "method", "steps", "content_loss", "style_loss"]


def style_params(**over) -> dict:
    p = yaml.safe_load((ROOT / "params.yaml").read_text())["style"]
    p["nst"].update(scales=[0.5], steps=[2])
    p.update(over)
    return p


def make_world(root: Path, h=48, w=96, n_frames=2) -> tuple[Path, Path]:
    """dedupe/ (``n_frames`` frames + class maps + labels) and ingest/ (train + val real frames)."""
    rng = np.random.default_rng(0)
    ded, ing = root / "dedupe", root / "ingest"
    rows = []
    seg = np.zeros((h, w, 3), np.uint8)
    seg[: h // 3] = CATEGORY_COLORS["Sky"]
    seg[h // 3:] = CATEGORY_COLORS["Road"]
    seg[h // 2: h - 4, 20:50] = CATEGORY_COLORS["Car"]
    for i in range(n_frames):
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
    pool = st.read_style_pool(ing, roots=[tmp_path])
    assert {p["image_id"] for p in pool} == {"000000", "000002", "000004"}
    frames = st.read_content_frames(ded, roots=[tmp_path])
    for pairing in ("histogram", "random"):
        picks = st.pair_styles(frames, pool, pairing, seed=0)
        assert all(pool[k]["image_id"] in {"000000", "000002", "000004"} for k in picks)
    assert [p["image_id"] for p in st.read_style_pool(ing, semantic_only=True, roots=[tmp_path])] == ["000000"]


def test_stage_run_writes_variant_and_copies_labels(tmp_path):
    ded, ing = make_world(tmp_path)
    out, rep, grid = tmp_path / "out", tmp_path / "rep.json", tmp_path / "grid.jpg"
    s = st.run(ded, ing, out, rep, style_params(), seed=0, device="cpu", workers=1, grid=grid, roots=[tmp_path])
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
    st.run(ded, ing, out2, tmp_path / "rep2.json", style_params(), seed=0, device="cpu", workers=1, roots=[tmp_path])
    for f in ("f0", "f1"):
        assert (out / "images" / f"{f}.jpg").read_bytes() == (out2 / "images" / f"{f}.jpg").read_bytes()
    # nst through the stage: batched, steps recorded, labels still copied
    out3 = tmp_path / "out3"
    st.run(ded, ing, out3, tmp_path / "rep3.json", style_params(method="nst"), seed=0, device="cpu", workers=1,
           roots=[tmp_path])
    t3 = pd.read_csv(out3 / "frames.csv")
    assert (t3["steps"] == 2).all() and (t3["method"] == "nst").all() and np.isfinite(t3["style_loss"]).all()
    assert json.loads((tmp_path / "rep3.json").read_text())["vgg_weights"] == "random"


def test_same_params_give_a_byte_identical_output_folder(tmp_path):
    """The DVC output (images, labels, frames.csv) and the report are the same bytes on a rerun;
    wall-clock seconds only go to the timing CSV (outside the cached output)."""
    ded, ing = make_world(tmp_path)
    for method in ("photoreal", "nst"):
        runs = []
        for k in range(2):  # the same paths each time, as under `dvc repro`
            out, rep, timing = tmp_path / "out", tmp_path / "rep.json", tmp_path / "timing.csv"
            st.run(ded, ing, out, rep, style_params(method=method), seed=0, device="cpu", workers=1, timing=timing,
                   roots=[tmp_path])
            runs.append((tree_digest(out), rep.read_bytes()))
            out.rename(tmp_path / f"{method}{k}")
            t = pd.read_csv(timing)
            assert list(t.columns) == st.TIMING_COLUMNS and list(t["frame_id"]) == ["f0", "f1"]
            assert (t["seconds"] > 0).all()
        (d0, r0), (d1, r1) = runs
        assert set(d0) == {"frames.csv", "images/f0.jpg", "images/f1.jpg", "labels/f0.txt", "labels/f1.txt"}
        assert d0 == d1, method
        # compute.resume (finished batches kept in a scratch folder): the same bytes, scratch cleared after
        scratch = tmp_path / "scratch"
        st.run(ded, ing, tmp_path / "out", tmp_path / "rep.json", style_params(method=method), seed=0, device="cpu",
               workers=1, resume_dir=scratch, roots=[tmp_path])
        assert tree_digest(tmp_path / "out") == d0 and not list(scratch.glob("*/*"))
        (tmp_path / "out").rename(tmp_path / f"{method}_resume")
        assert r0 == r1 and "seconds" not in r0.decode()
        assert "seconds" not in (tmp_path / f"{method}0" / "frames.csv").read_text().splitlines()[0]


def test_stage_wct2_with_official_checkpoints_is_label_wise_and_deterministic(tmp_path):
    """method wct2 on the official sum files (random weights in the official layout): frames whose
    style frame has a semantic map get the label-wise transfer; the same params give the same bytes."""
    from wct2_fixtures import save_official
    ded, ing = make_world(tmp_path)
    save_official(tmp_path / "ckpt", "sum")
    params = style_params(method="wct2", wct2_checkpoints=str(tmp_path / "ckpt" / "wave_encoder_sum_l4.pth"),
                          pairing="random")
    digests = []
    for k in range(2):  # the same paths each time, as under `dvc repro`
        s = st.run(ded, ing, tmp_path / "out", tmp_path / "r.json", params, seed=0, device="cpu", workers=1,
                   roots=[tmp_path])
        digests.append(tree_digest(tmp_path / "out"))
        (tmp_path / "out").rename(tmp_path / f"out{k}")
    assert digests[0] == digests[1]
    table = pd.read_csv(tmp_path / "out0" / "frames.csv", keep_default_na=False, dtype={"style_image_id": str})
    assert (table["method"] == "wct2").all()
    semantic = table["style_image_id"] == "000000"          # the one real train frame with a semantic map
    assert semantic.any() and list(table["regions"]) == ["semantic" if x else "global" for x in semantic]
    assert s["frames_semantic_regions"] == int(semantic.sum())
    with pytest.raises(ConfigError, match=r"style\.wct2_schedule"):
        st.run(ded, ing, tmp_path / "o", tmp_path / "r.json", dict(params, wct2_schedule="paper"), 0, "cpu", 1,
               roots=[tmp_path])


def test_stage_main_tracks_batches_and_grid_offline(tmp_path, monkeypatch):
    """main(): a W&B offline run (and DVCLive) with per-batch losses, the grid, the summary; wall-clock
    seconds only in the W&B summary, never in DVCLive's metrics (a DVC metric must not change between runs)."""
    from sim2real.tracking import offline_runs, read_offline_run
    ded, ing = make_world(tmp_path / "data")  # inside the data roots the stage builds from params
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["style"].update(batch_size=1)
    params["style"]["nst"].update(scales=[0.5], steps=[2])
    params["compute"].update(processes=1, scheduler="local", resume=False)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("SIM2REAL_WANDB_ROOT", str(tmp_path))
    style_transfer.main(["--dedupe", str(ded), "--real", str(ing), "--out", "out", "--report", "rep.json",
                         "--grid", "grid.jpg", "--timing", "timing.csv", "--live", "live"])
    [run_dir] = offline_runs(tmp_path)
    run = read_offline_run(run_dir)
    assert run["name"] == "style_transfer-photoreal" and "style_transfer" in run["tags"]
    assert run["config"]["style"]["method"] == "photoreal"
    steps = [h for h in run["history"] if "batch/style_loss" in h]
    assert len(steps) == 2  # one point per batch (batch_size 1, 2 frames)
    for h in steps:
        assert {f"batch/{k}" for k in ("content_loss", "style_loss", "steps", "frames")} <= set(h)
        assert np.isfinite(h["batch/style_loss"]) and h["batch/frames"] == 1
    summ = run["summary"]
    report = json.loads(Path("rep.json").read_text())
    assert summ["frames"] == report["frames"] == 2 and summ["stage_seconds"] > 0
    assert summ["mean_style_loss"] == pytest.approx(report["mean_style_loss"])
    assert (run_dir / "files" / summ["style_grid.path"]).is_file()
    live = json.loads(Path("live/metrics.json").read_text())
    assert live["frames"] == 2 and live["step"] == 1 and "style_loss" in live["batch"]
    assert not {"stage_seconds", "mean_seconds_per_frame"} & set(live) and "seconds_per_frame" not in live["batch"]
    assert Path("live/plots/images/style_grid.png").is_file()


@pytest.mark.parametrize("method", ["photoreal", "nst"])
def test_stage_on_dask_matches_local_and_loads_vgg_once_per_worker(cluster, tmp_path, monkeypatch, method):
    """compute.scheduler on a LocalCluster (2 workers): the same output bytes as the local run;
    with nst each worker process builds VGG16 once and reuses it for its later batches."""
    _, client = cluster
    ded, ing = make_world(tmp_path, n_frames=4)
    monkeypatch.chdir(tmp_path)  # relative input paths, as in the DVC stage: the workers get absolute ones
    ded, ing = ded.relative_to(tmp_path), ing.relative_to(tmp_path)
    p = style_params(method=method, batch_size=1)
    st.run(ded, ing, "out", "local.json", p, seed=0, device="cpu", workers=1, roots=[tmp_path])
    Path("out").rename("local")
    before = client.run(st.model_loads)
    st.run(ded, ing, "out", "dask.json", p, seed=0, device="cpu", workers=1, scheduler=client, batch_size=1,
           max_in_flight=2, roots=[tmp_path])
    assert tree_digest("local") == tree_digest("out")
    assert len(tree_digest("out")) == 9
    assert Path("local.json").read_bytes() == Path("dask.json").read_bytes()
    assert pd.read_csv("out/frames.csv")["image"].str.startswith("out/images/").all()
    if method == "nst":
        loads = client.run(st.model_loads)
        built = [sum(v.values()) - sum(before[w].values()) for w, v in loads.items()]
        # 4 batches on 2 workers: at least one worker ran several, and no worker built VGG16 twice
        assert sorted(built)[-1] == 1 and set(built) <= {0, 1}, loads


def test_stage_config_errors_name_the_param(tmp_path, monkeypatch):
    ded, ing = make_world(tmp_path)
    with pytest.raises(ConfigError, match="style.method"):
        st.run(ded, ing, tmp_path / "o", tmp_path / "r.json", style_params(method="gan"), 0, "cpu", 1, roots=[tmp_path])
    with pytest.raises(ConfigError, match=r"style\.wct2_checkpoints"):
        st.run(ded, ing, tmp_path / "o", tmp_path / "r.json", style_params(method="wct2"), 0, "cpu", 1, roots=[tmp_path])
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("SIM2REAL_OFFLINE", "1")
    with pytest.raises(ConfigError, match=r"style\.vgg_weights"):
        st.run(ded, ing, tmp_path / "o", tmp_path / "r.json",
               style_params(method="nst", vgg_weights=str(tmp_path / "none.pth")), 0, "cpu", 1, roots=[tmp_path])
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
    roots = data_roots(load_params("data").data)
    frames = st.read_content_frames("data/dedupe", roots=roots)
    pool = {p["image_id"]: p for p in st.read_style_pool("data/ingest", roots=roots)}
    it = dict(frames[0])
    sp = pool[table["style_image_id"].iloc[0]]
    it.update(style_image_id=sp["image_id"], style_image=sp["image"], style_semantic=sp["semantic"])
    tmp = tmp_path / "rerender"
    (tmp / "images").mkdir(parents=True, exist_ok=True)
    (tmp / "labels").mkdir(exist_ok=True)
    threads = max(1, (os.cpu_count() or 1) // max(1, int(params["compute"]["processes"])))
    st.process_batch(dict(frame_id=it["frame_id"], frames=[it]), style_cfg=params["style"], seed=int(params["seed"]),
                     device="cpu", threads=threads, tmp_dir=str(tmp), out_dir="x")
    assert (tmp / "images" / f"{it['frame_id']}.jpg").read_bytes() == (repo / table["image"].iloc[0]).read_bytes()
