"""Detection datasets in ultralytics' layout, built from variant folders and real KITTI.

A *variant dataset* (what every augmentation stage writes, and ``data/dedupe``) is a folder with
``frames.csv`` holding at least ``frame_id``, ``image`` and ``label`` (YOLO label path). Paths in
it are relative to the repository root (the stage's working directory), or absolute, or
relative to the folder itself.

Built here:

* :func:`build_train_set` -> ``<out>/images/<frame_id>.<ext>`` + ``<out>/labels/<frame_id>.txt``
  + ``frames.csv`` (frame_id, source, image, label, n_boxes).
* :func:`build_mix` -> a variant dataset mixing several sources (same contract), see its docstring.
* :func:`build_real_val` -> one split of real KITTI: ``images/``, YOLO ``labels/`` (same class
  map: types in ``classes`` keep their index, every other type, DontCare included, is dropped)
  and ``kitti_labels/`` (the original label files, DontCare included, for the KITTI metric).
  The val split is the evaluation set; the train split is the oracle variant ``real`` (its
  frames.csv has ``frame_id`` = ``image_id``, so it is a variant dataset like the others).

Images are *linked*, not copied: a hard link where the file system allows it (same device: no
extra space, and DVC sees an ordinary file), else a copy (:func:`sim2real.io.link_or_copy`). Symbolic links
are not used because DVC would cache a symlink inside an output folder as the file it points to
only on some platforms and link types; a hard link is indistinguishable from a file. Sources are
written by atomic stages (new files, never rewritten in place), so a hard link can not see a
later change of its source.

At training time :func:`stage_for_ultralytics` builds a throw-away view (a symlink per file)
in a scratch folder, so that ultralytics' ``labels/*.cache`` files land in the scratch
folder and never inside a DVC output.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import yaml

from sim2real.errors import ConfigError, DataError
from sim2real.formats import kitti, yolo
from sim2real.formats.images import image_size
from sim2real.io import link_or_copy
from sim2real.manifest import read_manifest, resolve_manifest_path
from sim2real.rng import frame_rng

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp")


def read_frames(folder: str | Path, *, roots: Sequence[str | Path]) -> pd.DataFrame:
    """Read ``<folder>/frames.csv`` and check the variant-dataset contract (frame_id, image, label).

    Its paths must stay inside the data ``roots`` (:func:`sim2real.manifest.check_manifest_paths`)."""
    path = Path(folder) / "frames.csv"
    df = read_manifest(path, ["frame_id", "image", "label"], roots=roots,
                       missing_hint="a variant dataset needs frames.csv with frame_id, image, label")
    if df["frame_id"].duplicated().any():
        dup = df["frame_id"][df["frame_id"].duplicated()].iloc[0]
        raise DataError(path, f"frame_id '{dup}' listed twice")
    return df


def check_label(path: Path, n_classes: int) -> int:
    """Validate a YOLO label file against the class count; returns its number of boxes."""
    df = yolo.read_labels(path)
    bad = (df["cls"] < 0) | (df["cls"] >= n_classes)
    if bad.any():
        raise DataError(path, f"class id {int(df['cls'][bad].iloc[0])} outside 0..{n_classes - 1} (params classes)",
                        line=int(np.argmax(bad.to_numpy())) + 1)
    return len(df)


def build_train_set(sources: Sequence[str | Path], out: str | Path, n_classes: int, *,
                    roots: Sequence[str | Path]) -> pd.DataFrame:
    """Link every frame of the variant folders ``sources`` into ``out`` (ultralytics layout).

    Parameters
    ----------
    sources : variant dataset folders (each with frames.csv).
    out : an empty folder (the stage's atomic temporary).
    n_classes : number of classes (labels are validated against it).
    roots : the data roots the sources' paths must lie in (:func:`sim2real.safety.data_roots`).

    Returns the frames table written to ``out/frames.csv``.
    """
    out = Path(out)
    rows = []
    for src in sources:
        src = Path(src)
        frames = read_frames(src, roots=roots)
        for r in frames.itertuples(index=False):
            img = resolve_manifest_path(str(r.image), src)
            lab = resolve_manifest_path(str(r.label), src) if str(r.label) else None  # "": no boxes
            if not img.is_file():
                raise DataError(img, f"image of frame {r.frame_id} (listed in {src / 'frames.csv'}) not found")
            if img.suffix.lower() not in IMAGE_EXTS:
                raise DataError(img, f"unsupported image type {img.suffix}")
            n = check_label(lab, n_classes) if lab is not None and lab.exists() else 0
            fid = str(r.frame_id)
            link_or_copy(img, out / "images" / f"{fid}{img.suffix.lower()}")
            dst_label = out / "labels" / f"{fid}.txt"
            dst_label.parent.mkdir(parents=True, exist_ok=True)
            if lab is not None and lab.exists():
                shutil.copyfile(lab, dst_label)
            else:
                dst_label.write_text("")
            rows.append({"frame_id": fid, "source": str(src), "source_image": str(img),
                         "image": f"images/{fid}{img.suffix.lower()}", "label": f"labels/{fid}.txt", "n_boxes": n})
    if not rows:
        raise DataError(", ".join(str(s) for s in sources), "no frames in the variant's sources")
    table = pd.DataFrame(rows)
    if table["frame_id"].duplicated().any():
        raise DataError(", ".join(str(s) for s in sources), "the same frame_id comes from two sources")
    table.to_csv(out / "frames.csv", index=False)
    return table


def mix_draw(seed: int, frame_id: str) -> float:
    """The per-frame uniform draw in [0, 1) that decides which sources contribute a frame."""
    return float(frame_rng(seed, frame_id).random())


def mix_selection(frame_ids: Sequence[str], k: int, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask: does source number ``k`` contribute each frame?

    Source ``k`` takes the frames whose draw ``u`` falls in its window ``[k·f, k·f + f)``
    (modulo 1). With ``f = 1 / n_sources`` the windows partition [0, 1): every frame appears
    exactly once, in one source's look; ``f = 1`` takes every frame from every source.
    """
    if not 0 < fraction <= 1:
        raise ConfigError(f"mix.fraction must be in (0, 1], got {fraction}")
    u = np.array([mix_draw(seed, f) for f in frame_ids])
    return ((u - k * fraction) % 1.0) < fraction - 1e-12


def build_mix(sources: Sequence[str | Path], out: str | Path, fraction: float, seed: int,
              final_dir: str | Path | None = None, *, roots: Sequence[str | Path]) -> pd.DataFrame:
    """A variant dataset mixing ``sources`` (see :func:`mix_selection`); files are hard links.

    Frame ids become ``<source folder name>__<frame_id>``; frames.csv adds ``source``,
    ``base_frame_id`` and ``draw``; its paths start with ``final_dir`` (where ``out`` will be
    renamed to, e.g. ``data/mix``), relative to the repository root like every variant dataset.
    The sources' paths must lie inside the data ``roots``.
    """
    out = Path(out)
    final = Path(final_dir) if final_dir is not None else out
    if not sources:
        raise ConfigError("mix.sources is empty")
    names = [Path(s).name for s in sources]
    if len(set(names)) != len(names):
        raise ConfigError(f"mix.sources folder names must be distinct, got {names}")
    rows = []
    for k, src in enumerate(sources):
        src = Path(src)
        frames = read_frames(src, roots=roots)
        keep = mix_selection(frames["frame_id"].tolist(), k, fraction, seed)
        for r in frames[keep].itertuples(index=False):
            img = resolve_manifest_path(str(r.image), src)
            lab = resolve_manifest_path(str(r.label), src) if str(r.label) else None  # "": no boxes
            if not img.is_file():
                raise DataError(img, f"image of frame {r.frame_id} (listed in {src / 'frames.csv'}) not found")
            fid = f"{src.name}__{r.frame_id}"
            link_or_copy(img, out / "images" / f"{fid}{img.suffix.lower()}")
            (out / "labels").mkdir(parents=True, exist_ok=True)
            if lab is not None and lab.exists():
                shutil.copyfile(lab, out / "labels" / f"{fid}.txt")
            else:
                (out / "labels" / f"{fid}.txt").write_text("")
            rows.append({"frame_id": fid, "source": src.name, "base_frame_id": r.frame_id,
                         "draw": mix_draw(seed, r.frame_id),
                         "image": str(final / "images" / f"{fid}{img.suffix.lower()}"),
                         "label": str(final / "labels" / f"{fid}.txt")})
    if not rows:
        raise DataError(", ".join(map(str, sources)), "the mix selected no frame (raise mix.fraction)")
    table = pd.DataFrame(rows)
    table.to_csv(out / "frames.csv", index=False)
    return table


def kitti_to_yolo(df: pd.DataFrame, classes: Sequence[str], width: int, height: int) -> tuple[list[int], np.ndarray]:
    """KITTI label rows -> (class ids, (N, 4) normalised cx cy w h) for types in ``classes``.

    Boxes are clipped to the image; other types (DontCare included) are dropped.
    """
    index = {c: i for i, c in enumerate(classes)}
    keep = df[df["type"].isin(index)]
    l = keep["left"].clip(0, width).to_numpy()
    r = keep["right"].clip(0, width).to_numpy()
    t = keep["top"].clip(0, height).to_numpy()
    b = keep["bottom"].clip(0, height).to_numpy()
    ok = (r > l) & (b > t)
    ids = [index[x] for x in keep["type"].to_numpy()[ok]]
    return ids, yolo.boxes_to_yolo(l[ok], t[ok], r[ok], b[ok], width, height)


def build_real_val(real_frames_csv: str | Path, out: str | Path, classes: Sequence[str],
                   split: str = "val", *, roots: Sequence[str | Path]) -> pd.DataFrame:
    """One real-KITTI split from the ``real_frames.csv`` rows with ``split == split``: the
    evaluation set (``val``) or the oracle's training set (``train``). Only rows of that split
    are read, so a train set can not contain a val image.

    Writes ``images/<image_id>.png`` (hard links), ``labels/<image_id>.txt`` (YOLO, class map
    ``classes``), ``kitti_labels/<image_id>.txt`` (original label files), ``calib/<image_id>.txt``
    (when the manifest has a ``calib`` column) and ``frames.csv`` (``frame_id`` = ``image_id``: a
    variant dataset). The manifest's paths must lie inside the data ``roots``.
    """
    path = Path(real_frames_csv)
    # paths checked before the split filter: line numbers are file lines
    df = read_manifest(path, ["image_id", "split", "image", "label"], roots=roots,
                       missing_hint="run the ingest stage first")
    df = df[df["split"] == split]
    if df.empty:
        raise DataError(path, f"no frame with split == '{split}'")
    out = Path(out)
    rows = []
    for r in df.itertuples(index=False):
        img = resolve_manifest_path(str(r.image), path.parent)
        lab = resolve_manifest_path(str(r.label), path.parent)
        if not isinstance(r.label, str) or not lab.is_file():
            raise DataError(lab, f"KITTI label file of image {r.image_id} not found")
        if "width" in df.columns and "height" in df.columns and str(r.width) != "":
            w, h = int(r.width), int(r.height)
        else:
            w, h = image_size(img)
        labels = kitti.read_label(lab)
        ids, boxes = kitti_to_yolo(labels, classes, w, h)
        link_or_copy(img, out / "images" / f"{r.image_id}{img.suffix.lower()}")
        yolo.write_labels(out / "labels" / f"{r.image_id}.txt", ids, boxes)
        (out / "kitti_labels").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(lab, out / "kitti_labels" / f"{r.image_id}.txt")
        calib = getattr(r, "calib", None)
        if isinstance(calib, str) and calib:  # P2 for the study's distance estimate (stage score)
            src = resolve_manifest_path(calib, path.parent)
            if not src.is_file():
                raise DataError(src, f"KITTI calib file of image {r.image_id} not found")
            (out / "calib").mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, out / "calib" / f"{r.image_id}.txt")
        rows.append({"frame_id": r.image_id, "image_id": r.image_id, "image": f"images/{r.image_id}{img.suffix.lower()}",
                     "label": f"labels/{r.image_id}.txt", "kitti_label": f"kitti_labels/{r.image_id}.txt",
                     "width": w, "height": h, "n_boxes": len(ids)})
    table = pd.DataFrame(rows)
    table.to_csv(out / "frames.csv", index=False)
    return table


