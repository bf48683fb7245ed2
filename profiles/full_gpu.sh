#!/usr/bin/env bash
# The full study profile (docs/study-world.md "Full profile"): real vKITTI2 + KITTI, YOLOv5l6 at
# 1280 px fine-tuned from the researcher's local weights, 3 training seeds, every variant + the
# oracle + the negative control, on one CUDA GPU. Nothing downloads: the three paths are yours.
#
#   VKITTI2_ROOT=/data/vkitti2 KITTI_ROOT=/data/kitti/object WEIGHTS=/models/yolov5l6u.pt profiles/full_gpu.sh
#
# The profile differs from params.yaml only in the -S values below (same stages, same code path).
set -euo pipefail
: "${VKITTI2_ROOT:?folder holding vkitti_2.0.3_rgb/, _depth/, _classSegmentation/, _instanceSegmentation/, _textgt/}"
: "${KITTI_ROOT:?folder holding training/image_2, label_2, calib}"
: "${WEIGHTS:?a local YOLOv5l6 checkpoint, e.g. yolov5l6u.pt}"
exec dvc exp run "$@" \
  -S "data.source=vkitti2" -S "data.vkitti2_root=${VKITTI2_ROOT}" -S "data.kitti_root=${KITTI_ROOT}" \
  -S "data.scenes=[Scene01,Scene02,Scene06,Scene18,Scene20]" -S "data.variations=[clone]" \
  -S "data.real_val_fraction=0.5" \
  -S "compute.device=cuda" -S "compute.processes=16" -S "compute.torch_threads=16" \
  -S "train.model=yolov5l-p6.yaml" -S "train.weights=${WEIGHTS}" \
  -S "train.imgsz=1280" -S "train.rect=false" -S "train.mosaic=1.0" \
  -S "train.epochs=50" -S "train.batch=16" -S "train.nbs=64" -S "train.warmup_epochs=3.0" \
  -S "train.optimizer=auto" -S "train.lr0=0.01" -S "train.lrf=0.01" -S "train.val=false" \
  -S "train.device=0" -S "train.workers=8" -S "train.cache=false" -S "train.amp=true" \
  -S "train.seeds=[0,1,2]" \
  -S "evaluate.device=0" -S "evaluate.batch=32" \
  -S "cyclegan.train.ngf=64" -S "cyclegan.train.n_blocks=9" -S "cyclegan.train.ndf=64" \
  -S "cyclegan.train.crop_px=256" -S "cyclegan.train.epochs=200"
