"""The Dask backend of map_frames: byte-identical outputs, input order, bounded in-flight work,
errors naming the frame, and the params -> options helper."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from sim2real.demo.world import SceneJob, render_vkitti_frame
from sim2real.errors import ConfigError, FrameError
from sim2real.io import tree_digest
from sim2real.parallel import Skipped, compute_options, is_distributed, map_frames
from sim2real.params import Section
from sim2real.safety import block_network

os.environ.setdefault("SIM2REAL_NO_PROGRESS", "1")


@pytest.fixture(scope="module")
def cluster():
    """A real 2-process Dask cluster on loopback (no dashboard)."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1, host="127.0.0.1",
                                  dashboard_address=None, silence_logs=50) as lc:
        with distributed.Client(lc, set_as_default=False) as client:
            yield lc, client


def plain(obj):
    """Nested rows with numpy arrays -> comparable plain lists."""
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    return obj.tolist() if hasattr(obj, "tolist") else obj


def square(item, offset=0):
    if item["frame_id"] == "bad":
        raise ZeroDivisionError("boom")
    return {"frame_id": item["frame_id"], "v": item["v"] ** 2 + offset, "pid": os.getpid()}


def write_frame(item, *, out_dir, scale):
    """A per-frame writer: one file per frame under out_dir/images (made by the caller)."""
    (Path(out_dir) / "images" / f"{item['frame_id']}.txt").write_text(str(item["v"] * scale))
    return item["frame_id"]


def test_dask_matches_local_bytes(cluster, tmp_path):
    """The demo world's per-frame renderer gives the same files and rows on 2 Dask workers."""
    _, client = cluster
    rows = {}
    for name, sched in (("local", "local"), ("dask", client)):
        root = tmp_path / name / "vkitti2"
        root.mkdir(parents=True)
        job = SceneJob(str(root), "Scene01", 0, 2, ("clone",), 7)
        items = [(job, f) for f in range(2)]
        rows[name] = list(map_frames(render_vkitti_frame, items, scheduler=sched, batch_size=1, max_in_flight=2))
    local, dask = tree_digest(tmp_path / "local"), tree_digest(tmp_path / "dask")
    assert len(local) == 2 * 2 * 4  # 2 frames x 2 cameras x (rgb, depth, class, instance)
    assert local == dask
    assert plain(rows["local"]) == plain(rows["dask"]) and len(rows["local"]) == 2


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
    out = list(map_frames(square, bad, scheduler=client, batch_size=4, on_error="skip"))
    assert len(out) == len(bad)
    assert out[5] == Skipped("bad", "frame bad: ZeroDivisionError: boom")


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
    c = Section({"workers": 3, "scheduler": "tcp://127.0.0.1:8786", "batch_size": 4, "max_in_flight": None,
                 "resume": True}, "compute")
    opts = compute_options(c, Section({"on_error": "skip"}, "data"), stage="depth_blur")
    assert opts["workers"] == 3 and opts["scheduler"] == "tcp://127.0.0.1:8786" and opts["on_error"] == "skip"
    assert opts["resume_dir"] == tmp_path / ".sim2real" / "scratch" / "depth_blur"
    assert (tmp_path / ".sim2real" / ".gitignore").read_text().strip().endswith("*")
    assert compute_options({"workers": 2})["scheduler"] == "local"
    with pytest.raises(ConfigError, match="compute.scheduler"):
        compute_options({"workers": 1, "scheduler": "http://example.org"})
    with pytest.raises(ConfigError, match="data.on_error"):
        compute_options({"workers": 1}, {"on_error": "ignore"})
    with pytest.raises(ConfigError, match="stage name"):
        compute_options({"workers": 1, "resume": True})
    assert not is_distributed("local") and is_distributed("tcp://127.0.0.1:1")
