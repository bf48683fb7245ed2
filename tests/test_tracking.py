"""sim2real.tracking: offline W&B runs hold the logged metrics; DVCLive writes metrics.json."""
from __future__ import annotations

import json
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest

from sim2real.errors import ConfigError
from sim2real.tracking import (Tracker, experiment_name, flatten_metrics, offline_runs, read_offline_run,
                               wandb_mode)

TRACKING = {"project": "s2r-test", "entity": None}  # the params section a stage loads and passes


@pytest.fixture
def repo(tmp_path, monkeypatch):
    """A committed git + DVC repo as cwd (DVCLive inspects the repo it runs in)."""
    env = dict(GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t")
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    for k in ("DVC_EXP_NAME", "DVC_EXP_BASELINE_REV", "DVC_ROOT", "WANDB_MODE", "WANDB_API_KEY",
              "SIM2REAL_WANDB_ROOT", "WANDB_DIR"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))      # no ~/.netrc with a W&B key
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=tmp_path, check=True)
    (tmp_path / ".gitignore").write_text("/wandb/\n")
    (tmp_path / "params.yaml").write_text("tracking:\n  project: s2r-test\n  entity: null\n")
    subprocess.run(["git", "add", "-A"], cwd=tmp_path, check=True)
    subprocess.run(["git", "commit", "-q", "-m", "init"], cwd=tmp_path, check=True)
    subprocess.run([str(Path(__import__("sys").executable).parent / "dvc"), "init", "-q"], cwd=tmp_path, check=True)
    monkeypatch.chdir(tmp_path)
    sha = subprocess.run(["git", "rev-parse", "--short=7", "HEAD"], cwd=tmp_path, capture_output=True,
                         text=True, check=True).stdout.strip()
    return tmp_path, sha


def test_offline_run_holds_metrics_images_and_identity(repo):
    root, sha = repo
    grid = np.zeros((16, 24, 3), np.uint8)
    grid[:, :12] = 200
    with Tracker("gap", "depth_blur", {"gap": {"bins": 6}}, dvclive_dir="reports/live/gap/depth_blur",
                 tracking=TRACKING) as t:
        assert t.mode == "offline"
        for step in range(3):
            t.log({"loss": 1.0 / (step + 1)}, step=step)
        t.log({"kid": 0.25, "blur": {"distance": 0.5}})
        t.log_image("samples", grid)
        t.summary({"pad": 1.5})
    run = read_offline_run(t.run_dir)
    assert t.run_dir.parent == root / "wandb" and t.run_dir.name.startswith("offline-run-")
    assert run["name"] == "gap-depth_blur" and run["group"] == "workspace" and run["project"] == "s2r-test"
    assert sha in run["tags"] and "gap" in run["tags"] and "depth_blur" in run["tags"]
    assert run["config"]["gap"] == {"bins": 6}
    s = run["summary"]
    assert s["kid"] == 0.25 and s["blur/distance"] == 0.5 and s["pad"] == 1.5 and s["loss"] == pytest.approx(1 / 3)
    assert [h["loss"] for h in run["history"] if "loss" in h] == pytest.approx([1.0, 0.5, 1 / 3])
    img = s["samples.path"]
    assert (t.run_dir / "files" / img).is_file()
    # DVCLive: summary for `dvc exp show`, step history, image; and no dvc.yaml written by DVCLive
    live = root / "reports/live/gap/depth_blur"
    m = json.loads((live / "metrics.json").read_text())
    assert m["kid"] == 0.25 and m["blur"]["distance"] == 0.5 and m["pad"] == 1.5 and m["step"] == 2
    assert (live / "plots/metrics/loss.tsv").read_text().splitlines()[1:] == ["0\t1.0", "1\t0.5", "2\t0.3333333333333333"]
    assert (live / "plots/images/samples.png").is_file()
    assert not (live / "dvc.yaml").exists() and not (root / "dvc.yaml").exists()


def test_group_is_dvc_experiment_name_and_disabled_mode_writes_no_wandb(repo, monkeypatch):
    root, _ = repo
    monkeypatch.setenv("DVC_EXP_NAME", "sigma-3")
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert experiment_name() == "sigma-3" and wandb_mode() == "disabled"
    with Tracker("report", None, {}, dvclive_dir="live", tracking=TRACKING) as t:
        t.log({"x": 1})
    assert t.run_dir is None and not (root / "wandb").exists()
    assert json.loads((root / "live/metrics.json").read_text()) == {"x": 1}
    monkeypatch.setenv("WANDB_MODE", "offline")
    with Tracker("gap", "baseline", {}, tracking=TRACKING) as t:
        t.log({"x": 2})
    run = read_offline_run(t.run_dir)
    assert run["group"] == "sigma-3" and run["name"] == "gap-baseline"
    assert offline_runs(root) == [t.run_dir]


def test_online_without_key_falls_back_to_offline(repo, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "online")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with Tracker("gap", "baseline", {}, tracking=TRACKING) as t:
            t.log({"kid": 0.1})
    assert t.mode == "offline" and any("no W&B API key" in str(w.message) for w in caught)
    assert read_offline_run(t.run_dir)["summary"]["kid"] == 0.1


def test_bad_inputs_are_rejected(repo, monkeypatch):
    assert flatten_metrics({"a": {"b": np.float32(2.0), "n": None}, "c": True, "s": "x"}) == {"a/b": 2.0, "c": 1, "s": "x"}
    with pytest.raises(ValueError, match="metric 'a/l'"):
        flatten_metrics({"a": {"l": [1, 2]}})
    monkeypatch.setenv("WANDB_MODE", "sometimes")
    with pytest.raises(Exception, match="WANDB_MODE"):
        wandb_mode()
    monkeypatch.setenv("WANDB_MODE", "disabled")
    with Tracker("gap", "baseline", {}, dvclive_dir="live", tracking=TRACKING) as t:
        t.log({"x": 1}, step=2)
        with pytest.raises(ValueError, match="lower than the last step"):
            t.log({"x": 1}, step=1)
        with pytest.raises(ValueError, match="uint8"):
            t.log_image("bad", np.zeros((4, 4), np.float32))


def test_project_and_entity_come_from_the_argument_not_the_cwd_params(repo, monkeypatch):
    root, _ = repo
    monkeypatch.setenv("WANDB_MODE", "offline")
    (root / "params.yaml").write_text("tracking:\n  project: from-cwd\n  entity: cwd-team\n")
    with Tracker("gap", "baseline", {}, tracking={"project": "from-stage", "entity": None}) as t:
        t.log({"x": 1})
    assert (t.project, t.entity) == ("from-stage", None)
    assert read_offline_run(t.run_dir)["project"] == "from-stage"
    (root / "params.yaml").write_text("tracking: [broken\n")  # never opened by the tracker
    assert Tracker("gap", None, {}, tracking={"project": "p", "entity": "team"}).entity == "team"
    with pytest.raises(TypeError, match="tracking"):
        Tracker("gap", None, {})  # no hidden default: the stage passes its tracking section
    with pytest.raises(ConfigError, match=r"^tracking\.project: .*got ''"):
        Tracker("gap", None, {}, tracking={"project": "", "entity": None})
    with pytest.raises(ConfigError, match=r"^tracking\.entity: "):
        Tracker("gap", None, {}, tracking={"project": "p", "entity": 3})
    with pytest.raises(ConfigError, match=r"^tracking: expected a mapping"):
        Tracker("gap", None, {}, tracking=["p"])
