"""Stage tests of cyclegan_train / cyclegan_translate on the pipeline run over the miniature world."""
from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
import yaml

from sim2real.cyclegan.checkpoint import generator_arch, load_checkpoint
from sim2real.formats.images import image_size

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def params(pipeline_repo):
    return yaml.safe_load((pipeline_repo / "params.yaml").read_text())["cyclegan"]


def test_train_outputs_weights_only_generator_and_loss_curves(pipeline_repo, params):
    sd = torch.load(pipeline_repo / "data/cyclegan/model/generator_a2b.pt", weights_only=True)
    assert generator_arch(sd) == {"ngf": params["train"]["ngf"], "n_blocks": params["train"]["n_blocks"]}
    losses = pd.read_csv(pipeline_repo / "reports/cyclegan/losses.csv")
    n = params["train"]["iterations"]
    assert losses["step"].tolist() == list(range(1, n + 1))
    assert {"loss_G", "loss_D_A", "loss_D_B", "loss_cycle_A", "lr"} <= set(losses.columns)
    assert losses["loss_G"].notna().all()
    assert (pipeline_repo / "data/cyclegan/model/samples.jpg").stat().st_size > 0
    state = load_checkpoint(pipeline_repo / "data/cyclegan/checkpoints/last.pt")
    assert state["iteration"] == n
    assert json.loads((pipeline_repo / "reports/live/cyclegan_train/metrics.json").read_text())


def test_domain_b_is_the_real_train_split(pipeline_repo):
    real = pd.read_csv(pipeline_repo / "data/ingest/real_frames.csv", dtype=str)
    report = json.loads((pipeline_repo / "reports/cyclegan/train.json").read_text())
    assert (real["split"] == "val").any()
    assert report["frames_b"] == int((real["split"] == "train").sum())


def test_translate_keeps_size_labels_and_geometry(pipeline_repo, params):
    out = pipeline_repo / "data/aug/cyclegan"
    frames = pd.read_csv(out / "frames.csv", dtype=str, keep_default_na=False)
    src = pd.read_csv(pipeline_repo / "data/dedupe/frames.csv", dtype=str, keep_default_na=False)
    src = src[src["variation"].isin(params["variations"])].set_index("frame_id")
    assert sorted(frames["frame_id"]) == sorted(src.index)
    for row in frames.itertuples():
        assert image_size(pipeline_repo / row.image) == image_size(pipeline_repo / src.loc[row.frame_id, "image"])
        assert (pipeline_repo / row.label).read_bytes() == (pipeline_repo / src.loc[row.frame_id, "label"]).read_bytes()
    assert frames["edge_corr"].astype(float).min() > 0.6  # ≈0.2 for unrelated frames


def test_translation_moves_sim_toward_real(pipeline_repo):
    report = json.loads((pipeline_repo / "reports/cyclegan_translate.json").read_text())
    for split in ("real_train", "real_val"):
        r = report[split]
        assert r["lab_w1_translated"] < r["lab_w1_raw"], (split, r)