def stage_for_ultralytics(scratch: str | Path, train_dir: str | Path | None, val_dir: str | Path,
                          classes: Sequence[str]) -> Path:
    """A throw-away ultralytics view: ``scratch/{images,labels}/{train,val}/`` + ``data.yaml``.

    The view holds one symbolic link per image and label file (ultralytics resolves the dataset
    folders in data.yaml, so linking whole folders would lead it back into the DVC outputs).
    ultralytics derives label paths by replacing ``/images/`` with ``/labels/`` and writes its
    ``labels/<split>.cache`` beside the labels folder: here ``scratch/labels/``, outside every
    DVC output. Returns the data.yaml path (absolute paths).
    """
    scratch = Path(scratch).resolve()
    for split, src in (("train", train_dir), ("val", val_dir)):
        if src is None:
            continue
        src = Path(src).resolve()
        for kind in ("images", "labels"):
            if not (src / kind).is_dir():
                raise DataError(src / kind, f"dataset folder has no {kind}/")
            dst = scratch / kind / split
            dst.mkdir(parents=True, exist_ok=True)
            for f in sorted((src / kind).iterdir()):
                if f.is_file():
                    (dst / f.name).symlink_to(f)
    data = {"path": str(scratch), "train": "images/train" if train_dir is not None else "images/val",
            "val": "images/val", "names": {i: n for i, n in enumerate(classes)}}
    yaml_path = scratch / "data.yaml"
    yaml_path.write_text(yaml.safe_dump(data, sort_keys=False))
    return yaml_path


def variant_seed_offset(variants: Mapping, name: str) -> int:
    """``variants.<name>.seed_offset`` (default 0): added to every training seed of the variant.

    The negative control ``control`` trains on the baseline's data with ``seed_offset`` != 0, so
    its difference from ``baseline`` measures training noise alone.
    """
    if name not in variants:
        raise ConfigError(f"params.yaml: variants has no '{name}' (have: {', '.join(variants)})")
    spec = variants[name]
    offset = spec.get("seed_offset", 0) if isinstance(spec, Mapping) else 0
    if isinstance(offset, bool) or not isinstance(offset, int):
        raise ConfigError(f"params.yaml: variants.{name}.seed_offset must be an integer, got {offset!r}")
    return offset
