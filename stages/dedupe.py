"""Stage `dedupe`: clean vKITTI2 boxes with :func:`sim2real.labels.dedupe` and write YOLO labels.

Streams ``boxes.csv`` one scene/variation at a time. Writes ``<out>/frames.csv`` (ingest columns
+ image, label, n_boxes), ``boxes_kept.csv``, ``boxes_dropped.csv`` (with ``reason``),
``labels/<frame_id>.txt`` and the report (counts per reason). Params: dedupe, classes, data.camera.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from sim2real.formats.yolo import boxes_to_yolo, format_labels
from sim2real.cli import entrypoint
from sim2real.io import atomic_outputs
from sim2real.labels import REASONS, count_reasons, dedupe
from sim2real.manifest import iter_groups, read_manifest
from sim2real.params import load_params
from sim2real.safety import data_roots


def cli(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--ingest", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--report", required=True)
    return ap.parse_args(argv)


def rules_from_params(p) -> dict:
    return {**dict(p.dedupe), "camera": int(p.data.camera), "classes": list(p.classes)}


def main(argv=None) -> None:
    args = cli(argv)
    p = load_params("dedupe", "classes", "data")
    rules = rules_from_params(p)
    ingest = Path(args.ingest)
    frames = read_manifest(ingest / "frames.csv", roots=data_roots(p.data), missing_hint="run the ingest stage first")
    totals = {"boxes_in": 0, "boxes_kept": 0}
    reasons = {k: 0 for k in REASONS}
    per_class = {c: 0 for c in rules["classes"]}
    with atomic_outputs() as outs:  # both outputs renamed into place together, after all work
        tmp = outs.dir(args.out)
        labels_dir = tmp / "labels"
        labels_dir.mkdir()
        kept_by_frame: dict[str, pd.DataFrame] = {}
        groups = iter_groups(ingest / "boxes.csv", ["scene", "variation"]) if (ingest / "boxes.csv").stat().st_size else []
        for boxes in tqdm(groups, desc="dedupe", unit="sequence"):
            kept, dropped = dedupe(boxes, rules)
            totals["boxes_in"] += len(boxes)
            totals["boxes_kept"] += len(kept)
            for k, v in count_reasons(dropped).items():
                reasons[k] += v
            for c, n in kept["label"].value_counts().items():
                per_class[c] += int(n)
            kept.to_csv(tmp / "boxes_kept.csv", mode="a", header=not (tmp / "boxes_kept.csv").exists(), index=False)
            dropped.to_csv(tmp / "boxes_dropped.csv", mode="a", header=not (tmp / "boxes_dropped.csv").exists(), index=False)
            for fid, g in kept.groupby("frame_id", sort=False):
                kept_by_frame[fid] = g[["class_id", "left", "top", "right", "bottom"]]
        label_paths, n_boxes = [], []
        for row in frames.itertuples():
            g = kept_by_frame.pop(row.frame_id, None)
            path = Path(args.out) / "labels" / f"{row.frame_id}.txt"
            if g is None or not len(g):
                text = ""
            else:
                text = format_labels(g["class_id"], boxes_to_yolo(g["left"], g["top"], g["right"], g["bottom"], row.width, row.height))
            (labels_dir / path.name).write_text(text)
            label_paths.append(str(path))
            n_boxes.append(0 if g is None else len(g))
        out = frames.assign(image=frames["rgb"], label=label_paths, n_boxes=n_boxes)
        out.to_csv(tmp / "frames.csv", index=False)
        report = {**totals, "boxes_dropped": totals["boxes_in"] - totals["boxes_kept"], "dropped_by_reason": reasons,
                  "kept_by_class": per_class, "frames": len(frames), "rules": rules}
        outs.json(args.report, report)
    print(f"dedupe: kept {totals['boxes_kept']} of {totals['boxes_in']} boxes; dropped {reasons}")


if __name__ == "__main__":
    entrypoint(main)
