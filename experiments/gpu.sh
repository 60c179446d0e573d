#!/usr/bin/env bash
# Every GPU check and timing of issue "gates and dashboards at cuDNN speed" in one
# command, for the lent GPU machine (shared/GPU.md: JAX and torch, no TensorFlow).
# From the project root, with Keras and Keras Tuner wheels in .whl (carried):
#
#     OUT=/tmp/out bash experiments/gpu.sh               # every part
#     OUT=/tmp/out PARTS="1 4 3" bash experiments/gpu.sh # some parts, in this order
#
# Each step runs under a time limit, so that a short lease still returns the first
# ones. A lease of 15 minutes: PARTS="1 4 3" in one 600 s call (9.3 minutes at
# most), then PARTS=2 at once, on the warm machine (4 minutes at most); part 5
# when time is left. The parts:
#   1. the Bidirectional check (JAX, torch; float32, TF32 off, tolerance 1e-4), on
#      torch also the Triton scan against float64 and the LSTM cases through it;
#      then an LSTM's gradient flow in one pass of its layer against the unrolled cell,
#      and the bucket counts by every way of counting against NumPy (2 x 2^24+7 entries,
#      exactly; each way timed);
#   4. the trace, the dashboards' numbers (on JAX also with the bucket counts spread or
#      by compare and sum), the c scans and the gradient flow (one pass and unrolled)
#      at B=256 (the dashboards' default probe), T=500, units 512 (then 128);
#   3. the dashboards' cost on the callback task scaled up (B=256, T=500, units=512),
#      with each per-device choice (counting, the flow's way, torch's Triton scan) the
#      faster in part 4, where it ran before in the same call, and part 1 passed;
#   2. torch's speed table: Keras's layer against kgates's with and without gates,
#      LSTM then GRU, B 32/256, T 50/500, units 128/512, with the gate check; its
#      LSTM rows time the c scan as one Triton kernel beside the stepped one;
#   5. JAX's speed table, as part 2 (measured on an H200 on 2026-12-04; its layers
#      have not changed since).
# Under $OUT: log.txt (everything printed) and one JSON per step and backend;
# the tables are printed again last.
set -u
S=$(mktemp -d)
python3 -m pip install -q --no-index --no-deps --no-compile --target "$S" .whl/*.whl || exit 1
export PYTHONPATH="$S:$PWD" OUT="${OUT:-/tmp/kgates-gpu}" PYTHONUNBUFFERED=1
mkdir -p "$OUT"
LOG="$OUT/log.txt"
step() {  # step SECONDS BACKEND COMMAND...: run, logged, cut at SECONDS
  local seconds=$1 backend=$2
  shift 2
  echo "== $(date +%T) KERAS_BACKEND=$backend $*" >>"$LOG"
  KERAS_BACKEND=$backend timeout "$seconds" "$@" >>"$LOG" 2>&1
  echo "== exit $? at $(date +%T)" >>"$LOG"
}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv >>"$LOG" 2>&1
PARTS="${PARTS:-1 4 3 2 5}"
part() {  # part N: run part N
  case $1 in
  1)
    for backend in jax torch; do  # float32: TF32 off
      NVIDIA_TF32_OVERRIDE=0 JAX_DEFAULT_MATMUL_PRECISION=highest \
        step 75 $backend python3 experiments/gpu_checks.py --json "$OUT/checks_$backend.json"
    done
    ;;
  2)
    step 240 torch python3 experiments/bench.py --sizes gpu --family lstm gru \
      --variants layers --repeats 5 --json "$OUT/bench_torch.json"
    ;;
  3)
    for backend in jax torch; do  # with the choices of parts 4 and 1, where they ran
      local choose=()
      if [ -f "$OUT/trace_$backend.json" ]; then
        choose=(--choose-from "$OUT/trace_$backend.json")
        [ -f "$OUT/checks_$backend.json" ] && choose+=("$OUT/checks_$backend.json")
      fi
      step 90 $backend python3 experiments/callback_overhead.py --size gpu ${choose[@]+"${choose[@]}"} \
        --json "$OUT/overhead_$backend.json"
    done
    ;;
  4)
    for backend in jax torch; do  # JAX has two more rows: the counting candidates
      local seconds=100
      [[ $backend == jax ]] && seconds=120
      step $seconds $backend python3 experiments/bench.py --batch 256 --steps 500 \
        --units 512 128 --variants trace scan flow --repeats 5 --json "$OUT/trace_$backend.json"
    done
    ;;
  5)
    step 240 jax python3 experiments/bench.py --sizes gpu --family lstm gru --variants layers \
      --repeats 5 --json "$OUT/bench_jax.json"
    ;;
  esac
}
for n in $PARTS; do part "$n"; done
grep -A18 "^Bidirectional" "$LOG"
grep "^== \|largest\|^backend\|^  choices\|^  [nk].*median epoch\|^work added\|^  of a dashboard\|^explorer record\|^side by side" "$LOG"
for f in "$OUT"/bench_*.json "$OUT"/trace_*.json; do
  [ -f "$f" ] && echo "$f" && KERAS_BACKEND=jax python3 experiments/bench.py --table "$f" 2>/dev/null
done
