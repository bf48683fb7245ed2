"""The calibrate stage in DVC: a change of a calibrate.* param reruns calibrate and what depends on
it, nothing else; depth_blur_calibrated lays the fitted values over params.yaml."""
from __future__ import annotations

import json

import pytest
import yaml

from sim2real.errors import ConfigError
from sim2real.params import layer
from tests.conftest import dvc, make_repo

FAKE_OUTS = ["data/demo/vkitti2/x", "data/demo/kitti/x", "data/ingest/x", "data/dedupe/x", "reports/dedupe.json",
             "data/aug/depth_blur/x", "reports/depth_blur.json", "data/calibrate/params.yaml",
             "reports/calibration.json", "reports/calibration/x.csv", "data/aug/calibrated/x",
             "reports/depth_blur_calibrated.json"]
STAGES = ["demo", "ingest", "dedupe", "depth_blur", "calibrate", "depth_blur_calibrated"]


def _changed(repo) -> set[str]:
    out = json.loads(dvc(repo, "status", "--json", *STAGES).stdout or "{}")
    return {k.split(":")[-1] for k in out}


def test_a_calibrate_param_reruns_only_calibrate_and_its_dependants(tmp_path):
    repo = make_repo(tmp_path / "repo")
    for rel in FAKE_OUTS:  # stand-in outputs: commit them as if every stage had run
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text("{}\n" if rel.endswith(".json") else "x\n")
    dvc(repo, "commit", "-f", "-q", *STAGES)
    assert _changed(repo) == set()
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["calibrate"]["max_sim_frames"] = 8  # what `dvc exp run -S calibrate.max_sim_frames=8` sets
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert _changed(repo) == {"calibrate"}
    dry = dvc(repo, "repro", "--dry", *STAGES).stdout
    assert "Running stage 'calibrate'" in dry
    assert not any(f"Running stage '{s}'" in dry for s in ("demo", "ingest", "dedupe", "depth_blur"))
    # its dependants: everything downstream of data/calibrate, through the `calibrated` variant
    dag = dvc(repo, "dag", "--outs", "--dot", "gap@calibrated").stdout
    assert "data/calibrate" in dag and "data/aug/calibrated" in dag
    down = dvc(repo, "dag", "--dot", "report").stdout
    assert '"calibrate"' in down and '"depth_blur_calibrated"' in down and '"gap@calibrated"' in down
    # and the hand-set variant does not depend on it
    assert '"calibrate"' not in dvc(repo, "dag", "--dot", "gap@depth_blur").stdout


def test_overlay_lays_fitted_keys_over_params(tmp_path):
    over = tmp_path / "params.yaml"
    over.write_text(yaml.safe_dump({"blur": {"sigma": 1.7}, "camera": {"read_sigma": 2.4, "wb_gain_r": 1.1}}))
    base = {"blur": {"sigma": 2.5, "near_m": 5.0}, "haze": {"visibility_m": [350, 900]}, "camera": {"read_sigma": [1, 2]}}
    out = layer(base, over, ("blur", "haze", "camera"))
    assert out["blur"] == {"sigma": 1.7, "near_m": 5.0} and out["haze"] == base["haze"]
    assert out["camera"] == {"read_sigma": 2.4, "wb_gain_r": 1.1} and base["blur"]["sigma"] == 2.5
    over.write_text(yaml.safe_dump({"train": {"epochs": 1}}))
    with pytest.raises(ConfigError, match="unexpected section"):
        layer(base, over, ("blur", "haze", "camera"))
