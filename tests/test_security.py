"""Security and hygiene: no network on the default path, paths stay inside the data roots,
checkpoints load with weights_only=True, W&B keys never reach files."""
from __future__ import annotations

import ast
import os
import secrets
import socket
from pathlib import Path

import pandas as pd
import pytest
import yaml

from sim2real.errors import ConfigError, DataError
from sim2real.manifest import check_manifest_paths, resolve_manifest_path
from sim2real.safety import NetworkBlocked, block_network, data_roots, resolve_within
from tests.conftest import ROOT, deep_merge

os.environ.setdefault("SIM2REAL_NO_PROGRESS", "1")

TINY = {"demo": {"scenes": 1, "frames_per_scene": 2, "variations": ["clone"], "real_frames": 2},
        "data": {"scenes": ["Scene01"], "variations": ["clone"]}, "compute": {"processes": 1, "torch_threads": 1}}


# ----------------------------------------------------------------------------- network guard
def test_guard_refuses_outside_and_allows_loopback():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    try:
        with block_network() as attempts:
            with pytest.raises(NetworkBlocked):
                socket.create_connection(("10.255.255.1", 80), timeout=0.5)
            with pytest.raises(NetworkBlocked):
                socket.getaddrinfo("example.org", 443)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, pytest.raises(NetworkBlocked):
                udp.sendto(b"x", ("8.8.8.8", 53))
            with socket.create_connection(server.getsockname(), timeout=2):
                pass  # loopback is fine (Dask LocalCluster, W&B's local service)
        assert len(attempts) == 3
    finally:
        server.close()
    assert socket.socket.connect is not None and "block" not in socket.socket.connect.__qualname__


