"""Reading params.yaml: one typed, validated layer for every stage.

:func:`load_params` returns the requested top-level sections. A section with a schema in
:data:`SCHEMAS` is validated on load and returned as its typed, frozen model (``p.blur.sigma``,
``dict(p.dedupe)`` and ``p.data.get("camera")`` all work); an unknown key, a missing key, a wrong
type or a value out of range is a one-line :class:`~sim2real.errors.ConfigError` naming the key
(``params.yaml: data.max_frames: input should be greater than or equal to 1, got 0``). Every
section has a schema; the top-level mapping comes back as an attribute-accessible :class:`Section`.
A library config dataclass is made from its section by :func:`build` (the one way: no
hand-written ``from_params`` that copies keys).

Defaults live in params.yaml only: no schema field has a default (the one exception,
``variants.<name>.seed_offset``, is 0 = "no offset" for the variants that do not set it), so a
key missing from params.yaml is an error, not a silent fallback; tests/test_params_defaults.py
checks that the library configs' own defaults equal params.yaml's values.

Why pydantic: it is the maintained library for exactly this (typed models, ``extra="forbid"``,
strict types, located errors); the hand-written part is the domain rules below (the ``(R)``
values that may be ``[low, high]`` ranges) and turning pydantic's error list into one line.
"""
from __future__ import annotations

import dataclasses
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
    "camera.contrast": dict(gt=0.0),
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
    contrast: RandomValue


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


# ----------------------------------------------------------------------------- compute and the torch stages
PositiveInt = Annotated[int, Field(ge=1)]
NonNegInt = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0.0, allow_inf_nan=False)]
NonNegFloat = Annotated[float, Field(ge=0.0, allow_inf_nan=False)]
JpegQuality = Annotated[int, Field(ge=1, le=100)]


class ComputeParams(Params):
    model_config = ConfigDict(title="compute")

    processes: PositiveInt = Field(description="local processes of the per-frame stages; 1 = in-process")
    torch_threads: PositiveInt = Field(description="torch threads on CPU of the CycleGAN, train and evaluate stages")
    device: Literal["cpu", "cuda"]
    scheduler: NonEmptyStr
    batch_size: PositiveInt
    max_in_flight: PositiveInt | None
    resume: bool

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: Any) -> Any:
        if isinstance(data, dict) and "workers" in data:
            raise ValueError("compute.workers: renamed: it is compute.processes (local processes of the per-frame "
                             "stages) and compute.torch_threads (torch threads of cyclegan_train/cyclegan_translate/train/evaluate)")
        return data


class NSTParams(Params):
    """``style.nst``: the fields of :class:`sim2real.style.nst.NSTConfig` (cross-key rules live there)."""
    model_config = ConfigDict(title="style.nst")

    content_layers: UniqueNames
    style_layers: UniqueNames
    content_weight: NonNegFloat
    style_weight: NonNegFloat
    tv_weight: NonNegFloat
    optimizer: Literal["adam", "lbfgs"]
    lr: PositiveFloat
    scales: Annotated[list[Annotated[float, Field(gt=0.0, le=1.0)]], Field(min_length=1)]
    steps: Annotated[list[NonNegInt], Field(min_length=1)]
    plateau_rel_tol: NonNegFloat
    plateau_patience: NonNegInt
    amp: bool
    init: Literal["content", "photoreal"]


class PhotorealParams(Params):
    """``style.photoreal``: the fields of :class:`sim2real.style.photoreal.PhotorealConfig`."""
    model_config = ConfigDict(title="style.photoreal")

    levels: NonNegInt
    smooth_px: NonNegFloat
    edge_aware: bool
    min_pixels: NonNegInt
    region_bands: PositiveInt
    noise: bool
    eps: PositiveFloat
    global_classes: list[NonEmptyStr]


