"""Reading params.yaml: one typed, validated layer for every stage.

:func:`load_params` returns the requested top-level sections. A section with a schema in
:data:`SCHEMAS` is validated on load and returned as its typed, frozen model (``p.blur.sigma``,
``dict(p.dedupe)`` and ``p.data.get("camera")`` all work); an unknown key, a missing key, a wrong
type or a value out of range is a one-line :class:`~sim2real.errors.ConfigError` naming the key
(``params.yaml: data.max_frames: input should be greater than or equal to 1, got 0``). Sections
without a schema yet come back as attribute-accessible mappings (:class:`Section`).

Defaults live in params.yaml only: no schema field has a default, so a key missing from
params.yaml is an error, not a silent fallback.

Why pydantic: it is the maintained library for exactly this (typed models, ``extra="forbid"``,
strict types, located errors); the hand-written part is the domain rules below (the ``(R)``
values that may be ``[low, high]`` ranges) and turning pydantic's error list into one line.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Callable, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainValidator, TypeAdapter, ValidationError, \
    ValidationInfo, model_validator

from sim2real.errors import ConfigError

PARAMS_FILE = "params.yaml"

#: Largest Gaussian sigma (px) any blur setting may ask for: a 601 px kernel, about half a KITTI
#: frame's width and 1.6x its height; beyond it the frame is a flat colour, and OpenCV's kernel
#: allocation fails (sigma 1e6 -> std::bad_array_new_length). One frame at sigma 100 takes ~5 s.
MAX_SIGMA_PX = 100.0
#: Colour temperatures (K) where the Planckian-locus approximation of sim2real.physics.colour holds
#: (Kim et al. 2002 cubic splines: 1667-25000 K).
TEMPERATURE_RANGE_K = (1667.0, 25000.0)


# ----------------------------------------------------------------------------- generic sections
class Section(dict):
    """A dict whose keys can be read as attributes; missing keys raise ConfigError."""

    def __init__(self, data: dict, name: str = ""):
        super().__init__({k: _wrap(v, f"{name}.{k}" if name else str(k)) for k, v in data.items()})
        self._name = name

    def __getattr__(self, key: str) -> Any:
        if key.startswith("_"):
            raise AttributeError(key)
        try:
            return self[key]
        except KeyError:
            where = f"{self._name}.{key}" if self._name else key
            raise ConfigError(f"params.yaml: missing key '{where}'") from None

    def __reduce__(self):
        return (Section, (dict(self), self._name))


def _wrap(value: Any, name: str) -> Any:
    if isinstance(value, dict):
        return Section(value, name)
    return value


class Params(BaseModel):
    """Base of every section schema: strict types, unknown keys rejected, frozen, read like a mapping."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    def __getitem__(self, key: str) -> Any:
        if key not in type(self).model_fields:
            raise KeyError(key)
        return getattr(self, key)

    def keys(self):
        return type(self).model_fields.keys()

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key) if key in type(self).model_fields else default

    def __contains__(self, key: object) -> bool:
        return key in type(self).model_fields


# ----------------------------------------------------------------------------- (R) values
def random_range(name: str, spec: Any, *, ge: float | None = None, gt: float | None = None,
                 le: float | None = None, lt: float | None = None, inf_means: str | None = None,
                 integer: bool = False) -> tuple[float, float] | None:
    """An ``(R)`` value -> ``(low, high)`` (a fixed value gives ``(v, v)``), or None for ``null``.

    Rejects NaN, non-numbers, ``high < low`` and values outside the bounds. ``.inf`` is accepted
    only where it means something (``inf_means``, e.g. "no haze") and only as a fixed value: a
    range reaching infinity has no uniform draw.
    """
    if spec is None:
        return None
    if isinstance(spec, (list, tuple)):
        if len(spec) != 2:
            raise ConfigError(f"{name}: expected a value or a [low, high] range, got {spec!r}")
        lo, hi = spec
    else:
        lo = hi = spec
    if isinstance(lo, bool) or isinstance(hi, bool) or not isinstance(lo, (int, float)) \
            or not isinstance(hi, (int, float)):
        raise ConfigError(f"{name}: expected numbers, got {spec!r}")
    lo, hi = float(lo), float(hi)
    if math.isnan(lo) or math.isnan(hi):
        raise ConfigError(f"{name}: NaN is not a value, got {spec!r}")
    if hi < lo:
        raise ConfigError(f"{name}: range [low, high] needs low <= high, got {spec!r}")
    if math.isinf(lo) or math.isinf(hi):
        if inf_means is None:
            raise ConfigError(f"{name}: must be finite, got {spec!r}")
        if lo != hi:
            raise ConfigError(f"{name}: a range cannot reach .inf ({inf_means} is the fixed value .inf), got {spec!r}")
    if integer and not (math.isinf(lo) or (lo.is_integer() and hi.is_integer())):
        raise ConfigError(f"{name}: expected whole numbers, got {spec!r}")
    for bound, ok, text in ((ge, lambda b: lo >= b, ">="), (gt, lambda b: lo > b, ">"), (le, lambda b: hi <= b, "<="),
                            (lt, lambda b: hi < b, "<")):
        if bound is not None and not ok(bound):
            raise ConfigError(f"{name} must be {text} {bound:g}, got {spec!r}")
    return lo, hi


