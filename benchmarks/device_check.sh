#!/usr/bin/env bash
# One prepared run for a lent CUDA machine (docs/benchmarks.md "GPU check"): the pipeline's train@
# path against plain ultralytics with YOLOv5l6 at 1280 px (benchmarks/bench_train.py: images/s of
# both and ratio_vs_plain_ultralytics), which also gives the images/s the full-profile cost
# projection in docs/study-world.md uses.
# Carry .whl (ultralytics, ultralytics-thop, ultralytics-platform, polars + polars-runtime-32,
# pydantic + pydantic_core + annotated_types + typing_inspection wheels for the machine's Python).
set -uo pipefail
OUT=${OUT:-/tmp/device_out}; mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi
export YOLO_OFFLINE=true WANDB_MODE=disabled SIM2REAL_NO_PROGRESS=1 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, torchvision, ultralytics; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'tv', torchvision.__version__, 'ultralytics', ultralytics.__version__)" | tee -a "$OUT/gpu.txt"
nproc | sed 's/^/cpus /' | tee -a "$OUT/gpu.txt"
timeout "${BENCH_TIMEOUT_S:-420}" python3 benchmarks/bench_train.py --device 0 --model yolov5l-p6.yaml --imgsz 1280 \
  --batch 16 --frames "${BENCH_FRAMES:-128}" --val-frames 16 --epochs 2 --repeats 2 --workers 8 2>&1 \
  | tee "$OUT/bench_train_gpu.txt" | grep -v "^ *$" | tail -40
