#!/usr/bin/env bash
# CUDA smoke run of the whole digits pipeline plus the CUDA-only tests, for a GPU machine.
# Usage: OUT=/some/dir bash scripts/gpu_check.sh
set -uo pipefail
export PYTHONPATH="$PWD" PYTHONUNBUFFERED=1
OUT="${OUT:-/tmp/robench-gpu}"
mkdir -p "$OUT"
robench() { python3 -m robench.cli "$@"; }
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
time robench train zoo --dataset digits --device cuda --zoo-dir "$OUT/zoo"
time robench attack --whitebox --dataset digits --device cuda --zoo-dir "$OUT/zoo" --results-dir "$OUT/results"
time robench attack --blackbox --attacker all --dataset digits --device cuda --zoo-dir "$OUT/zoo" \
    --results-dir "$OUT/results" | tail -8
time robench experiment noise --dataset digits --device cuda --zoo-dir "$OUT/zoo" --results-dir "$OUT/results"
python3 -m pytest -q -p no:cacheprovider tests/test_losses.py tests/test_rmsprop_tf.py tests/test_data.py \
    -k "cuda or graph" 2>&1 | tail -5
