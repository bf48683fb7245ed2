"""Faults: a SIGKILLed stage leaves nothing DVC accepts and reruns to the same bytes; resumable
per-frame maps do not recompute finished frames after a crash; corrupt frames fail with their
name or are skipped and counted."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ROOT, _env, dvc, make_repo
from sim2real.errors import ConfigError, DataError
from sim2real.formats.images import read_rgb, write_image
from sim2real.io import atomic_dir, tree_digest
from sim2real.parallel import SkipLog, Skipped, map_frames

os.environ.setdefault("SIM2REAL_NO_PROGRESS", "1")

# ----------------------------------------------------------------------------- SIGKILL + DVC
DEMO = {"seed": 7, "scenes": 1, "frames_per_scene": 3, "variations": ["clone"], "real_frames": 1,
        "real_seg_every": 4}


def _kill_when(proc: subprocess.Popen, ready, timeout_s: float = 240) -> None:
    t0 = time.monotonic()
    while not ready():
        if proc.poll() is not None:
            raise AssertionError(f"process ended (rc {proc.returncode}) before it could be killed")
        if time.monotonic() - t0 > timeout_s:
            raise AssertionError("timed out waiting for frames")
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


@pytest.mark.slow
def test_sigkill_mid_stage_leaves_no_output_and_rerun_is_identical(tmp_path):
    repo = make_repo(tmp_path / "repo", {"demo": DEMO, "compute": {"processes": 1, "torch_threads": 1}})
    proc = subprocess.Popen([str(Path(sys.executable).parent / "dvc"), "repro", "demo"], cwd=repo, env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    def one_frame_done():  # frame 0 written for both cameras, inside the stage's temporary output
        return any(repo.glob(".sim2real/tmp/demo-*.tmp-*/vkitti2/*rgb/Scene01/clone/frames/rgb/Camera_1/rgb_00000.jpg"))

    _kill_when(proc, one_frame_done)
    assert proc.returncode == -signal.SIGKILL
    assert not (repo / "data" / "demo").exists()  # no half output under the real name
    status = dvc(repo, "status", "demo").stdout
    assert "demo" in status and "up to date" not in status  # DVC does not accept it

    dvc(repo, "repro", "demo")
    assert dvc(repo, "status", "demo").stdout.strip().endswith("up to date.")
    assert not list(repo.glob(".sim2real/tmp/demo-*.tmp-*"))  # the killed run's temporary is gone
    assert not [p for p in (repo / "data").rglob("*") if ".tmp-" in p.name]  # and none was ever in data/
    reference = tmp_path / "reference"  # an uninterrupted run of the same stage with the same params
    subprocess.run([sys.executable, "-m", "stages.demo", "--out", str(reference)], cwd=repo, env=_env(), check=True,
                   capture_output=True)
    assert tree_digest(repo / "data" / "demo") == tree_digest(reference)


# ----------------------------------------------------------------------------- resume
SCRIPT = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from sim2real.io import atomic_dir
    from sim2real.parallel import map_frames
    sys.path.insert(0, {tests!r})
    from test_faults import slow_writer

    out, scratch, log, kill_after = Path(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
    items = [{{"frame_id": f"f{{i:02d}}", "v": i}} for i in range(12)]
    with atomic_dir(out) as tmp:
        (tmp / "images").mkdir()
        for k, rec in enumerate(map_frames(slow_writer, items, workers=2, resume_dir=scratch or None,
                                           out_dir=str(tmp), log=log, scale=3), 1):
            if k == kill_after:
                os.killpg(os.getpgid(0), signal.SIGKILL)
        (tmp / "index.txt").write_text(repr(rec))
""")


def slow_writer(item, *, out_dir, log, scale):
    """A per-frame stage body: writes its image file into out_dir, logs that it computed."""
    with open(log, "a") as fh:
        fh.write(item["frame_id"] + "\n")
    time.sleep(0.02)
    (Path(out_dir) / "images" / f"{item['frame_id']}.txt").write_text(str(item["v"] * scale))
    return {"frame_id": item["frame_id"], "image": f"images/{item['frame_id']}.txt"}


def _run_script(tmp_path, out, scratch, log, kill_after):
    script = tmp_path / "run_stage.py"
    script.write_text(SCRIPT.format(tests=str(ROOT / "tests")))
    env = {**_env(), "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, str(script), str(out), str(scratch), str(log), str(kill_after)],
                            cwd=tmp_path, env=env, start_new_session=True, stderr=subprocess.PIPE, text=True)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err


