#!/usr/bin/env bash
# Everything that needs a GPU, in one run: the CUDA-only tests, the benchmarks (JSON), the
# Fashion-MNIST quick pipeline whose report is committed under reports/fashion-mnist, and
# kernel profiles of the attack's input-gradient step (cuDNN's first convolution and the
# im2col GEMM of robench.models.im2col).
#
# Usage: OUT=/some/dir DATA_ROOT=data bash scripts/gpu_check.sh
#   OUT        where logs, benchmark JSON and the report archive go (default /tmp/robench-gpu)
#   DATA_ROOT  holds FashionMNIST/raw/*.gz (default ./data; /usr/share/datasets is also searched)
#   SAMPLES    test images of the attack benchmark (default 2048)
# torchattacks and ART must be importable for the attack benchmark.
set -uo pipefail
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
OUT="${OUT:-/tmp/robench-gpu}"
DATA_ROOT="${DATA_ROOT:-data}"
SAMPLES="${SAMPLES:-2048}"
WORK="$(mktemp -d)"
mkdir -p "$OUT"
robench() { python3 -m robench.cli "$@"; }
stamp() { echo "== $(date -u +%H:%M:%S) $*"; }

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"

stamp "CUDA tests"
timeout 180 python3 -m pytest -q -p no:cacheprovider -rs tests/test_trainer.py tests/test_losses.py \
    tests/test_rmsprop_tf.py tests/test_data.py tests/test_attacks.py tests/test_fast_kernels.py -k "cuda or graph or bf16" 2>&1 | tail -15

stamp "benchmarks: train, loss"
timeout 150 python3 -m benchmarks train --device cuda --out "$OUT/bench-train.json" 2>&1 | tail -12
timeout 60 python3 -m benchmarks loss --device cuda --out "$OUT/bench-loss.json" 2>&1 | tail -8

stamp "robench run --dataset fashion-mnist --preset quick"
time timeout 330 python3 -m robench.cli -v run --dataset fashion-mnist --preset quick --device cuda \
    --data-root "$DATA_ROOT" --zoo-dir "$WORK/zoo" --reports-dir "$WORK/reports" 2>&1 | grep -v "^\s*$" | tail -12
tar -czf "$OUT/fashion-mnist-report.tgz" -C "$WORK/reports" fashion-mnist
tar -czf "$OUT/fashion-mnist-cards.tgz" -C "$WORK/zoo" --exclude='*.safetensors' fashion-mnist

stamp "benchmarks: attack matrix and white-box runs on $SAMPLES images"
timeout 240 python3 -m benchmarks attacks --device cuda --samples "$SAMPLES" --out "$OUT/bench-attacks.json" \
    2>&1 | tail -15
timeout 150 python3 -m benchmarks whitebox --device cuda --samples "$SAMPLES" --out "$OUT/bench-whitebox.json" \
    2>&1 | tail -15
stamp "profile of the attack input-gradient step (mnist-cnn, batch 2048)"
for precision in bf16 fp32; do
    timeout 60 python3 -m benchmarks.profile_step --device cuda --batch 2048 --precision "$precision" --shapes --graph \
        --rows 40 >> "$OUT/attack-step-profile.txt" 2>&1
done
timeout 60 python3 -m benchmarks.profile_step --device cuda --batch 2048 --precision bf16 --shapes --rows 40 \
    --first-conv im2col >> "$OUT/attack-step-profile-im2col.txt" 2>&1
grep -E "ms per step" "$OUT/attack-step-profile.txt" "$OUT/attack-step-profile-im2col.txt"
stamp "done"
