"""Defaults live in params.yaml only: every library config built with its own defaults equals the
one built from params.yaml, each schema names the same keys as the config it feeds, and the docs
quote no default that params.yaml does not have (issue 14)."""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import yaml

from sim2real.calibrate.fit import Settings
from sim2real.cyclegan.train import CycleGANTrainConfig
from sim2real.detect.train import DetectTrainConfig
from sim2real.metrics.gap import GapSettings
from sim2real.params import SCHEMAS, Params, build, load_params, plain
from sim2real.style.nst import NSTConfig
from sim2real.style.photoreal import PhotorealConfig
from sim2real.style.wct2 import WCT2Options

ROOT = Path(__file__).resolve().parents[1]
P = load_params(*SCHEMAS, path=ROOT / "params.yaml")
SEED = 0

#: name -> (library config with its own defaults, the same config built from params.yaml)
CONFIGS = {
    "style.nst": (lambda: NSTConfig(), lambda: build(NSTConfig, P.style.nst)),
    "style.photoreal": (lambda: PhotorealConfig(), lambda: build(PhotorealConfig, P.style.photoreal)),
    "style.wct2_*": (lambda: WCT2Options(), lambda: WCT2Options.from_params(plain(P.style))),
    "cyclegan.train": (lambda: CycleGANTrainConfig(seed=SEED, device="cpu"),
                       lambda: build(CycleGANTrainConfig, P.cyclegan.train, seed=SEED, device="cpu")),
    "train": (lambda: DetectTrainConfig(seed=SEED), lambda: build(DetectTrainConfig, P.train, seed=SEED)),
    "calibrate": (lambda: Settings(seed=SEED),
                  lambda: build(Settings, P.calibrate, seed=SEED, denoise_sigma_px=P.gap.denoise_sigma_px,
                                min_box_px=P.gap.min_box_px)),
    "gap": (lambda: GapSettings(seed=SEED), lambda: GapSettings.from_params(plain(P.gap), SEED)),
}


def _differences(own, shipped) -> list[str]:
    return [f"{f.name}: library {getattr(own, f.name)!r} != params.yaml {getattr(shipped, f.name)!r}"
            for f in dataclasses.fields(own) if getattr(own, f.name) != getattr(shipped, f.name)]


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_library_defaults_equal_params_yaml(name):
    own, shipped = (make() for make in CONFIGS[name])
    assert _differences(own, shipped) == [], name


def test_the_check_can_fail():
    own = NSTConfig(lr=0.02)
    assert _differences(own, build(NSTConfig, P.style.nst)) == ["lr: library 0.02 != params.yaml 0.015"]


#: schema -> (config it feeds, config fields that come from elsewhere, schema keys the stage reads itself)
MIRRORS = [
    (type(P.style.nst), NSTConfig, set(), set()),
    (type(P.style.photoreal), PhotorealConfig, set(), set()),
    (type(P.cyclegan.train), CycleGANTrainConfig, {"seed", "device"}, set()),
    (type(P.train), DetectTrainConfig, {"seed"}, set()),
    (type(P.calibrate), Settings, {"seed", "denoise_sigma_px", "min_box_px"}, {"max_sim_frames", "max_real_frames"}),
]


@pytest.mark.parametrize("schema, config, elsewhere, stage_only", MIRRORS, ids=lambda x: getattr(x, "__name__", ""))
def test_schema_and_config_name_the_same_keys(schema, config, elsewhere, stage_only):
    assert issubclass(schema, Params)
    fields = {f.name for f in dataclasses.fields(config)}
    assert set(schema.model_fields) - stage_only == fields - elsewhere


# ----------------------------------------------------------------------------- docs
#: "`section.key` (default V)" or "`section.key`, default V" in README.md and docs/*.md
DOC_DEFAULT = re.compile(r"`([a-z_]+(?:\.[a-z0-9_]+)+)`,? \(?default:? (\[[^\]]*\]|[^\s),;]+)")


def _value(dotted: str):
    node = yaml.safe_load((ROOT / "params.yaml").read_text())
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return KeyError
        node = node[part]
    return node


def _quoted_defaults() -> list[tuple[str, str, str]]:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    return [(p.name, m.group(1), m.group(2)) for p in pages if p.is_file()
            for m in DOC_DEFAULT.finditer(p.read_text(encoding="utf-8"))]


def _doc_value(text: str):
    value = yaml.safe_load(text.strip("`"))
    return value.rstrip("/") if isinstance(value, str) else value  # a folder may be quoted as `weights/`


def test_docs_quote_the_defaults_of_params_yaml():
    quoted = _quoted_defaults()
    assert quoted, "the pattern finds the docs' quoted defaults"
    wrong = [f"{page}: `{key}` default {text} but params.yaml has {_value(key)!r}"
             for page, key, text in quoted
             if _value(key) is not KeyError and _doc_value(text) != _value(key)]
    assert wrong == []
