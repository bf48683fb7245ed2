"""Official CycleGAN generator checkpoints (issue 13, part 3) and one-line refusals of unsafe or
corrupt weights files (issue 15, item 6).

The official files are rebuilt here, with random weights, from the state_dict key layout of
junyanz/pytorch-CycleGAN-and-pix2pix ``models/networks.py`` as documented in
:func:`official_resnet_shapes`; the reference forward pass (:func:`official_forward`) is written
from that code's algorithm with ``torch.nn.functional`` and reads the official key names
directly, so it shares nothing with ``sim2real.cyclegan``.
"""
from __future__ import annotations

import json
import os
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from sim2real.cli import entrypoint
from sim2real.cyclegan.checkpoint import GeneratorLayout, load_generator, save_generator
from sim2real.cyclegan.networks import ResnetGenerator, init_weights
from sim2real.errors import ConfigError, DataError
from tests.conftest import dvc, make_repo

PARAM = "cyclegan.generator"


# ----------------------------------------------------------------------------- the official layout
def official_resnet_shapes(ngf: int, n_blocks: int, *, norm: str = "instance", dropout: bool = False,
                           running_stats: bool = False, input_nc: int = 3) -> dict[str, tuple[int, ...]]:
    """Key -> shape of an official ``ResnetGenerator`` state_dict (``define_G(..., netG='resnet_<n>blocks')``).

    ``model`` is one Sequential (index: module)::

        0 ReflectionPad2d(3)  1 Conv2d(in, ngf, 7)  2 Norm  3 ReLU
        4 Conv2d(ngf, 2ngf, 3, stride 2, pad 1)  5 Norm  6 ReLU
        7 Conv2d(2ngf, 4ngf, 3, stride 2, pad 1)  8 Norm  9 ReLU
        10 .. 9+n  ResnetBlock(4ngf)
        10+n ConvTranspose2d(4ngf, 2ngf, 3, stride 2, pad 1, output_padding 1)  11+n Norm  12+n ReLU
        13+n ConvTranspose2d(2ngf, ngf, ...)  14+n Norm  15+n ReLU
        16+n ReflectionPad2d(3)  17+n Conv2d(ngf, 3, 7)  18+n Tanh

    ``ResnetBlock.conv_block`` is a Sequential: 0 ReflectionPad2d(1), 1 Conv2d(3×3), 2 Norm, 3 ReLU,
    [Dropout(0.5) with --use_dropout], ReflectionPad2d(1), Conv2d, Norm — so the second conv is at 5,
    or at 6 with dropout. Every conv but the last has a bias only with instance norm (``use_bias``);
    the last always has one. ConvTranspose2d weights are (in, out, k, k). InstanceNorm2d(affine=False)
    has no tensors, except in the 2018 code (``track_running_stats=True``): running_mean,
    running_var, num_batches_tracked. BatchNorm2d(affine=True): weight, bias and those three.
    """
    keys: dict[str, tuple[int, ...]] = {}
    bias = norm == "instance"

    def conv(prefix: str, shape: tuple[int, ...], with_bias: bool = bias) -> None:
        keys[f"{prefix}.weight"] = shape
        if with_bias:
            keys[f"{prefix}.bias"] = (shape[0],)

    def norm_layer(prefix: str, ch: int) -> None:
        if norm == "batch":
            keys.update({f"{prefix}.weight": (ch,), f"{prefix}.bias": (ch,)})
        if norm == "batch" or (norm == "instance" and running_stats):
            keys.update({f"{prefix}.running_mean": (ch,), f"{prefix}.running_var": (ch,),
                         f"{prefix}.num_batches_tracked": ()})

    conv("model.1", (ngf, input_nc, 7, 7)); norm_layer("model.2", ngf)
    conv("model.4", (2 * ngf, ngf, 3, 3)); norm_layer("model.5", 2 * ngf)
    conv("model.7", (4 * ngf, 2 * ngf, 3, 3)); norm_layer("model.8", 4 * ngf)
    c = 4 * ngf
    for i in range(n_blocks):
        b = f"model.{10 + i}.conv_block"
        second = 6 if dropout else 5
        conv(f"{b}.1", (c, c, 3, 3)); norm_layer(f"{b}.2", c)
        conv(f"{b}.{second}", (c, c, 3, 3)); norm_layer(f"{b}.{second + 1}", c)
    n = n_blocks
    for j, (cin, cout) in ((10 + n, (4 * ngf, 2 * ngf)), (13 + n, (2 * ngf, ngf))):
        keys[f"model.{j}.weight"] = (cin, cout, 3, 3)  # ConvTranspose2d: (in, out, k, k)
        if bias:
            keys[f"model.{j}.bias"] = (cout,)
        norm_layer(f"model.{j + 1}", cout)
    conv(f"model.{17 + n}", (3, ngf, 7, 7), with_bias=True)
    return keys