#: The bounds of every ``(R)`` key of params.yaml ("section.key" -> :func:`random_range` options).
RANDOM_RULES: dict[str, dict] = {
    "blur.sigma": dict(ge=0.0, le=MAX_SIGMA_PX),
    "blur.near_m": dict(ge=0.0),
    "blur.far_m": dict(gt=0.0),
    "blur.power": dict(gt=0.0),
    "blur.focus_m": dict(gt=0.0),
    "blur.f_number": dict(gt=0.0),
    "haze.visibility_m": dict(gt=0.0, inf_means="no haze"),
    "haze.heterogeneity": dict(ge=0.0, le=0.99),
    "camera.shot_gain": dict(ge=0.0),
    "camera.read_sigma": dict(ge=0.0),
    "camera.jpeg_quality": dict(ge=1.0, le=100.0, integer=True),
    "camera.vignetting": dict(ge=0.0, le=1.0),
    "camera.ego_speed_mps": dict(ge=0.0),
    "camera.exposure_s": dict(ge=0.0),
    "camera.chromatic_aberration": dict(gt=-0.5, lt=0.5),
    "camera.exposure_stops": dict(ge=-10.0, le=10.0),
    "camera.tone_gamma": dict(gt=0.0),
    "camera.wb_temperature_k": dict(ge=TEMPERATURE_RANGE_K[0], le=TEMPERATURE_RANGE_K[1]),
    "camera.wb_gain_r": dict(gt=0.0),
    "camera.wb_gain_b": dict(gt=0.0),
}


def check_random(name: str, spec: Any) -> tuple[float, float] | None:
    """:func:`random_range` with the bounds of ``name`` from :data:`RANDOM_RULES`."""
    return random_range(name, spec, **RANDOM_RULES[name])


def _check_random_field(value: Any, info: ValidationInfo) -> Any:
    """Field validator of an (R) key: :func:`check_random` with the section (the model's title) and field name."""
    name = f"{info.config['title']}.{info.field_name}"
    try:
        check_random(name, value)
    except ConfigError as exc:  # pydantic reports ValueError with its location
        raise ValueError(str(exc).removeprefix(name).lstrip(": ")) from None
    return value


#: Field type of an ``(R)`` key: validated by :func:`check_random`, kept as written.
RandomValue = Annotated[Any, PlainValidator(_check_random_field)]


def _unique(what: str) -> Callable[[list], list]:
    def check(values: list) -> list:
        seen = set()
        for v in values:
            if v in seen:
                raise ValueError(f"{what} {v!r} listed twice")
            seen.add(v)
        return values
    return check


NonEmptyStr = Annotated[str, Field(min_length=1)]
Fraction01 = Annotated[float, Field(ge=0.0, le=1.0)]
IoU = Annotated[float, Field(gt=0.0, le=1.0)]
UniqueNames = Annotated[list[NonEmptyStr], Field(min_length=1), AfterValidator(_unique("name"))]


# ----------------------------------------------------------------------------- schemas
class DataParams(Params):
    model_config = ConfigDict(title="data")

    source: Literal["demo", "vkitti2"]
    demo_root: NonEmptyStr
    vkitti2_root: NonEmptyStr | None
    kitti_root: NonEmptyStr | None
    scenes: UniqueNames
    variations: UniqueNames
    camera: Annotated[int, Field(ge=0, le=1)]
    frame_stride: Annotated[int, Field(ge=1)] = Field(description="1 = every frame")
    max_frames: Annotated[int, Field(ge=1)] | None = Field(description="frames per scene/variation; null = all")
    real_val_fraction: Fraction01 = Field(description="share of the real KITTI frames held out for evaluation")
    real_split_seed: int
    on_error: Literal["fail", "skip"]
    max_skip_fraction: Fraction01

    @model_validator(mode="after")
    def _roots_for_source(self):
        if self.source == "vkitti2":
            for key in ("vkitti2_root", "kitti_root"):
                if getattr(self, key) is None:
                    raise ValueError(f"data.source is vkitti2 but data.{key} is not set")
        return self


