#!/usr/bin/env bash
# One prepared run for a lent CUDA machine (see README "GPU check"): builds the miniature world,
# then times YOLOv5l6 training at 1280 (FP32 vs AMP) and CycleGAN translation/training with AMP.
# Carry .whl (ultralytics, polars, pywavelets wheels for the machine's Python) beside the repo.
set -uo pipefail
OUT=${OUT:-/tmp/device_out}; mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi
export YOLO_OFFLINE=true WANDB_MODE=disabled SIM2REAL_NO_PROGRESS=1 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, torchvision; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'tv', torchvision.__version__)" | tee -a "$OUT/gpu.txt"
t0=$(date +%s)
python3 -m stages.demo --out data/demo && python3 -m stages.ingest --out data/ingest \
  && python3 -m stages.dedupe --ingest data/ingest --out data/dedupe --report /tmp/dedupe.json || exit 1
echo "demo world built in $(( $(date +%s) - t0 )) s"
timeout 330 python3 benchmarks/gpu_yolo.py --images 128 --batch 16 --epochs 2 2>&1 | tee "$OUT/gpu_yolo.txt" | tail -40
timeout 120 python3 benchmarks/bench_cyclegan.py --device cuda --arch full --frames 32 2>&1 | tee "$OUT/cyclegan.txt" | tail -30