def official_state_dict(ngf: int, n_blocks: int, *, seed: int = 0, prefix: str = "", **layout) -> dict:
    """Random tensors in the official layout (``prefix="module."``: saved from a DataParallel)."""
    gen = torch.Generator().manual_seed(seed)
    sd = {}
    for key, shape in official_resnet_shapes(ngf, n_blocks, **layout).items():
        if key.endswith("num_batches_tracked"):
            sd[prefix + key] = torch.tensor(1234)
        elif key.endswith("running_var"):
            sd[prefix + key] = torch.rand(shape, generator=gen) + 0.5
        else:
            sd[prefix + key] = torch.randn(shape, generator=gen) * (0.2 if len(shape) == 4 else 0.1)
    return sd


def official_forward(sd: dict, x: torch.Tensor, n_blocks: int) -> torch.Tensor:
    """The official ResnetGenerator's forward pass (instance norm, per image; no dropout)."""
    def conv(h, p, stride=1, padding=0):
        return F.conv2d(h, sd[f"{p}.weight"], sd.get(f"{p}.bias"), stride=stride, padding=padding)

    def norm(h):  # InstanceNorm2d(affine=False): every image and channel by its own mean and variance
        return F.instance_norm(h, eps=1e-5)

    def pad(h, k):
        return F.pad(h, (k, k, k, k), mode="reflect")

    h = F.relu(norm(conv(pad(x, 3), "model.1")))
    h = F.relu(norm(conv(h, "model.4", 2, 1)))
    h = F.relu(norm(conv(h, "model.7", 2, 1)))
    for i in range(n_blocks):
        b = f"model.{10 + i}.conv_block"
        r = F.relu(norm(conv(pad(h, 1), f"{b}.1")))
        h = h + norm(conv(pad(r, 1), f"{b}.5"))
    for j in (10 + n_blocks, 13 + n_blocks):
        h = F.relu(norm(F.conv_transpose2d(h, sd[f"model.{j}.weight"], sd[f"model.{j}.bias"], stride=2,
                                           padding=1, output_padding=1)))
    return torch.tanh(conv(pad(h, 3), f"model.{17 + n_blocks}"))


def to_official(net: ResnetGenerator, running_stats: bool = False, prefix: str = "") -> dict:
    """This project's generator weights under the official key names (the same tensors)."""
    sd = {}
    for key, value in net.state_dict().items():
        sd[prefix + key.replace(".body.", ".conv_block.")] = value.clone()
    if running_stats:
        for key, shape in official_resnet_shapes(net.ngf, net.n_blocks, running_stats=True).items():
            if "running" in key or "num_batches" in key:
                sd[prefix + key] = torch.tensor(7) if key.endswith("tracked") else torch.ones(shape)
    return sd


def _index_path(key: str) -> tuple[int, ...]:
    return tuple(int(p) for p in key.split(".") if p.isdigit())