@pytest.fixture
def tiny_repo(tmp_path, monkeypatch):
    """params.yaml (with the test overrides and a tiny demo) in a temp folder as the cwd."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params = deep_merge(deep_merge(params, yaml.safe_load((ROOT / "tests" / "pipeline_overrides.yaml").read_text()) or {}), TINY)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_demo_pipeline_runs_with_the_network_blocked(tiny_repo):
    """demo -> ingest -> dedupe and the per-frame library functions, in-process, offline."""
    from stages import dedupe, demo, ingest

    with block_network() as attempts:
        demo.main(["--out", "data/demo"])
        ingest.main(["--out", "data/ingest"])
        dedupe.main(["--ingest", "data/ingest", "--out", "data/dedupe", "--report", "reports/dedupe.json"])
        frames = pd.read_csv("data/dedupe/frames.csv", keep_default_na=False)
        check_manifest_paths(frames, "frames.csv", data_roots(yaml.safe_load(Path("params.yaml").read_text())["data"]),
                             columns=["rgb", "depth", "class_seg", "instance_seg", "image", "label"])
        per_frame = _per_frame_library_calls(frames.iloc[0].to_dict())
    assert attempts == []
    assert len(frames) == 2 and (tiny_repo / "reports" / "dedupe.json").is_file()
    assert per_frame == 2  # reading the frame + depth_blur.render_frame


def _per_frame_library_calls(row: dict) -> int:
    """Run the per-frame library functions that exist on one demo frame; returns how many ran."""
    import numpy as np

    from sim2real.formats.images import read_rgb
    from sim2real.formats.vkitti2 import read_depth_m
    ran = 0
    image, depth = read_rgb(row["image"]), read_depth_m(row["depth"])
    try:
        from sim2real.physics.dataset import render_frame
        from sim2real.params import load_params
        from sim2real.params import plain
        p = load_params("blur", "haze", "camera", "seed")
        item = {**row, "boxes": []}
        out, _, _ = render_frame(item, {"blur": plain(p.blur), "haze": plain(p.haze), "camera": plain(p.camera)},
                                 int(p.seed))
        assert out.shape == image.shape
        ran += 1
    except (ImportError, ConfigError):
        pass
    assert np.isfinite(depth[np.isfinite(depth)]).all()
    return ran + 1  # reading the frame is itself one of the per-frame library calls


# ----------------------------------------------------------------------------- path containment
def test_paths_cannot_escape_the_data_roots(tmp_path):
    root = tmp_path / "data"
    (root / "a").mkdir(parents=True)
    (root / "a" / "x.png").write_bytes(b"1")
    outside = tmp_path / "secret.txt"
    outside.write_text("s")
    assert resolve_within("data/a/x.png", [root], base=tmp_path) == (root / "a" / "x.png").resolve()
    with pytest.raises(DataError, match=r"m.csv:7: path '.*\.\./secret.txt' resolves to"):
        resolve_within("data/a/../../secret.txt", [root], source="m.csv", line=7, base=tmp_path)
    with pytest.raises(DataError, match="outside the data roots"):
        resolve_within(str(outside), [root], base=tmp_path)
    (root / "a" / "link.png").symlink_to(outside)
    with pytest.raises(DataError, match="through a symlink"):
        resolve_within("data/a/link.png", [root], base=tmp_path)
    (root / "a" / "dirlink").symlink_to(tmp_path, target_is_directory=True)
    with pytest.raises(DataError):
        resolve_within("data/a/dirlink/secret.txt", [root], base=tmp_path)
    # a data root that is itself a symlink (dataset on another disk) is fine
    (tmp_path / "mnt").mkdir()
    (tmp_path / "mnt" / "f.png").write_bytes(b"2")
    (tmp_path / "ext").symlink_to(tmp_path / "mnt", target_is_directory=True)
    assert resolve_within(tmp_path / "ext" / "f.png", [root, tmp_path / "ext"]).name == "f.png"
    df = pd.DataFrame({"image": ["data/a/x.png", "data/a/link.png"], "label": ["", ""]})
    with pytest.raises(DataError, match=r"frames.csv:3:"):
        check_manifest_paths(df, "frames.csv", [root], columns=["image", "label"], base=tmp_path)



def test_manifest_paths_resolve_absolute_then_cwd_then_manifest_folder(tmp_path, monkeypatch):
    """The one rule every manifest reader and check_manifest_paths use."""
    (tmp_path / "repo" / "data" / "v" / "images").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "repo")
    folder = Path("data/v")
    (folder / "images" / "a.png").write_bytes(b"1")
    Path("images").mkdir()
    (Path("images") / "b.png").write_bytes(b"2")  # b.png under the cwd *and* under the folder
    (folder / "images" / "b.png").write_bytes(b"3")
    absolute = str(tmp_path / "elsewhere.png")
    assert resolve_manifest_path(absolute, folder) == Path(absolute)  # absolute: as is, even absent
    assert resolve_manifest_path("images/b.png", folder) == Path("images/b.png")  # the cwd first
    assert resolve_manifest_path("images/a.png", folder) == folder / "images" / "a.png"  # then the folder
    assert resolve_manifest_path("images/none.png", folder) == Path("images/none.png")  # else as given
    # check_manifest_paths reads the same files: the cwd's b.png lies outside the roots, a.png inside
    roots = [tmp_path / "repo" / "data"]
    check_manifest_paths(pd.DataFrame({"image": ["images/a.png"]}), folder / "frames.csv", roots)
    with pytest.raises(DataError, match=r"frames.csv:2: path 'images/b.png' resolves to .*outside"):
        check_manifest_paths(pd.DataFrame({"image": ["images/b.png"]}), folder / "frames.csv", roots)


def test_param_paths_stay_in_the_repository(tmp_path):
    assert (tmp_path / "data" / "demo").resolve() in data_roots({"demo_root": "data/demo"}, base=tmp_path)
    with pytest.raises(ConfigError, match="data.demo_root"):
        data_roots({"demo_root": "../elsewhere"}, base=tmp_path)
    with pytest.raises(ConfigError, match="absolute"):
        data_roots({"demo_root": "/etc"}, base=tmp_path)
    assert Path("/srv/vkitti2") in data_roots({"vkitti2_root": "/srv/vkitti2"}, base=tmp_path)
    with pytest.raises(ConfigError, match="data.demo_root"):
        data_roots({"demo_root": "../../x"}, base=tmp_path)


def test_ingest_rejects_a_symlink_out_of_the_dataset(tiny_repo):
    from stages import demo, ingest

    demo.main(["--out", "data/demo"])
    rgb = next((tiny_repo / "data" / "demo" / "vkitti2").glob("*rgb/Scene01/clone/frames/rgb/Camera_0/rgb_00001.jpg"))
    secret = tiny_repo / "secret.jpg"
    secret.write_bytes(rgb.read_bytes())
    rgb.unlink()
    rgb.symlink_to(secret)
    with pytest.raises(DataError, match="rgb_00001.jpg.*outside the data roots"):
        ingest.main(["--out", "data/ingest"])
    assert not (tiny_repo / "data" / "ingest").exists()


# ----------------------------------------------------------------------------- checkpoints, keys
def _torch_load_calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
            if name in ("load", "load_state_dict_from_url", "load_url"):
                base = f.value.id if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) else ""
                if name == "load" and base != "torch":
                    continue
                yield node


def test_every_torch_load_uses_weights_only():
    files = [p for d in ("sim2real", "stages", "benchmarks") for p in (ROOT / d).rglob("*.py")]
    bad, seen = [], 0
    for path in files:
        tree = ast.parse(path.read_text(), filename=str(path))
        for call in _torch_load_calls(tree):
            seen += 1
            kw = {k.arg: k.value for k in call.keywords}
            ok = isinstance(kw.get("weights_only"), ast.Constant) and kw["weights_only"].value is True
            if not ok:
                bad.append(f"{path.relative_to(ROOT)}:{call.lineno}")
    assert not bad, f"torch.load without weights_only=True: {bad}"
    assert seen >= 1  # the scan really finds the project's checkpoint loads
    probe = ast.parse("torch.load(p)\ntorch.load(p, weights_only=False)\ntorch.hub.load_state_dict_from_url(u)")
    assert len(list(_torch_load_calls(probe))) == 3  # and would catch the unsafe forms


def test_wandb_key_from_environment_never_reaches_files(tiny_repo, monkeypatch):
    from sim2real.params import load_params
    from sim2real.tracking import Tracker

    tracking = load_params("tracking").tracking  # as a stage loads and passes it
    key = "local-" + secrets.token_hex(20)
    monkeypatch.setenv("WANDB_API_KEY", key)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("SIM2REAL_WANDB_ROOT", raising=False)
    with block_network() as attempts:
        with Tracker("scale_check", "baseline", config={"x": 1}, dvclive_dir=tiny_repo / "reports" / "live",
                     tracking=tracking) as t:
            t.log({"loss": 0.5}, step=0)
            t.summary({"ap": 0.25})
    assert attempts == []
    written = [p for d in ("reports", "wandb") for p in (tiny_repo / d).rglob("*") if p.is_file()]
    assert any(p.suffix == ".wandb" for p in written) and any(p.name == "metrics.json" for p in written)
    leaks = [str(p) for p in written if key.encode() in p.read_bytes()]
    assert not leaks
    source = [p for d in ("sim2real", "stages") for p in (ROOT / d).rglob("*.py")]
    assert not [p for p in source if "WANDB_API_KEY=" in p.read_text()]  # never set or stored by our code