def test_resume_after_sigkill_skips_finished_frames(tmp_path):
    ref_out, out = tmp_path / "ref", tmp_path / "out"
    rc, err = _run_script(tmp_path, ref_out, "", tmp_path / "ref.log", 0)
    assert rc == 0, err
    scratch, log = tmp_path / "scratch", tmp_path / "calls.log"
    rc, _ = _run_script(tmp_path, out, scratch, log, 5)
    assert rc == -signal.SIGKILL
    assert not out.exists()
    done = {p.parent.name for p in scratch.glob("*/*/result.pkl")}
    first = log.read_text().split()
    assert len(done) >= 5 and done <= set(first)
    rc, err = _run_script(tmp_path, out, scratch, log, 0)
    assert rc == 0, err
    second = log.read_text().split()[len(first):]
    assert not done & set(second)  # finished frames were not recomputed
    assert set(first) | set(second) == {f"f{i:02d}" for i in range(12)}
    assert tree_digest(out) == tree_digest(ref_out)  # same bytes as the uninterrupted run
    assert not list(scratch.iterdir())  # scratch of these params removed after success


def test_resume_recomputes_when_params_or_inputs_change(tmp_path):
    scratch, log = tmp_path / "scratch", tmp_path / "calls.log"
    src = tmp_path / "in.txt"
    src.write_text("a")
    items = [{"frame_id": "f0", "v": 1, "src": str(src)}, {"frame_id": "f1", "v": 2, "src": str(src)}]

    def run(scale, n=None):
        with atomic_dir(tmp_path / "out") as tmp:
            (tmp / "images").mkdir()
            gen = map_frames(slow_writer, items, resume_dir=scratch, out_dir=str(tmp), log=str(log), scale=scale)
            recs = [rec for _, rec in zip(range(n or len(items)), gen)]
            gen.close()
        return recs

    def calls():
        return log.read_text().split() if log.exists() else []

    run(3, n=1)  # "crash" after one frame: f0 finished
    assert calls() == ["f0"]
    run(3, n=1)
    assert calls() == ["f0"]  # reused
    run(4, n=1)  # other params: other key, old entry dropped
    assert calls() == ["f0", "f0"] and len(list(scratch.iterdir())) == 1
    os.utime(src, ns=(1, 1))  # an input file changed
    run(4)
    assert calls() == ["f0", "f0", "f0", "f1"]
    assert (tmp_path / "out" / "images" / "f0.txt").read_text() == "4"


def test_resume_needs_plain_params_or_an_explicit_hash(tmp_path):
    class Model:  # e.g. a network: not hashable as plain data
        pass

    (tmp_path / "out").mkdir()
    items = [{"frame_id": "f0", "v": 1}]
    with pytest.raises(ConfigError, match="params_hash"):
        list(map_frames(write_with_model, items, resume_dir=tmp_path / "s", out_dir=str(tmp_path / "out"), model=Model()))
    with pytest.raises(ConfigError, match="resume_write_arg"):
        list(map_frames(write_with_model, items, resume_dir=tmp_path / "s", model=None))
    assert list(map_frames(write_with_model, items, resume_dir=tmp_path / "s", params_hash="model-v1",
                           out_dir=str(tmp_path / "out"), model=Model())) == ["f0"]
    assert (tmp_path / "out" / "f0.txt").read_text() == "1"


def write_with_model(item, *, out_dir, model):
    (Path(out_dir) / f"{item['frame_id']}.txt").write_text(str(item["v"]))
    return item["frame_id"]


# ----------------------------------------------------------------------------- corrupt frames
def read_one(item):
    img = read_rgb(item["image"])
    return {"frame_id": item["frame_id"], "mean": float(img.mean())}


@pytest.mark.parametrize("workers", [1, 2])
def test_corrupt_frame_fails_with_its_name_or_is_skipped_and_counted(tmp_path, workers):
    items = []
    for i in range(5):
        p = tmp_path / f"frame{i}.jpg"
        write_image(p, np.full((8, 8, 3), 40 * i, np.uint8))
        items.append({"frame_id": f"frame{i}", "image": str(p)})
    (tmp_path / "frame3.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    with pytest.raises(DataError, match=r"frame3\.jpg: unreadable image"):
        list(map_frames(read_one, items, workers=workers))
    with pytest.raises(DataError, match=r"1 of 5 frames skipped .*max_skip_fraction=0.05.*frame3\.jpg"):
        list(map_frames(read_one, items, workers=workers, on_error="skip"))  # 20% > the default 5%
    skips, rows = SkipLog(), []
    for res in map_frames(read_one, items, workers=workers, on_error="skip", max_skip_fraction=0.25):
        if not skips.take(res):
            rows.append(res)
    report = skips.report(frames_in=len(items), frames_out=len(rows))
    assert [r["frame_id"] for r in rows] == ["frame0", "frame1", "frame2", "frame4"]
    assert report["frames_in"] == 5 and report["frames_out"] == 4 and report["frames_skipped"] == 1
    assert report["skipped"][0]["frame_id"] == "frame3" and "frame3.jpg" in report["skipped"][0]["message"]
    with pytest.raises(RuntimeError, match="frame count mismatch"):
        skips.report(frames_in=6, frames_out=4)
    assert isinstance(Skipped("a", "b"), Skipped)