# ----------------------------------------------------------------------------- loading official files
@pytest.mark.parametrize("ngf,n_blocks,era,prefix,legacy", [
    (4, 2, "2019+", "", False),            # current code: InstanceNorm track_running_stats=False
    (4, 6, "2018", "module.", True),       # resnet_6blocks, 2018 running stats, DataParallel, legacy format
    (2, 9, "2018", "", False),             # resnet_9blocks
])
def test_official_resnet_generator_loads_and_matches_the_reference(tmp_path, ngf, n_blocks, era, prefix, legacy):
    sd = official_state_dict(ngf, n_blocks, prefix=prefix, running_stats=era == "2018", seed=n_blocks)
    path = tmp_path / "latest_net_G_A.pth"
    torch.save(sd, path, _use_new_zipfile_serialization=not legacy)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        g = load_generator(path, param=PARAM)
    dropped = 3 * (3 + 2 * n_blocks + 2) if era == "2018" else 0   # 3 tensors per norm layer
    assert g.layout == GeneratorLayout("official", ngf, n_blocks, dropped)
    running = [w for w in caught if "running-statistics" in str(w.message)]
    assert len(running) == (1 if dropped else 0)
    if dropped:
        assert "train-mode" in str(running[0].message) and str(path) in str(running[0].message)

    x = torch.rand(2, 3, 36, 44, generator=torch.Generator().manual_seed(1)) * 2 - 1
    plain = {k[len(prefix):]: v for k, v in sd.items()}
    with torch.no_grad():
        ours, ref = g(x), official_forward(plain, x, n_blocks)
    assert (ours - ref).abs().max().item() <= 1e-6

    # the project's own generator holding the same tensors, assigned in forward order (no key names)
    own = ResnetGenerator(ngf, n_blocks).eval()
    convs = [m for m in own.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    weights = sorted((k for k, v in plain.items() if k.endswith(".weight") and v.ndim == 4), key=_index_path)
    assert len(convs) == len(weights) == 6 + 2 * n_blocks
    with torch.no_grad():
        for m, key in zip(convs, weights):
            m.weight.copy_(plain[key])
            m.bias.copy_(plain[key[:-len("weight")] + "bias"])
        assert torch.equal(own(x), ours)


def test_project_generator_files_still_load_unchanged(tmp_path):
    g = init_weights(ResnetGenerator(4, 2))
    save_generator(tmp_path / "generator_a2b.pt", g)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = load_generator(tmp_path / "generator_a2b.pt", param=PARAM)
    assert loaded.layout == GeneratorLayout("sim2real", 4, 2, 0)
    x = torch.rand(1, 3, 20, 24) * 2 - 1
    with torch.no_grad():
        assert torch.equal(loaded(x), g.eval()(x))


def _unet_keys(ngf: int = 4) -> dict:
    """The first keys of an official UnetGenerator: nested ``model.model.<i>.model...`` Sequentials."""
    return {"model.model.0.weight": torch.zeros(ngf, 3, 4, 4),                 # outermost down conv (no norm)
            "model.model.1.model.1.weight": torch.zeros(2 * ngf, ngf, 4, 4),   # next level: LeakyReLU, conv, norm
            "model.model.3.weight": torch.zeros(2 * ngf, 3, 4, 4),             # outermost up conv (ConvTranspose2d)
            "model.model.3.bias": torch.zeros(3)}


@pytest.mark.parametrize("name,make,expected", [
    ("batch", lambda: official_state_dict(4, 2, norm="batch"),
     r"--norm batch \(BatchNorm weights at model\.2\.weight\)"),
    ("dropout", lambda: official_state_dict(4, 2, dropout=True), r"--use_dropout .*model\.10\.conv_block\.6\.weight"),
    ("unet", _unet_keys, r"U-Net generator \(official --netG unet_128/unet_256"),
    ("norm_none", lambda: official_state_dict(4, 2, norm="none"), r"no biases .*--norm none"),
    ("gray", lambda: official_state_dict(4, 2, input_nc=1), r"takes 1 channels \(official --input_nc 1\)"),
    ("last_pt", lambda: {"format": 1, "models": {}, "iteration": 3}, r"training checkpoint \(last\.pt\)"),
    ("other", lambda: {"encoder.weight": torch.zeros(2, 2)}, r"no 7×7 input convolution at model\.1"),
    ("missing_layer", lambda: {k: v for k, v in official_state_dict(4, 2).items() if not k.startswith("model.12.")},
     r"missing model\.12\.weight"),
])
def test_unsupported_official_generators_are_refused_in_one_line(tmp_path, name, make, expected):
    path = tmp_path / f"{name}.pth"
    torch.save(make(), path)
    with pytest.raises(DataError) as err:
        load_generator(path, param=PARAM)
    msg = str(err.value)
    assert msg.startswith(f"{path}: ") and f"params.yaml {PARAM}" in msg and "\n" not in msg
    assert re.search(expected, msg), msg


# ----------------------------------------------------------------------------- unsafe / corrupt files (#15.6)
class _Payload:
    """Unpickling this creates ``marker`` (a stand-in for any code an attacker would run)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _unsafe_file(tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "payload_ran"
    path = tmp_path / "evil.pth"
    torch.save({"model.1.weight": torch.zeros(1), "x": _Payload(marker)}, path)
    torch.load(path, weights_only=False)               # the payload is live: unsafe loading runs it
    assert marker.exists()
    marker.unlink()
    return path, marker


def test_unsafe_weights_files_are_refused_in_one_line_naming_file_and_param(tmp_path):
    from sim2real.metrics.features import load_feature_extractor
    from sim2real.style.weights import load_vgg16_features

    path, marker = _unsafe_file(tmp_path)
    loaders = [(lambda: load_generator(path, param=PARAM), DataError, PARAM),
               (lambda: load_feature_extractor(str(path), 0, (64, 64)), DataError, "gap.kid.inception_weights"),
               (lambda: load_vgg16_features(str(path), allow_download=False), ConfigError, "style.vgg_weights")]
    for load, kind, param in loaders:
        with pytest.raises(kind) as err:
            load()
        msg = str(err.value)
        assert msg.startswith(f"{path}: refused to load") and param in msg, msg
        assert re.search(r"\((io|builtins)\.open\)", msg) and "arbitrary code" in msg and "state_dict" in msg
        assert "\n" not in msg and not msg.rstrip().endswith(("…", "...", "`"))
        assert not marker.exists()

    truncated = tmp_path / "truncated.pth"
    torch.save(official_state_dict(2, 1), tmp_path / "ok.pth")
    truncated.write_bytes((tmp_path / "ok.pth").read_bytes()[:500])
    (tmp_path / "text.pth").write_text("not a checkpoint\n")
    for bad, reason in ((truncated, "failed finding central directory"), (tmp_path / "text.pth", "UnpicklingError")):
        for load, param in ((lambda: load_generator(bad, param=PARAM), PARAM),
                            (lambda: load_feature_extractor(str(bad), 0, (64, 64)), "gap.kid.inception_weights")):
            with pytest.raises(DataError) as err:
                load()
            msg = str(err.value)
            assert msg.startswith(f"{bad}: cannot read") and "corrupt" in msg and param in msg and reason in msg
            assert "\n" not in msg and "In PyTorch 2.6" not in msg


# ----------------------------------------------------------------------------- the translate stage
def test_translate_stage_runs_an_official_file_like_the_project_one(tmp_path, monkeypatch, capsys):
    """Same tensors, official layout (2018 running stats, DataParallel prefix): byte-identical frames."""
    from stages import cyclegan_translate
    from tests.cyclegan.test_cyclegan import _stage_world

    monkeypatch.chdir(tmp_path)
    _stage_world(tmp_path, np.random.default_rng(0))
    g = init_weights(ResnetGenerator(4, 1), gain=0.2)
    save_generator(tmp_path / "model" / "generator_a2b.pt", g)
    (tmp_path / "pretrained").mkdir()
    torch.save(to_official(g, running_stats=True, prefix="module."), tmp_path / "pretrained" / "latest_net_G_A.pth")
    outputs = {}
    for name, model in (("own", "model"), ("official", "pretrained/latest_net_G_A.pth")):
        args = ["--synthetic", "data/dedupe", "--real", "data/ingest", "--model", model, "--out", f"aug/{name}",
                "--report", f"reports/{name}.json"]
        with warnings.catch_warnings(record=True):
            warnings.simplefilter("always")
            cyclegan_translate.main(args)
        outputs[name] = {p.name: p.read_bytes() for p in sorted((tmp_path / f"aug/{name}/images").iterdir())}
    assert len(outputs["own"]) == 2 and outputs["own"] == outputs["official"]
    own, official = (json.loads(Path(f"reports/{n}.json").read_text())["generator"] for n in ("own", "official"))
    assert own["layout"] == "sim2real" and own["file"] == os.path.join("model", "generator_a2b.pt")
    assert official["layout"] == "official" and official["dropped_running_stats"] == 3 * 7

    path, marker = _unsafe_file(tmp_path)
    args = ["--synthetic", "data/dedupe", "--real", "data/ingest", "--model", str(path), "--out", "aug/evil",
            "--report", "reports/evil.json"]
    with pytest.raises(SystemExit) as exit_:
        entrypoint(lambda: cyclegan_translate.main(args))
    err = [line for line in capsys.readouterr().err.strip().splitlines()
           if line.strip() and not line.startswith("cyclegan_translate:")]  # the progress bar (SIM2REAL_NO_PROGRESS unset)
    assert exit_.value.code == 1 and len(err) == 1 and not marker.exists()
    assert err[0].startswith(f"error: {path}: refused to load generator weights (params.yaml {PARAM})")
    assert not (tmp_path / "aug/evil").exists()


TINY_WORLD = {"demo": {"scenes": 1, "frames_per_scene": 2, "variations": ["clone"], "real_frames": 2},
              "data": {"scenes": ["Scene01"], "variations": ["clone"]}, "compute": {"processes": 1, "torch_threads": 1}}


@pytest.mark.slow
def test_dvc_tracks_the_generator_file_the_param_names(tmp_path):
    """Default: cyclegan_train's export, so cyclegan_train is upstream. A pretrained file (here
    outside the repository, official layout): cyclegan_translate depends on that file instead,
    runs without cyclegan_train, and replacing the file's contents makes the stage stale."""
    repo = make_repo(tmp_path / "repo", TINY_WORLD)
    assert "cyclegan_train" in dvc(repo, "dag", "--dot", "cyclegan_translate").stdout
    weights = tmp_path / "pretrained" / "latest_net_G_A.pth"
    weights.parent.mkdir()
    torch.save(official_state_dict(4, 1, running_stats=True, seed=1), weights)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["cyclegan"]["generator"] = str(weights)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert "cyclegan_train" not in dvc(repo, "dag", "--dot", "cyclegan_translate").stdout
    out = dvc(repo, "repro", "cyclegan_translate").stdout
    assert "Running stage 'cyclegan_translate'" in out and "cyclegan_train" not in out
    assert not (repo / "data" / "cyclegan").exists()
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]["cyclegan_translate"]
    assert str(weights) in [d["path"] for d in lock["deps"]] and f"--model {weights}" in lock["cmd"]
    report = json.loads((repo / "reports" / "cyclegan_translate.json").read_text())
    assert report["generator"]["layout"] == "official" and report["frames"] == 2
    assert "changed" not in dvc(repo, "status", "cyclegan_translate").stdout
    torch.save(official_state_dict(4, 1, running_stats=True, seed=2), weights)   # same path, new weights
    status = dvc(repo, "status", "cyclegan_translate").stdout
    assert "modified" in status and str(weights) in status