class StyleParams(Params):
    model_config = ConfigDict(title="style")

    method: Literal["photoreal", "nst", "wct2"]
    pairing: Literal["random", "histogram"]
    semantic_only: bool
    batch_size: PositiveInt
    jpeg_quality: JpegQuality
    vgg_weights: NonEmptyStr
    wct2_checkpoints: NonEmptyStr | None
    wct2_schedule: Literal["official", "bottleneck_skips"]
    wct2_transfer_at: Annotated[list[Literal["encoder", "skip", "decoder"]], Field(min_length=1),
                                AfterValidator(_unique("place"))]
    grid_frames: NonNegInt
    nst: NSTParams
    photoreal: PhotorealParams


class CycleGANTrainParams(Params):
    """``cyclegan.train``: the fields of :class:`sim2real.cyclegan.train.CycleGANTrainConfig` but seed/device."""
    model_config = ConfigDict(title="cyclegan.train")

    ngf: PositiveInt
    n_blocks: NonNegInt
    ndf: PositiveInt
    d_layers: PositiveInt
    init_gain: PositiveFloat
    crop_px: PositiveInt
    scale_range: Annotated[list[PositiveFloat], Field(min_length=2, max_length=2)]
    flip: bool
    batch_size: PositiveInt
    iterations: NonNegInt
    epochs: PositiveFloat | None
    decay_start: Fraction01
    lr: PositiveFloat
    beta1: Annotated[float, Field(ge=0.0, lt=1.0)]
    beta2: Annotated[float, Field(ge=0.0, lt=1.0)]
    lambda_cycle: NonNegFloat
    lambda_identity: NonNegFloat
    pool_size: NonNegInt
    amp: bool
    checkpoint_every: PositiveInt
    resume: bool
    on_params_change: Literal["restart", "error"]


class CycleGANTranslateParams(Params):
    model_config = ConfigDict(title="cyclegan.translate")

    mode: Literal["whole", "tiled"]
    tile_px: PositiveInt
    overlap_px: NonNegInt
    amp: bool
    jpeg_quality: JpegQuality


class CycleGANParams(Params):
    model_config = ConfigDict(title="cyclegan")

    variations: UniqueNames
    generator: NonEmptyStr
    train: CycleGANTrainParams
    translate: CycleGANTranslateParams


# ----------------------------------------------------------------------------- detection and the study
class DetectTrainParams(Params):
    """``train``: the fields of :class:`sim2real.detect.train.DetectTrainConfig` but ``seed`` (per run)."""
    model_config = ConfigDict(title="train")

    model: Annotated[str, Field(pattern=r"\.ya?ml$")] = Field(description="an ultralytics model yaml, e.g. yolov5l-p6.yaml")
    weights: NonEmptyStr | None
    download: bool
    weights_dir: NonEmptyStr
    imgsz: PositiveInt
    epochs: PositiveInt
    batch: PositiveInt
    device: NonEmptyStr | NonNegInt
    workers: NonNegInt = Field(description="ultralytics dataloader workers")
    seeds: Annotated[list[int], Field(min_length=1), AfterValidator(_unique("seed"))]
    deterministic: bool
    rect: bool
    cache: Literal[False, "ram", "disk"]
    patience: PositiveInt
    optimizer: NonEmptyStr
    lr0: PositiveFloat
    lrf: PositiveFloat
    warmup_epochs: NonNegFloat
    nbs: PositiveInt
    mosaic: Fraction01
    val: bool
    amp: bool


class EvaluateParams(Params):
    model_config = ConfigDict(title="evaluate")

    imgsz: PositiveInt | None
    batch: PositiveInt
    device: NonEmptyStr | NonNegInt
    conf: Fraction01
    val_conf: Fraction01
    iou: IoU
    max_det: PositiveInt
    kitti_classes: Annotated[list[Literal["Car", "Pedestrian", "Cyclist"]], Field(min_length=1),
                             AfterValidator(_unique("class"))]


class StudyParams(Params):
    model_config = ConfigDict(title="study")

    bootstrap_resamples: Annotated[int, Field(ge=1000)]
    ci_level: Annotated[float, Field(ge=0.5, lt=1.0)]
    bootstrap_seed: int
    distance_bins_m: Annotated[list[NonNegFloat], Field(min_length=2)]
    camera_height_m: PositiveFloat | None
    car_length_m: NonNegFloat


