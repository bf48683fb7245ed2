"""The per-frame map (order, errors with frame ids) and atomic writes."""
from __future__ import annotations

import os

import pytest

from sim2real.errors import ConfigError, DataError, FrameError
from sim2real.io import atomic_dir, atomic_file, link_or_copy, write_json
from sim2real.parallel import check_device, map_frames, worker_cache, worker_cache_info


def square(item, offset=0):
    if item["frame_id"] == "bad":
        raise ZeroDivisionError("boom")
    if item["frame_id"] == "data":
        raise DataError("x.png", "broken")
    return item["v"] ** 2 + offset


@pytest.mark.parametrize("workers", [1, 2])
def test_map_frames_keeps_order(workers):
    items = [{"frame_id": str(i), "v": i} for i in range(20)]
    assert list(map_frames(square, items, workers=workers, offset=1, progress=False)) == [i * i + 1 for i in range(20)]


@pytest.mark.parametrize("workers", [1, 2])
def test_map_frames_names_the_frame(workers):
    items = [{"frame_id": "a", "v": 1}, {"frame_id": "bad", "v": 2}]
    with pytest.raises(FrameError, match=r"frame bad: ZeroDivisionError: boom"):
        list(map_frames(square, items, workers=workers, progress=False))
    with pytest.raises(DataError, match=r"x.png: broken"):
        list(map_frames(square, [{"frame_id": "data", "v": 0}], workers=workers, progress=False))


def count(batch):
    return len(batch["frames"])


def test_progress_counts_frames_of_batched_items(capsys):
    batches = [{"frame_id": f"b{i}", "frames": list(range(n))} for i, n in enumerate([4, 4, 1])]
    assert list(map_frames(count, batches, desc="batched", progress=True, frames_per_item=count)) == [4, 4, 1]
    bar = capsys.readouterr().err.replace("\r", "\n").splitlines()
    assert any("batched" in line and "9/9" in line and "frame" in line for line in bar), bar


def test_check_device_is_one_line_naming_the_key(monkeypatch):
    import torch

    assert check_device("cpu", "compute.device") == "cpu"
    for bad in ("tpu", "CUDA", "0"):
        with pytest.raises(ConfigError) as exc:
            check_device(bad, "compute.device")
        assert "compute.device" in str(exc.value) and "\n" not in str(exc.value)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for dev in ("cuda", "cuda:0", "0,1"):
        with pytest.raises(ConfigError, match=r"train\.device is .* but torch\.cuda\.is_available\(\) is False") as exc:
            check_device(dev, "train.device", gpu_indices=True)
        assert "\n" not in str(exc.value)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert check_device("0", "train.device", gpu_indices=True) == "0"
    with pytest.raises(ConfigError, match=r"evaluate\.device is '0,1' but torch sees 1 CUDA device"):
        check_device("0,1", "evaluate.device", gpu_indices=True)


def test_worker_cache_builds_once_per_key_and_keeps_the_latest_only_when_asked():
    builds = []

    def build(k):
        builds.append(k)
        return object()

    a = worker_cache("test.cache", 1, lambda: build(1))
    assert worker_cache("test.cache", 1, lambda: build(1)) is a and builds == [1]
    worker_cache("test.cache", 2, lambda: build(2), latest_only=True)
    info = worker_cache_info("test.cache")
    assert info["cached"] == [("test.cache", 2)] and info["loads"] == {("test.cache", 1): 1, ("test.cache", 2): 1}
    assert info["pid"] == os.getpid()


def test_link_or_copy_replaces_only_when_asked(tmp_path):
    src = tmp_path / "a.txt"
    src.write_text("new")
    dst = tmp_path / "out" / "a.txt"
    assert link_or_copy(src, dst) == "link" and dst.read_text() == "new"
    with pytest.raises(FileExistsError):
        link_or_copy(src, dst)
    dst.unlink()
    dst.write_text("old")
    assert link_or_copy(src, dst, replace=True) == "link" and os.path.samefile(src, dst)


def test_atomic_dir_leaves_nothing_on_failure(tmp_path):
    out = tmp_path / "out"
    with atomic_dir(out) as tmp:
        (tmp / "a.txt").write_text("1")
    assert (out / "a.txt").read_text() == "1"
    with pytest.raises(RuntimeError):
        with atomic_dir(out) as tmp:
            (tmp / "b.txt").write_text("half")
            raise RuntimeError("killed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # old output intact, no temp left
    assert not (out / "b.txt").exists()


def test_stale_temporaries_are_removed(tmp_path):
    (tmp_path / ".out.tmp-999999").mkdir()
    with atomic_dir(tmp_path / "out"):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_atomic_file_and_json(tmp_path):
    with pytest.raises(ValueError):
        write_json(tmp_path / "m.json", {"x": float("nan")})
    assert not (tmp_path / "m.json").exists()
    write_json(tmp_path / "m.json", {"b": 1, "a": 2.5})
    assert (tmp_path / "m.json").read_text() == '{\n  "a": 2.5,\n  "b": 1\n}\n'
    with atomic_file(tmp_path / "t.txt") as fh:
        fh.write("ok")
    assert (tmp_path / "t.txt").read_text() == "ok"