class DedupeParams(Params):
    model_config = ConfigDict(title="dedupe")

    min_visible_px: Annotated[int, Field(ge=0)]
    min_height_px: Annotated[int, Field(ge=0)]
    min_width_px: Annotated[int, Field(ge=0)]
    max_truncation: Fraction01
    class_conflict: Literal["more_pixels", "drop_both"]
    same_box_iou: IoU
    merge_iou: IoU


class BlurParams(Params):
    model_config = ConfigDict(title="blur")

    mode: Literal["distance", "defocus", "none"]
    sigma: RandomValue
    near_m: RandomValue
    far_m: RandomValue
    curve: Literal["linear", "power", "smoothstep"]
    power: RandomValue
    targets: Literal["all", "objects", "background"]
    feather_px: Annotated[float, Field(ge=0.0, allow_inf_nan=False)]
    step_px: Annotated[float, Field(gt=0.0, allow_inf_nan=False)]
    max_layers: Annotated[int, Field(ge=1, le=64)]  # sim2real.physics.layered.quantise's limit
    focal_length_mm: Annotated[float, Field(gt=0.0, allow_inf_nan=False)]
    f_number: RandomValue
    focus_m: RandomValue
    max_sigma_px: Annotated[float, Field(gt=0.0, le=MAX_SIGMA_PX)]

    @model_validator(mode="after")
    def _near_before_far(self):
        near, far = check_random("blur.near_m", self.near_m), check_random("blur.far_m", self.far_m)
        if self.mode == "distance" and near and far and not near[1] < far[0]:
            raise ValueError(f"blur.near_m {self.near_m!r} must stay below blur.far_m {self.far_m!r} in every draw")
        return self


def _airlight(value):
    if isinstance(value, str):
        if value in ("auto", "auto_color"):
            return value
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        if 0 <= value <= 255:
            return value
    elif isinstance(value, list) and len(value) == 3 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 255 for v in value):
        return value
    raise ValueError(f"expected auto, auto_color, a gray level or [r, g, b] in 0..255, got {value!r}")


class HazeParams(Params):
    model_config = ConfigDict(title="haze")

    enabled: bool
    visibility_m: RandomValue
    contrast_threshold: Annotated[float, Field(gt=0.0, lt=1.0)]
    airlight: Annotated[Any, PlainValidator(_airlight)]
    heterogeneity: RandomValue
    cell_px: Annotated[float, Field(gt=0.0, allow_inf_nan=False)]
    min_transmission: Annotated[float, Field(ge=0.0, lt=1.0)]


class CameraParams(Params):
    model_config = ConfigDict(title="camera")

    shot_gain: RandomValue
    read_sigma: RandomValue
    jpeg_quality: RandomValue
    vignetting: RandomValue
    ego_speed_mps: RandomValue
    exposure_s: RandomValue
    motion_samples: Annotated[int, Field(ge=1)]
    chromatic_aberration: RandomValue
    exposure_stops: RandomValue
    tone_gamma: RandomValue
    wb_temperature_k: RandomValue
    wb_gain_r: RandomValue
    wb_gain_b: RandomValue


class DemoParams(Params):
    model_config = ConfigDict(title="demo")

    seed: int
    scenes: Annotated[int, Field(ge=1, le=99)]  # Scene01 .. Scene99
    frames_per_scene: Annotated[int, Field(ge=1)]
    variations: UniqueNames
    real_frames: Annotated[int, Field(ge=1)]
    real_seg_every: Annotated[int, Field(ge=1)]
    real_camera: RealCameraParams
    ego_speed_m: Annotated[float, Field(gt=0)]
    traffic: dict[str, Any]  # checked by sim2real.demo.world.Traffic.from_params (ranges and keys)


class RealCameraParams(Params):
    """The demo's hidden "real" camera (sim2real.demo.realism)."""
    model_config = ConfigDict(title="demo.real_camera")

    softness_far_m: Annotated[float, Field(gt=0)]
    visibility_m: Annotated[float, Field(gt=0)]
    airlight: Annotated[list[Annotated[float, Field(ge=0, le=255)]], Field(min_length=3, max_length=3)]
    contrast: Annotated[float, Field(gt=0)]
    gains: Annotated[list[Annotated[float, Field(gt=0)]], Field(min_length=3, max_length=3)]
    palette: Annotated[list[Annotated[float, Field(gt=0)]], Field(min_length=3, max_length=3)]
    noise_sigma: Annotated[float, Field(ge=0)]
    jpeg_quality: Annotated[int, Field(ge=1, le=100)]


