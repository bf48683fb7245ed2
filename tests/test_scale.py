"""The Dask backend of map_frames: byte-identical outputs, input order, bounded in-flight work,
errors naming the frame, and the params -> options helper."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from sim2real.demo.world import SceneJob, render_vkitti_frame
from sim2real.errors import ConfigError, DataError, FrameError
from sim2real.io import tree_digest
from sim2real.parallel import Skipped, compute_options, is_distributed, map_frames
from sim2real.params import Section
from sim2real.safety import block_network

os.environ.setdefault("SIM2REAL_NO_PROGRESS", "1")


def square(item, offset=0):
    if item["frame_id"] == "bad":
        raise ZeroDivisionError("boom")
    if item["frame_id"] == "corrupt":
        raise DataError("corrupt.jpg", "unreadable image")
    return {"frame_id": item["frame_id"], "v": item["v"] ** 2 + offset, "pid": os.getpid()}


def write_frame(item, *, out_dir, scale):
    """A per-frame writer: one file per frame under out_dir/images (made by the caller)."""
    (Path(out_dir) / "images" / f"{item['frame_id']}.txt").write_text(str(item["v"] * scale))
    return item["frame_id"]


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory):
    """demo -> ingest -> dedupe (4 frames) in a temp folder; returns it."""
    import yaml

    from tests.conftest import ROOT, deep_merge

    root = tmp_path_factory.mktemp("world")
    params = deep_merge(yaml.safe_load((ROOT / "params.yaml").read_text()),
                        {"demo": {"seed": 7, "scenes": 1, "frames_per_scene": 4, "variations": ["clone"],
                                  "real_frames": 1},
                         "data": {"scenes": ["Scene01"], "variations": ["clone"], "real_val_fraction": 0.0},
                         "compute": {"processes": 1, "torch_threads": 1}})
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    cwd = os.getcwd()
    os.chdir(root)
    try:
        from stages import dedupe, demo, ingest
        demo.main(["--out", "data/demo"])
        ingest.main(["--out", "data/ingest"])
        dedupe.main(["--ingest", "data/ingest", "--out", "data/dedupe", "--report", "reports/dedupe.json"])
    finally:
        os.chdir(cwd)
    return root


def test_demo_world_rendered_on_dask_matches_the_local_stage(cluster, tiny_world, tmp_path):
    """The demo stage's per-frame renderer on 2 Dask workers gives the stage's vKITTI2 bytes."""
    _, client = cluster
    root = tmp_path / "vkitti2"
    root.mkdir()
    import yaml
    from sim2real.demo.world import Traffic
    demo = yaml.safe_load((tiny_world / "params.yaml").read_text())["demo"]  # the tiny world's demo params
    job = SceneJob(str(root), "Scene01", 0, 4, ("clone",), 7, Traffic.from_params(demo["traffic"]),
                   float(demo["ego_speed_m"]))
    rows = list(map_frames(render_vkitti_frame, [(job, 1), (job, 3)], scheduler=client, batch_size=1))
    assert [{r["frame"] for r in frame_rows} for frame_rows in rows] == [{1}, {3}]
    local = {k: v for k, v in tree_digest(tiny_world / "data" / "demo" / "vkitti2").items()
             if "textgt" not in k and k.endswith(("_00001.jpg", "_00001.png", "_00003.jpg", "_00003.png"))}
    assert len(local) == 2 * 2 * 4  # 2 frames x 2 cameras x 4 modalities
    assert tree_digest(root) == local


def test_depth_blur_stage_frames_on_dask_match_local(cluster, tiny_world, tmp_path, monkeypatch):
    """The depth_blur stage's per-frame function: same image/label bytes and rows on Dask."""
    from sim2real.params import load_params
    from sim2real.params import plain
    from sim2real.physics.dataset import process_frame, read_frames
    from sim2real.safety import data_roots

    monkeypatch.chdir(tiny_world)  # the manifest's paths are relative to the repository, as in the stage
    p = load_params("blur", "haze", "camera", "seed", "data")
    params = {"blur": plain(p.blur), "haze": plain(p.haze), "camera": plain(p.camera)}
    items = read_frames("data/dedupe", roots=data_roots(p.data))
    for it in items:  # workers run elsewhere: give them absolute paths (on a cluster: a shared FS)
        for k in ("image", "depth", "instance_seg", "label", "rgb", "class_seg"):
            it[k] = str(tiny_world / it[k])
    rows = {}
    for name, sched in (("local", "local"), ("dask", cluster[1])):
        out = tmp_path / name
        (out / "images").mkdir(parents=True)
        (out / "labels").mkdir()
        rows[name] = list(map_frames(process_frame, items, scheduler=sched, workers=2, batch_size=1, params=params,
                                     seed=int(p.seed), out_dir=str(out), final_dir="data/aug/depth_blur"))
    assert len(rows["local"]) == 4
    local = tree_digest(tmp_path / "local")
    assert len(local) == 8 and local == tree_digest(tmp_path / "dask")
    assert rows["local"] == rows["dask"]


