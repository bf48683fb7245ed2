"""Issue 9, rest: cyclegan_translate on a Dask cluster (byte-identical to the local run, generator
loaded once per worker process) and manifest paths checked against the data roots by the stages
that read them (``..``, absolute paths elsewhere, symlinks out of the roots)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from sim2real.cyclegan.checkpoint import save_generator
from sim2real.cyclegan.networks import ResnetGenerator
from sim2real.errors import ConfigError, DataError
from sim2real.formats.images import write_image
from sim2real.io import tree_digest
from sim2real.manifest import check_manifest_paths, read_manifest
from sim2real.params import load_params
from sim2real.safety import data_roots

os.environ.setdefault("SIM2REAL_NO_PROGRESS", "1")

FRAME_COLS = ["frame_id", "scene", "variation", "camera", "frame", "width", "height", "rgb", "depth", "class_seg",
              "instance_seg", "fx", "fy", "cx", "cy"]


@pytest.fixture(autouse=True)
def keep_torch_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def make_world(root: Path, n: int = 4) -> None:
    """``root``/params.yaml + data/{dedupe,ingest,cyclegan/model}: tiny frames, labels, a tiny generator."""
    rng = np.random.default_rng(3)
    rows, real = [], []
    for i in range(n):
        fid = f"Scene01_{'clone' if i < n - 1 else 'fog'}_c0_{i:05d}"
        rgb = f"data/demo/rgb_{i}.png"
        write_image(root / rgb, rng.integers(0, 256, (37, 61, 3), dtype=np.uint8))
        label = f"data/dedupe/labels/{fid}.txt"
        (root / label).parent.mkdir(parents=True, exist_ok=True)
        (root / label).write_text(f"0 0.5 0.5 0.2 0.{i + 1}\n")
        rows.append(dict(frame_id=fid, scene="Scene01", variation="clone" if i < n - 1 else "fog", camera=0, frame=i,
                         width=61, height=37, rgb=rgb, depth=f"data/demo/depth_{i}.png", class_seg="",
                         instance_seg=f"data/demo/inst_{i}.png", fx=725.0, fy=725.0, cx=30.5, cy=18.5,
                         image=rgb, label=label, n_boxes=1))
    for i, split in enumerate(["train", "val"]):
        img = f"data/demo/kitti/{i:06d}.png"
        write_image(root / img, rng.integers(0, 256, (36, 60, 3), dtype=np.uint8))
        real.append(dict(image_id=f"{i:06d}", split=split, image=img, label=f"data/demo/kitti/{i:06d}.txt",
                         calib="", semantic="", width=60, height=36))
        (root / real[-1]["label"]).write_text("Car 0.00 0 -1.57 10 10 30 30 1.5 1.6 3.9 1.0 1.7 20.0 -1.57\n")
    (root / "data/ingest").mkdir(parents=True)
    pd.DataFrame(rows)[FRAME_COLS].to_csv(root / "data/ingest/frames.csv", index=False)
    pd.DataFrame(rows).to_csv(root / "data/dedupe/frames.csv", index=False)
    pd.DataFrame(real).to_csv(root / "data/ingest/real_frames.csv", index=False)
    torch.manual_seed(0)
    save_generator(root / "data/cyclegan/model/generator_a2b.pt", ResnetGenerator(4, 1))
    shipped = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    params = {"seed": 0, "classes": ["Car", "Van", "Truck"],
              "compute": {"processes": 1, "torch_threads": 1, "device": "cpu", "scheduler": "local", "batch_size": 1, "max_in_flight": None,
                          "resume": False},
              "data": {**yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())["data"],
                       "on_error": "fail", "demo_root": "data/demo", "vkitti2_root": None, "kitti_root": None,
                       "camera": 0},
              "dedupe": {"min_visible_px": 25, "min_height_px": 6, "min_width_px": 6, "max_truncation": 0.8,
                         "class_conflict": "more_pixels", "same_box_iou": 0.95, "merge_iou": 0.85},
              "cyclegan": {**shipped["cyclegan"], "variations": ["clone"],
                           "translate": {"mode": "whole", "tile_px": 64, "overlap_px": 8, "amp": False,
                                         "jpeg_quality": 90}}}
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def set_params(root: Path, **compute) -> None:
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["compute"].update(compute)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


TRANSLATE = ["--synthetic", "data/dedupe", "--real", "data/ingest", "--model", "data/cyclegan/model",
             "--report", "reports/translate.json"]


def test_cyclegan_translate_on_dask_is_byte_identical_and_loads_the_generator_once_per_worker(
        cluster, tmp_path, monkeypatch):
    from sim2real.cyclegan.stage import generator_cache_info
    from stages import cyclegan_translate as ct

    lc, client = cluster
    make_world(tmp_path)
    monkeypatch.chdir(tmp_path)  # the workers' cwd stays elsewhere: they must get absolute paths
    assert os.getcwd() not in client.run(os.getcwd).values()
    ct.main([*TRANSLATE, "--out", "data/aug/local"])
    local_report = json.loads(Path("reports/translate.json").read_text())
    set_params(tmp_path, scheduler=lc.scheduler_address)  # compute.scheduler: tcp://127.0.0.1:<port>
    ct.main([*TRANSLATE, "--out", "data/aug/dask"])
    dask_report = json.loads(Path("reports/translate.json").read_text())

    local, remote = tree_digest("data/aug/local"), tree_digest("data/aug/dask")
    assert len(local) == 2 * 3 + 1  # 3 clone frames: image + label each, and frames.csv
    del local["frames.csv"], remote["frames.csv"]
    assert local == remote  # every image and label byte-identical
    # frames.csv differs only in the output folder name of image/label
    a = pd.read_csv("data/aug/local/frames.csv", dtype=str)
    b = pd.read_csv("data/aug/dask/frames.csv", dtype=str)
    assert (a["image"].str.replace("aug/local", "aug/dask") == b["image"]).all()
    assert a.drop(columns=["image", "label"]).equals(b.drop(columns=["image", "label"]))
    for key in ("frames", "edge_corr", "real_train", "real_val", "frames_skipped"):
        assert local_report[key] == dask_report[key]
    infos = list(client.run(generator_cache_info).values())
    assert sum(i["loads"] for i in infos) >= 1 and all(i["loads"] <= 1 for i in infos)  # once per worker process
    assert all(c == [str(tmp_path / "data/cyclegan/model/generator_a2b.pt")] for i in infos if i["loads"]
               for c in [i["cached"]])


# ----------------------------------------------------------------------------- manifest paths
def manipulate(root: Path, manifest: str, column: str, how: str, row: int = 1) -> str:
    """Replace ``column`` of data row ``row`` of ``manifest`` with a path escaping the data roots."""
    outside = root.parent / f"{root.name}-outside"
    outside.mkdir(exist_ok=True)
    (outside / "secret.png").write_bytes(b"not yours")
    if how == "dotdot":
        value = "../../etc/passwd"
    elif how == "absolute":
        value = str(outside / "secret.png")
    else:  # a symlink inside data/ that points outside it
        link = root / "data/demo/evil.png"
        if not link.is_symlink():
            link.symlink_to(outside / "secret.png")
        value = "data/demo/evil.png"
    df = pd.read_csv(root / manifest, dtype=str, keep_default_na=False)
    df.loc[row, column] = value
    df.to_csv(root / manifest, index=False)
    return value


HOW = ["dotdot", "absolute", "symlink"]


@pytest.mark.parametrize("how", HOW)
def test_stages_reject_manifest_paths_escaping_the_data_roots(tmp_path, monkeypatch, how):
    """Four downstream stages stop at the manipulated row, naming the manifest file and its line."""
    from sim2real.physics.dataset import read_frames
    from stages import build_dataset, cyclegan_translate, dedupe

    make_world(tmp_path)
    monkeypatch.chdir(tmp_path)
    line = r":3: path '.*' resolves (through a symlink )?to .*outside the data roots"
    manipulate(tmp_path, "data/ingest/frames.csv", "depth", how)
    with pytest.raises(DataError, match=r"data/ingest/frames\.csv" + line):
        dedupe.main(["--ingest", "data/ingest", "--out", "data/dedupe2", "--report", "reports/d.json"])
    manipulate(tmp_path, "data/dedupe/frames.csv", "image", how)
    with pytest.raises(DataError, match=r"data/dedupe/frames\.csv" + line):
        cyclegan_translate.main([*TRANSLATE, "--out", "data/aug/cyclegan"])
    with pytest.raises(DataError, match=r"data/dedupe/frames\.csv" + line):
        read_frames("data/dedupe", roots=data_roots(load_params("data").data))  # the depth_blur stage's reader
    manipulate(tmp_path, "data/ingest/real_frames.csv", "image", how)
    with pytest.raises(DataError, match=r"data/ingest/real_frames\.csv" + line):
        build_dataset.main(["val", "--real-frames", "data/ingest/real_frames.csv", "--out", "data/real_val"])
    assert not Path("data/dedupe2").exists() and not Path("data/aug/cyclegan").exists()
    assert not Path("data/real_val").exists()


def test_manifest_check_rules(tmp_path, monkeypatch):
    """Line numbers, columns, csv-relative paths, external roots, symlinked roots, manifests anywhere."""
    make_world(tmp_path)
    monkeypatch.chdir(tmp_path)
    roots = data_roots(load_params("data").data)  # what a stage builds from its params
    assert roots == [tmp_path.resolve() / "data", tmp_path.resolve() / "data/demo"]
    df = read_manifest("data/dedupe/frames.csv", roots=roots)  # clean: passes
    boxes = tmp_path / "data/dedupe/boxes_kept.csv"  # a box table: its label column is the class name
    pd.DataFrame({"frame_id": ["a"], "trackID": [0], "label": ["Truck"], "left": [1]}).to_csv(boxes, index=False)
    assert read_manifest(boxes, roots=roots)["label"].tolist() == ["Truck"]
    df.loc[2, "instance_seg"] = "data/../params.yaml"
    with pytest.raises(DataError, match=r"frames\.csv:4: path 'data/\.\./params\.yaml' resolves to"):
        check_manifest_paths(df, "data/dedupe/frames.csv", roots)
    df.loc[2, "instance_seg"] = "labels/x.txt"  # relative to the manifest's folder (build_dataset layout)
    with pytest.raises(DataError, match=r"frames\.csv:4"):  # exists nowhere: read cwd-relative, outside
        check_manifest_paths(df, "data/dedupe/frames.csv", roots)
    (tmp_path / "data/dedupe/labels/x.txt").write_text("")
    check_manifest_paths(df, "data/dedupe/frames.csv", roots)  # exists next to the manifest: inside data/
    df.loc[2, "instance_seg"] = "../../params.yaml"
    with pytest.raises(DataError, match=r"frames\.csv:4"):
        check_manifest_paths(df, "data/dedupe/frames.csv", roots)
    # an external dataset root from params (absolute, here a symlink to another disk) is allowed
    ext = tmp_path.parent / f"{tmp_path.name}-kitti"
    (ext / "training").mkdir(parents=True)
    (ext / "training/a.png").write_bytes(b"x")
    (tmp_path.parent / f"{tmp_path.name}-link").symlink_to(ext)
    params = yaml.safe_load(Path("params.yaml").read_text())
    params["data"]["kitti_root"] = str(tmp_path.parent / f"{tmp_path.name}-link")
    Path("params.yaml").write_text(yaml.safe_dump(params))
    df.loc[2, "instance_seg"] = str(tmp_path.parent / f"{tmp_path.name}-link/training/a.png")
    with pytest.raises(DataError, match=r"frames\.csv:4.*outside the data roots"):
        check_manifest_paths(df, "data/dedupe/frames.csv", roots)  # the roots built before the edit
    check_manifest_paths(df, "data/dedupe/frames.csv", data_roots(load_params("data").data))
    # a manifest outside every data root (a temporary world) is checked all the same
    df.loc[2, "instance_seg"] = ""
    df.loc[0, "image"] = "/etc/passwd"
    df.to_csv(tmp_path / "elsewhere.csv", index=False)
    for given in (roots, ["data"]):
        with pytest.raises(DataError, match=r"elsewhere\.csv:2: path '/etc/passwd'"):
            read_manifest(tmp_path / "elsewhere.csv", roots=given)


def test_manifest_roots_come_from_the_caller_never_from_the_cwd_params(tmp_path, monkeypatch):
    """A params.yaml in the working directory that allows an external dataset root changes nothing:
    the library checks against the roots it is given, and has no default."""
    ext = tmp_path / "kitti"
    (ext / "training").mkdir(parents=True)
    (ext / "training/a.png").write_bytes(b"x")
    repo = tmp_path / "repo"
    (repo / "data").mkdir(parents=True)
    (repo / "params.yaml").write_text(yaml.safe_dump({"data": {"demo_root": "data/demo", "kitti_root": str(ext)}}))
    monkeypatch.chdir(repo)
    manifest = repo / "data/real_frames.csv"
    pd.DataFrame({"image_id": ["000000"], "image": [str(ext / "training/a.png")]}).to_csv(manifest, index=False)
    own = [repo / "data"]
    with pytest.raises(DataError, match=r"real_frames\.csv:2: path '.*a\.png' resolves to .*outside the data roots"):
        read_manifest(manifest, roots=own)
    with pytest.raises(DataError, match=r"real_frames\.csv:2"):
        check_manifest_paths(pd.read_csv(manifest, dtype=str), manifest, own)
    allowed = data_roots({"kitti_root": str(ext)}, base=repo)  # the stage's roots, from its loaded params
    assert read_manifest(manifest, roots=allowed)["image_id"].tolist() == ["000000"]
    (repo / "params.yaml").write_text("data: [not: valid\n")  # never opened by the library
    assert read_manifest(manifest, roots=allowed)["image_id"].tolist() == ["000000"]
    with pytest.raises(TypeError, match="roots"):
        read_manifest(manifest)  # no default roots to fall back on
    with pytest.raises(ConfigError, match="no data roots"):
        read_manifest(manifest, roots=[])
    with pytest.raises(TypeError, match="list of folders"):
        read_manifest(manifest, roots="data")
