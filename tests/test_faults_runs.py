"""Faults of runs (issue 15, items 4 and 7-11): what ``on_error: skip`` may skip, killed runs under
DVC's run-cache, outputs renamed only after all work, two runs of one stage, stages outliving
their parent, and data roots that ingest accepts but later stages refuse.

Each test here failed before the fix it covers (see docs/faults-runs.md)."""
from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import BIN, ROOT, _env, dvc, make_repo
from sim2real.demo import generate
from sim2real.errors import ConfigError, DataError, FrameError
from sim2real.io import tree_digest
from sim2real.parallel import SkipLog, Skipped, map_frames

os.environ.setdefault("SIM2REAL_NO_PROGRESS", "1")

WORLD = {"seed": 7, "scenes": 1, "frames_per_scene": 4, "variations": ["clone"], "real_frames": 4,
         "real_seg_every": 4}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """A miniature vKITTI2 + KITTI world (1 scene, 4 frames, 4 real images), made once."""
    root = tmp_path_factory.mktemp("world")
    generate(root, workers=1, **WORLD)
    return root


def stage(cwd: Path, *args: str, check: bool = False, timeout: int = 300) -> subprocess.CompletedProcess:
    """``python -m stages.<...>`` in ``cwd`` (its params.yaml) with this checkout's code."""
    env = {**_env(), "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode:
        raise AssertionError(f"{args} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


def write_params(repo: Path, **sections) -> None:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for name, values in sections.items():
        params[name] = {**params[name], **values} if isinstance(values, dict) else values
    repo.mkdir(parents=True, exist_ok=True)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def temporaries(repo: Path) -> list[Path]:
    """Every stage temporary under ``repo`` (old sibling layout and .sim2real/tmp)."""
    return [p for p in repo.rglob("*") if ".tmp-" in p.name]


# ----------------------------------------------------------------------------- item 4: on_error skip
def flaky(item, *, kind):
    """A per-frame body that fails on frame 'x' with the exception ``kind`` names."""
    if item["frame_id"] == "x" or kind == "data-all":
        if kind in ("data", "data-all"):
            raise DataError(f"{item['frame_id']}.jpg", "unreadable image")
        if kind == "config":
            raise ConfigError("params.yaml: blur.sigma must be >= 0")
        if kind == "enospc":
            raise OSError(errno.ENOSPC, "No space left on device", "out.jpg")
        if kind == "erofs-as-data":  # a reader that wraps every failure in DataError
            try:
                raise OSError(errno.EROFS, "Read-only file system", "out.jpg")
            except OSError as exc:
                raise DataError("out.jpg", f"could not write ({exc})") from exc
        if kind == "bug":
            return 1 / 0
    return item["frame_id"]


@pytest.mark.parametrize("kind,error", [("config", "ConfigError"), ("enospc", "No space left"),
                                        ("erofs-as-data", "Read-only"), ("bug", "ZeroDivisionError")])
@pytest.mark.parametrize("workers", [1, 2])
def test_skip_never_swallows_config_disk_or_programming_errors(kind, error, workers):
    items = [{"frame_id": f} for f in ("a", "x", "b")]
    with pytest.raises((FrameError, DataError), match=error):
        list(map_frames(flaky, items, workers=workers, on_error="skip", max_skip_fraction=1.0, kind=kind))


def test_skip_is_bounded_by_max_skip_fraction_and_never_yields_an_empty_dataset():
    items = [{"frame_id": f"f{i:02d}"} for i in range(19)] + [{"frame_id": "x"}]
    out = list(map_frames(flaky, items, on_error="skip", kind="data"))  # 1 of 20 = 5%: allowed
    assert [o.frame_id for o in out if isinstance(o, Skipped)] == ["x"] and len(out) == 20
    with pytest.raises(DataError, match=r"1 of 3 frames skipped .*max_skip_fraction=0.05.*x\.jpg: unreadable"):
        list(map_frames(flaky, items[-3:], on_error="skip", kind="data"))
    with pytest.raises(DataError, match=r"3 of 3 frames skipped .*every frame"):
        list(map_frames(flaky, items[:3], on_error="skip", max_skip_fraction=1.0, kind="data-all"))
    log = SkipLog(name="depth_blur")
    log.take(Skipped("x", "x.jpg: unreadable image"))
    with pytest.raises(DataError, match=r"^depth_blur: no frame left to write \(1 in, 1 skipped\)"):
        log.report(frames_in=1, frames_out=0)
    with pytest.raises(ConfigError, match="data.max_skip_fraction"):
        list(map_frames(flaky, items, on_error="skip", max_skip_fraction=1.5, kind="data"))


def test_ingest_honours_skip_and_lists_the_frames_it_left_out(world, tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(world, repo / "data" / "real")
    vk = repo / "data" / "real" / "vkitti2"
    (vk / "vkitti_2.0.3_depth/Scene01/clone/frames/depth/Camera_0/depth_00001.png").unlink()
    kt = repo / "data" / "real" / "kitti" / "training"
    (kt / "image_2" / "000002.png").write_bytes(b"\x89PNG not an image")
    label = kt / "label_2" / "000003.txt"
    label.write_text("Car 0.00 0 0.0 10.0 10.0 99999.0 50.0 1.5 1.6 3.9 1.0 1.7 20.0 0.0\n")
    data = {"source": "vkitti2", "vkitti2_root": "data/real/vkitti2", "kitti_root": "data/real/kitti",
            "scenes": ["Scene01"], "variations": ["clone"]}

    write_params(repo, data={**data, "on_error": "fail"})
    proc = stage(repo, "stages.ingest", "--out", "data/ingest")
    assert proc.returncode == 1 and "depth_00001.png: missing depth file for frame 1" in proc.stderr
    write_params(repo, data={**data, "on_error": "skip"})  # 1 of 4 synthetic frames: more than 5%
    proc = stage(repo, "stages.ingest", "--out", "data/ingest")
    assert proc.returncode == 1 and "1 of 4 frames skipped" in proc.stderr and "max_skip_fraction" in proc.stderr
    assert not (repo / "data" / "ingest").exists() and not temporaries(repo)

    write_params(repo, data={**data, "on_error": "skip", "max_skip_fraction": 0.5})
    stage(repo, "stages.ingest", "--out", "data/ingest", check=True)
    out = repo / "data" / "ingest"
    frames = pd.read_csv(out / "frames.csv", dtype={"frame_id": str})
    assert frames["frame"].tolist() == [0, 2, 3]
    assert not pd.read_csv(out / "boxes.csv")["frame"].isin([1]).any()
    real = pd.read_csv(out / "real_frames.csv", dtype={"image_id": str})
    assert real["image_id"].tolist() == ["000000", "000001"]
    assert set(pd.read_csv(out / "real_boxes.csv", dtype={"image_id": str})["image_id"]) <= {"000000", "000001"}
    summary = json.loads((out / "summary.json").read_text())
    syn, rl = summary["skipped"]["vkitti2"], summary["skipped"]["kitti"]
    assert (syn["frames_in"], syn["frames_out"], syn["frames_skipped"]) == (4, 3, 1)
    assert syn["skipped"][0]["frame_id"] == "Scene01_clone_c0_00001" and "depth_00001.png" in syn["skipped"][0]["message"]
    assert (rl["frames_in"], rl["frames_out"]) == (4, 2)
    assert {s["frame_id"] for s in rl["skipped"]} == {"000002", "000003"}
    assert summary["frames"] == 3 and summary["real_frames"] == 2


# ----------------------------------------------------------------------------- item 7: run-cache restore
def _wait_for(pred, proc: subprocess.Popen, what: str, timeout_s: float = 300) -> None:
    t0 = time.monotonic()
    while not pred():
        if proc.poll() is not None:
            raise AssertionError(f"process ended (rc {proc.returncode}) before {what}")
        if time.monotonic() - t0 > timeout_s:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _frame_in_temp(repo: Path, name: str) -> bool:
    return any(repo.glob(f"data/aug/.{name}.tmp-*/images/*.jpg")) or \
        any(repo.glob(f".sim2real/tmp/{name}-*.tmp-*/images/*.jpg"))


@pytest.mark.slow
def test_run_cache_restore_after_sigkill_leaves_nothing_in_the_outputs_parent(tmp_path):
    repo = make_repo(tmp_path / "repo", {"demo": {**WORLD, "frames_per_scene": 8}, "compute": {"processes": 1, "torch_threads": 1},
                                         "data": {"scenes": ["Scene01"], "variations": ["clone"]}})
    dvc(repo, "repro", "depth_blur")  # params A: a run-cache entry
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params_a = (repo / "params.yaml").read_text()
    params["blur"]["near_m"] = float(params["blur"]["near_m"]) + 1.0
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    proc = subprocess.Popen([str(BIN / "dvc"), "repro", "depth_blur"], cwd=repo, env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    _wait_for(lambda: _frame_in_temp(repo, "depth_blur"), proc, "a frame in the temporary output")
    os.killpg(proc.pid, signal.SIGKILL)  # dvc and the stage, mid-run
    proc.wait(timeout=30)
    (repo / "params.yaml").write_text(params_a)  # back to A: DVC restores the stage from its run-cache
    out = dvc(repo, "repro", "depth_blur").stdout
    assert "Stage 'depth_blur' is cached" in out and "Running stage 'depth_blur'" not in out
    assert sorted(p.name for p in (repo / "data" / "aug").iterdir()) == ["depth_blur"]  # nothing else in data/aug
    assert dvc(repo, "status", "depth_blur").stdout.strip().endswith("up to date.")
    assert not list(repo.glob("data/**/.*.tmp-*")) and not list(repo.glob("reports/**/.*.tmp-*"))


# ----------------------------------------------------------------------------- item 8: renames last
def test_style_transfer_with_bad_vgg_weights_changes_none_of_the_old_outputs(tmp_path, monkeypatch):
    from tests.style.test_style_stage import make_world
    from stages import style_transfer as st
    ded, ing = make_world(tmp_path / "data")  # inside the data roots the stage builds from params
    (tmp_path / ".dvc").mkdir()  # a DVC repository: temporaries go to .sim2real/tmp
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["style"].update(batch_size=1, vgg_weights="random")
    params["style"]["nst"].update(scales=[0.5], steps=[2])
    params["compute"].update(processes=1, scheduler="local", resume=False)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    args = ["--dedupe", str(ded), "--real", str(ing), "--out", "out", "--report", "rep.json", "--grid", "grid.jpg",
            "--timing", "timing.csv", "--live", "live"]
    st.main(args)
    outputs = ("out", "rep.json", "grid.jpg", "timing.csv", "live")

    def snapshot() -> dict:
        return {o: tree_digest(o) if Path(o).is_dir() else Path(o).read_bytes() for o in outputs}

    before = snapshot()
    Path("bad_vgg16.pth").write_bytes(b"not a checkpoint")
    params["style"].update(vgg_weights="bad_vgg16.pth", jpeg_quality=70)  # other frame bytes, then a bad grid
    Path("params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    with pytest.raises(ConfigError, match="bad_vgg16.pth"):
        st.main(args)
    assert snapshot() == before
    assert not temporaries(tmp_path)


# ----------------------------------------------------------------------------- items 9 + 10: processes
def _stage_temp(repo: Path, name: str) -> list[Path]:
    return list(repo.glob(f"data/.{name}.tmp-*")) + list(repo.glob(f".sim2real/tmp/{name}-*.tmp-*"))


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return state != "Z"


def _demo_repo(tmp_path: Path, frames_per_scene: int) -> Path:
    repo = tmp_path / "repo"
    write_params(repo, demo={**WORLD, "frames_per_scene": frames_per_scene}, compute={"processes": 1, "torch_threads": 1})
    (repo / ".dvc").mkdir()
    return repo


def test_second_run_of_a_stage_fails_at_once_naming_the_first(tmp_path):
    repo = _demo_repo(tmp_path, frames_per_scene=2)  # the first run is held with SIGSTOP: size does not matter
    env = {**_env(), "PYTHONPATH": str(ROOT)}
    first = subprocess.Popen([sys.executable, "-m", "stages.demo", "--out", "data/demo"], cwd=repo, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: _stage_temp(repo, "demo"), first, "the first run's temporary output")
        os.kill(first.pid, signal.SIGSTOP)  # hold the first run mid-write
        second = stage(repo, "stages.demo", "--out", "data/demo", timeout=120)
        assert second.returncode == 1
        assert second.stderr.strip().splitlines()[-1].startswith(f"error: data/demo: already running (pid {first.pid})")
        assert "Traceback" not in second.stderr
    finally:
        os.kill(first.pid, signal.SIGCONT)
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err  # the first run was not disturbed
    assert (repo / "data" / "demo" / "vkitti2" / "vkitti_2.0.3_rgb" / "Scene01" / "clone" / "frames" / "rgb" /
            "Camera_0" / "rgb_00001.jpg").is_file()
    assert not temporaries(repo)


PARENT = """
import subprocess, sys
child = subprocess.Popen([sys.executable, "-m", "stages.demo", "--out", "data/demo"])
print(child.pid, flush=True)
child.wait()
"""


def test_stage_exits_and_leaves_nothing_when_its_parent_is_killed(tmp_path):
    repo = _demo_repo(tmp_path, frames_per_scene=6)  # long enough to be killed mid-write
    env = {**_env(), "PYTHONPATH": str(ROOT)}
    parent = subprocess.Popen([sys.executable, "-c", PARENT], cwd=repo, env=env, stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    _wait_for(lambda: _stage_temp(repo, "demo"), parent, "the stage's temporary output")
    parent.kill()  # SIGKILL: the stage is orphaned
    parent.wait(timeout=30)
    t0 = time.monotonic()
    while _alive(child) and time.monotonic() - t0 < 60:
        time.sleep(0.05)
    assert not _alive(child), "the stage kept running after its parent died"
    assert not (repo / "data" / "demo").exists() and not temporaries(repo)


# ----------------------------------------------------------------------------- item 11: data roots
@pytest.mark.parametrize("layout", ["relative-outside", "symlinked-folders"])
def test_data_roots_ingest_accepts_are_the_ones_dedupe_accepts(world, tmp_path, layout):
    repo = tmp_path / "repo"
    if layout == "relative-outside":  # the datasets next to the repository, named relative to it
        shutil.copytree(world, tmp_path / "datasets")
        data = {"vkitti2_root": "../datasets/vkitti2", "kitti_root": "../datasets/kitti"}
    else:  # inside the repository, with one modality folder of each on "another disk" (symlinked)
        shutil.copytree(world, repo / "data" / "ext")
        disk = tmp_path / "disk2"
        disk.mkdir()
        for folder in ("data/ext/vkitti2/vkitti_2.0.3_rgb", "data/ext/kitti/training/image_2"):
            moved = disk / Path(folder).name
            shutil.move(repo / folder, moved)
            (repo / folder).symlink_to(moved, target_is_directory=True)
        data = {"vkitti2_root": "data/ext/vkitti2", "kitti_root": "data/ext/kitti"}
    write_params(repo, data={"source": "vkitti2", "scenes": ["Scene01"], "variations": ["clone"], **data})
    stage(repo, "stages.ingest", "--out", "data/ingest", check=True)
    stage(repo, "stages.dedupe", "--ingest", "data/ingest", "--out", "data/dedupe", "--report", "reports/dedupe.json",
          check=True)
    frames = pd.read_csv(repo / "data" / "dedupe" / "frames.csv")
    assert len(frames) == 4 and all(Path(repo, p).is_file() for p in frames["image"])

    # the rule is not weakened: a single file that leads out of its dataset folder is refused at ingest
    if layout == "symlinked-folders":
        depth = repo / "data/ext/vkitti2/vkitti_2.0.3_depth/Scene01/clone/frames/depth/Camera_0/depth_00002.png"
        elsewhere = tmp_path / "elsewhere.png"
        shutil.move(depth, elsewhere)
        depth.symlink_to(elsewhere)
        proc = stage(repo, "stages.ingest", "--out", "data/ingest")
        assert proc.returncode == 1 and "depth_00002.png" in proc.stderr and "outside the data roots" in proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize("shell", [s for s in ("/bin/sh", "/bin/bash") if Path(s).exists()])
def test_killing_dvc_repro_stops_its_stage(tmp_path, shell):
    """The real case: DVC runs the stage through ``$SHELL -c``; SIGKILL of dvc alone stops the stage.

    bash execs the single command (the stage is dvc's child); dash keeps a shell in between (the
    stage is dvc's grandchild, out of reach of the parent-death signal), so both are run."""
    repo = make_repo(tmp_path / "repo", {"demo": {**WORLD, "frames_per_scene": 6}, "compute": {"processes": 1, "torch_threads": 1}})
    proc = subprocess.Popen([str(BIN / "dvc"), "repro", "demo"], cwd=repo, env={**_env(), "SHELL": shell},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    _wait_for(lambda: _stage_temp(repo, "demo"), proc, "the stage's temporary output")
    children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
    assert children, "dvc has no child process"
    proc.kill()  # dvc only, not its process group
    proc.wait(timeout=30)
    t0 = time.monotonic()
    while any(_alive(int(c)) for c in children) and time.monotonic() - t0 < 60:
        time.sleep(0.05)
    assert not any(_alive(int(c)) for c in children), "the stage outlived dvc"
    assert not (repo / "data" / "demo").exists() and not temporaries(repo)