def test_dask_order_errors_and_skip(cluster):
    lc, client = cluster
    items = [{"frame_id": str(i), "v": i} for i in range(23)]
    with block_network() as refused:  # the Dask path talks to loopback only
        res = list(map_frames(square, items, scheduler=client, batch_size=3, max_in_flight=2, offset=1))
    assert refused == []
    assert [r["v"] for r in res] == [i * i + 1 for i in range(23)]
    assert len({r["pid"] for r in res}) == 2  # both workers did work
    bad = items[:5] + [{"frame_id": "bad", "v": 0}] + items[5:9]
    with pytest.raises(FrameError, match=r"frame bad: ZeroDivisionError: boom"):
        list(map_frames(square, bad, scheduler=lc.scheduler_address, batch_size=2))  # own Client from address
    with pytest.raises(FrameError, match=r"frame bad: ZeroDivisionError: boom"):  # skip never hides a bug
        list(map_frames(square, bad, scheduler=client, batch_size=4, on_error="skip", max_skip_fraction=0.5))
    corrupt = items[:5] + [{"frame_id": "corrupt", "v": 0}] + items[5:9]
    out = list(map_frames(square, corrupt, scheduler=client, batch_size=4, on_error="skip", max_skip_fraction=0.1))
    assert len(out) == len(corrupt)
    assert out[5] == Skipped("corrupt", "corrupt.jpg: unreadable image")


def test_dask_keeps_in_flight_bounded(cluster):
    """Items are pulled lazily: never more than batch_size x (max_in_flight + 1) ahead of the consumer."""
    _, client = cluster
    pulled = []

    def gen():
        for i in range(60):
            pulled.append(i)
            yield {"frame_id": str(i), "v": i}

    batch, inflight = 3, 2
    ahead = []
    for k, _ in enumerate(map_frames(square, gen(), scheduler=client, batch_size=batch, max_in_flight=inflight)):
        ahead.append(len(pulled) - (k + 1))
    assert len(pulled) == 60
    assert max(ahead) <= batch * (inflight + 1)
    assert max(ahead) >= batch  # work really was submitted ahead (not one at a time)


def test_dask_workers_write_into_the_output(cluster, tmp_path):
    _, client = cluster
    out = tmp_path / "out"
    (out / "images").mkdir(parents=True)
    items = [{"frame_id": f"f{i}", "v": i} for i in range(10)]
    ids = list(map_frames(write_frame, items, scheduler=client, batch_size=3, out_dir=str(out), scale=2))
    assert ids == [f"f{i}" for i in range(10)]
    assert [(out / "images" / f"f{i}.txt").read_text() for i in range(10)] == [str(2 * i) for i in range(10)]


def test_compute_options_and_scheduler_validation(tmp_path, monkeypatch):
    monkeypatch.setenv("SIM2REAL_SCRATCH", str(tmp_path))
    c = Section({"processes": 3, "scheduler": "tcp://127.0.0.1:8786", "batch_size": 4, "max_in_flight": None,
                 "resume": True}, "compute")
    opts = compute_options(c, Section({"on_error": "skip"}, "data"), stage="depth_blur")
    assert opts["workers"] == 3 and opts["scheduler"] == "tcp://127.0.0.1:8786" and opts["on_error"] == "skip"
    assert opts["resume_dir"] == tmp_path / ".sim2real" / "scratch" / "depth_blur"
    assert (tmp_path / ".sim2real" / ".gitignore").read_text().strip().endswith("*")
    assert compute_options({"processes": 2})["scheduler"] == "local"
    with pytest.raises(ConfigError, match="compute.scheduler"):
        compute_options({"processes": 1, "scheduler": "http://example.org"})
    with pytest.raises(ConfigError, match="data.on_error"):
        compute_options({"processes": 1}, {"on_error": "ignore"})
    with pytest.raises(ConfigError, match="stage name"):
        compute_options({"processes": 1, "resume": True})
    assert not is_distributed("local") and is_distributed("tcp://127.0.0.1:1")


def test_depth_blur_stage_resumes_after_sigkill(tiny_world, tmp_path):
    """compute.resume: a SIGKILLed depth_blur leaves no output; the rerun links the finished frames
    (same inode: not recomputed), computes the rest and gives the uninterrupted run's bytes."""
    import signal
    import subprocess
    import sys
    import time

    import yaml

    from tests.conftest import ROOT, _env

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    params = yaml.safe_load((tiny_world / "params.yaml").read_text())
    params["compute"].update(resume=True, processes=1)
    (run_dir / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (run_dir / "data").symlink_to(tiny_world / "data", target_is_directory=True)
    env = {**_env(), "PYTHONPATH": str(ROOT), "SIM2REAL_SCRATCH": str(tmp_path)}
    cmd = [sys.executable, "-m", "stages.depth_blur", "--dedupe", "data/dedupe", "--out", "out", "--report", "r.json"]
    scratch = tmp_path / ".sim2real" / "scratch" / "depth_blur"

    subprocess.run(cmd, cwd=run_dir, env=env, check=True, capture_output=True)  # uninterrupted reference
    (run_dir / "out").rename(run_dir / "ref")
    assert not list(scratch.glob("*/*")), "scratch is cleared after a complete run"

    proc = subprocess.Popen(cmd, cwd=run_dir, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.monotonic()
    while not list(scratch.glob("*/*/result.pkl")):
        assert proc.poll() is None, "the stage finished before it could be killed"
        assert time.monotonic() - t0 < 120
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (run_dir / "out").exists()
    done = {p.parent.name: (p.parent / "files" / "images" / f"{p.parent.name}.jpg").stat().st_ino
            for p in scratch.glob("*/*/result.pkl")}
    assert 1 <= len(done) < 4

    subprocess.run(cmd, cwd=run_dir, env=env, check=True, capture_output=True)
    for fid, inode in done.items():
        assert (run_dir / "out" / "images" / f"{fid}.jpg").stat().st_ino == inode  # reused, not recomputed
    assert tree_digest(run_dir / "out") == tree_digest(run_dir / "ref")
    assert not list(scratch.glob("*/*"))