#: Section name -> schema (a Params model, or a type for top-level scalars and lists).
SCHEMAS: dict[str, Any] = {
    "seed": int,
    "classes": Annotated[list[NonEmptyStr], Field(min_length=1), AfterValidator(_unique("class"))],
    "data": DataParams,
    "dedupe": DedupeParams,
    "blur": BlurParams,
    "haze": HazeParams,
    "camera": CameraParams,
    "demo": DemoParams,
}
_ADAPTERS = {name: TypeAdapter(t, config=ConfigDict(strict=True)) for name, t in SCHEMAS.items()
             if not (isinstance(t, type) and issubclass(t, Params))}


def _message(err: dict, section: str, model: Any) -> str:
    loc = [str(p) for p in err["loc"] if not str(p).startswith("function-")]
    key = ".".join([section, *loc]) if loc else section
    kind = err["type"]
    if kind == "extra_forbidden":
        known = ", ".join(model.model_fields) if isinstance(model, type) and issubclass(model, Params) else ""
        return f"{key}: unknown key (known: {known})"
    if kind == "missing":
        return f"missing key '{key}'"
    msg = err["msg"].removeprefix("Value error, ")
    if msg.split(" ", 1)[0][1:].islower():  # "Input should ..." -> "input should ..."; "NaN" stays
        msg = msg[:1].lower() + msg[1:]
    if kind == "value_error" and msg.startswith(("data.", "blur.")):
        return msg  # a rule across keys names its keys itself
    text = f"{key}: {msg}" if "got " in msg else f"{key}: {msg}, got {err.get('input')!r}"
    field = model.model_fields.get(loc[0]) if loc and isinstance(model, type) and issubclass(model, Params) else None
    return f"{text} ({field.description})" if field is not None and field.description else text


def validate_section(name: str, value: Any, path: str | Path = PARAMS_FILE) -> Any:
    """``value`` (the section as read from params.yaml) checked against its schema: the typed model,
    the validated value, or ``value`` unchanged when ``name`` has no schema yet."""
    schema = SCHEMAS.get(name)
    if schema is None:
        return value
    try:
        if isinstance(schema, type) and issubclass(schema, Params):
            if not isinstance(value, dict):
                raise ConfigError(f"{path}: {name}: expected a mapping of keys, got {value!r}")
            return schema.model_validate(value)
        return _ADAPTERS[name].validate_python(value)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {_message(exc.errors()[0], name, schema)}") from None


# ----------------------------------------------------------------------------- loading
def read_params_file(path: str | Path = PARAMS_FILE) -> dict:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: params file not found (run from the repository root)")
    with path.open(encoding="utf-8-sig") as fh:
        try:
            data = yaml.safe_load(fh) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
            raise ConfigError(f"{where}: not valid YAML ({getattr(exc, 'problem', None) or exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def load_params(*sections: str, path: str | Path = PARAMS_FILE) -> Section:
    """Return the named top-level sections (or scalars, e.g. ``seed``) of params.yaml, each
    validated by its schema in :data:`SCHEMAS` (typed model) when it has one."""
    data = read_params_file(path)
    out = {}
    for name in sections:
        if name not in data:
            raise ConfigError(f"{path}: missing section '{name}'")
        out[name] = validate_section(name, data[name], path)
    return Section(out)


def plain(section: Any) -> Any:
    """A params section (nested Section or typed model) as plain dicts: picklable and JSON-able."""
    if isinstance(section, Params):
        return {k: plain(getattr(section, k)) for k in type(section).model_fields}
    if isinstance(section, dict):
        return {k: plain(v) for k, v in section.items()}
    return section


def layer(base: dict, overlay_file: str | Path, sections: tuple[str, ...]) -> dict:
    """``base`` (plain dicts) with the keys of ``overlay_file``'s ``sections`` laid over it, key by key
    (e.g. the calibrate stage's fitted blur/haze/camera values over params.yaml's). A section the
    overlay lacks stays as it is; a section the overlay has beyond ``sections`` is a ConfigError."""
    over = read_params_file(overlay_file)
    extra = set(over) - set(sections)
    if extra:
        raise ConfigError(f"{overlay_file}: unexpected section(s) {sorted(extra)} (allowed: {', '.join(sections)})")
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in base.items()}
    for sec, kv in over.items():
        if not isinstance(kv, dict):
            raise ConfigError(f"{overlay_file}: section '{sec}' must be a mapping")
        out[sec] = {**(out.get(sec) or {}), **kv}
    return out
