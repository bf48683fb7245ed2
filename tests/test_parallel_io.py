"""The per-frame map (order, errors with frame ids) and atomic writes."""
from __future__ import annotations

import pytest

from sim2real.errors import DataError, FrameError
from sim2real.io import atomic_dir, atomic_file, write_json
from sim2real.parallel import map_frames


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