class VariantParams(Params):
    model_config = ConfigDict(title="variants")

    data: NonEmptyStr
    images: NonEmptyStr
    seed_offset: int = Field(0, description="added to each training seed (the only optional key: 0 = none)")


class MixParams(Params):
    model_config = ConfigDict(title="mix")

    sources: UniqueNames
    fraction: Annotated[float, Field(gt=0.0, le=1.0)]


# ----------------------------------------------------------------------------- calibrate, gap, report, tracking
class CalibrateParams(Params):
    """``calibrate``: with gap's denoise_sigma_px/min_box_px and ``seed``, :class:`sim2real.calibrate.fit.Settings`."""
    model_config = ConfigDict(title="calibrate")

    max_sim_frames: PositiveInt
    max_real_frames: PositiveInt
    fit: Annotated[list[Literal["jpeg", "noise", "haze", "colour", "blur"]], Field(min_length=1)]
    distance_bins_m: Annotated[list[NonNegFloat], Field(min_length=2)]
    min_bin_count: PositiveInt
    min_box_height_px: NonNegFloat
    blur_grid_px: Annotated[list[NonNegFloat], Field(min_length=1)]
    visibility_grid_m: Annotated[list[PositiveFloat], Field(min_length=1)]
    reblur_px: PositiveFloat
    blur_denoise_px: NonNegFloat
    blur_inner: Annotated[float, Field(gt=0.0, le=1.0)]
    max_noise_sigma: PositiveFloat
    camera_height_m: PositiveFloat
    lab_stride: PositiveInt


class KidParams(Params):
    model_config = ConfigDict(title="gap.kid")

    inception_weights: NonEmptyStr | None
    image_hw: Annotated[list[PositiveInt], Field(min_length=2, max_length=2)]
    subset_size: PositiveInt
    subsets: PositiveInt


class PadParams(Params):
    model_config = ConfigDict(title="gap.pad")

    folds: Annotated[int, Field(ge=2)]


class GapParams(Params):
    model_config = ConfigDict(title="gap")

    max_images: Annotated[int, Field(ge=2)]
    height_bins_px: Annotated[list[NonNegFloat], Field(min_length=2)]
    min_bin_count: PositiveInt
    min_box_px: NonNegInt
    denoise_sigma_px: NonNegFloat
    lab_bins: PositiveInt
    spectrum_bins: PositiveInt
    kid: KidParams
    pad: PadParams


class ReportParams(Params):
    model_config = ConfigDict(title="report")

    grid_frames: NonNegInt
    thumb_width_px: PositiveInt


class TrackingParams(Params):
    model_config = ConfigDict(title="tracking")

    project: NonEmptyStr
    entity: NonEmptyStr | None


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
    "compute": ComputeParams,
    "style": StyleParams,
    "cyclegan": CycleGANParams,
    "train": DetectTrainParams,
    "evaluate": EvaluateParams,
    "study": StudyParams,
    "variants": Annotated[dict[NonEmptyStr, VariantParams], Field(min_length=1)],
    "mix": MixParams,
    "calibrate": CalibrateParams,
    "gap": GapParams,
    "report": ReportParams,
    "tracking": TrackingParams,
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
    if kind == "value_error" and msg.startswith(f"{section}."):
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


def _tuples(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(_tuples(v) for v in value)
    return value


def build(cls: type, section: Any, **extra: Any) -> Any:
    """The library config dataclass ``cls`` from a params section (typed model or plain mapping, as
    :func:`load_params` / :func:`plain` give it): each field of ``cls`` that the section has, lists
    as tuples, then ``extra`` (values from elsewhere, e.g. ``seed``). Keys of the section that
    ``cls`` has no field for are left out (the stage reads them); the schema already rejected
    unknown keys, and tests/test_params_defaults.py checks schemas and dataclasses name the same keys."""
    names = {f.name for f in dataclasses.fields(cls)}
    kw = {k: _tuples(plain(section[k])) for k in section.keys() if k in names}
    return cls(**{**kw, **extra})
