#!/usr/bin/env bash
# Every GPU check and timing of issue "gates and dashboards at cuDNN speed" in one
# command, for the lent GPU machine (shared/GPU.md: JAX and torch, no TensorFlow).
# From the project root, with Keras and Keras Tuner wheels in .whl (carried):
#
#     OUT=/tmp/out bash experiments/gpu.sh
#
# Per backend: the Bidirectional check, the gate check (float32: TF32 off), the
# dashboards' cost on the callback task scaled up (B=256, T=500, units=512), then
# the speed table at the GPU sizes. JSON under $OUT; tables on stdout, the speed
# tables last. Each step has a time limit, so a short lease still returns the first.
set -u
S=$(mktemp -d)
python3 -m pip install -q --no-index --no-deps --no-compile --target "$S" .whl/*.whl || exit 1
export PYTHONPATH="$S:$PWD" OUT="${OUT:-/tmp/kgates-gpu}"
mkdir -p "$OUT"
for backend in jax torch; do
  export KERAS_BACKEND=$backend
  timeout 120 python3 experiments/gpu_checks.py --json "$OUT/bidirectional_$backend.json"
  NVIDIA_TF32_OVERRIDE=0 JAX_DEFAULT_MATMUL_PRECISION=highest timeout 120 \
    python3 experiments/bench.py --check --family lstm gru --json "$OUT/check_$backend.json"
  timeout 240 python3 experiments/callback_overhead.py --size gpu --json "$OUT/overhead_$backend.json"
done
for backend in jax torch; do
  KERAS_BACKEND=$backend timeout 300 python3 experiments/bench.py --sizes gpu --family lstm gru \
    --repeats 5 --json "$OUT/bench_$backend.json"
done
