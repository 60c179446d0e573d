"""How much does kgates.TensorBoard slow training down?

Trains the same model on the adding problem with no callback, with
keras.callbacks.TensorBoard and with kgates.TensorBoard (gate_freq=1, default
image_freq), alternating the three in rounds. Two measures:

- the work kgates adds, timed where it happens: the dashboards computed at
  epoch end (trace, gradient flow, histograms) plus the CPU time of drawing
  the images on their own thread, per epoch, over the median epoch time
  (and, within a dashboard, its numbers and its gradient flow apart);
- the side-by-side median epoch times, which on a shared 2-core machine
  wander by +-20% from run to run, so they bound the effect only loosely.

    python experiments/callback_overhead.py            # full size
    python experiments/callback_overhead.py --smoke    # seconds, for tests
    python experiments/callback_overhead.py --size gpu # B=256, T=500, units=512

kgates's per-device choices (how buckets are counted, the gradient flow in one
pass or unrolled, torch's c scans by Triton) can be set (`--counting`, `--flow`,
`--triton-scan`), or taken from timings made on the same machine just before
(`--choose-from`: a `bench.py --variants trace flow` run and `gpu_checks.py`'s
results), so that the dashboards are timed as they would run there.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import tempfile
import time
from unittest import mock

import keras
import numpy as np

import kgates
import kgates.inspect._callback as kgates_callback  # instrumented: its image drawing is timed
from kgates.cells import _backend
from kgates.inspect import _gradflow

WORK = {"dashboards": [], "drawing": [], "explorer": [], "numbers": [], "flow": []}


def _timer(fn, key: str):
    def timed(*args, **kwargs):
        start = time.perf_counter()
        out = fn(*args, **kwargs)  # NumPy out: what the device did is done
        WORK[key].append(time.perf_counter() - start)
        return out

    timed.timed = True
    return timed


def _timed_parts(callback) -> None:
    """Each dashboard's parts timed too: the numbers (trace and statistics on the
    device) and the gradient flow. Both are made when training starts."""
    tracer = callback._tracer
    if not getattr(tracer.summaries, "timed", False):
        tracer.summaries = _timer(tracer.summaries, "numbers")
    if callback._flow is not None and not getattr(callback._flow, "timed", False):
        callback._flow = _timer(callback._flow, "flow")


def _timed_dashboards(callback):
    log_gates = callback.log_gates

    def timed(*args, **kwargs):  # the explorer record it writes is timed apart
        _timed_parts(callback)
        start, records = time.perf_counter(), sum(WORK["explorer"])
        log_gates(*args, **kwargs)
        spent = time.perf_counter() - start - (sum(WORK["explorer"]) - records)
        WORK["dashboards"].append(spent)

    explorer_summary = callback.explorer_summary

    def timed_record(*args, **kwargs):  # the Gates tab's record, part of log_gates
        start = time.perf_counter()
        summary = explorer_summary(*args, **kwargs)
        WORK["explorer"].append(time.perf_counter() - start)
        return summary

    callback.log_gates = timed
    callback.explorer_summary = timed_record
    return callback


def _timed_draw(draw):
    def timed(*args):
        start = time.thread_time()  # CPU time of the drawing thread
        draw(*args)
        WORK["drawing"].append(time.thread_time() - start)

    return timed


FULL = {"samples": 8000, "length": 50, "units": 64, "epochs": 8, "probe": 64, "rounds": 3}
SMOKE = {"samples": 256, "length": 10, "units": 8, "epochs": 2, "probe": 16, "rounds": 1}
# The same task scaled up for a GPU (issue: a dashboard within 3% of an epoch there).
# FULL's 8000 samples at B=256: 32 steps an epoch; one round of 3 epochs fits a lease.
GPU = {"samples": 8192, "length": 500, "units": 512, "epochs": 3, "probe": 256, "rounds": 1,
       "batch": 256}  # fmt: skip
SIZES = {"full": FULL, "smoke": SMOKE, "gpu": GPU}


class EpochTimer(keras.callbacks.Callback):
    """Wall time of every epoch, the callbacks' end-of-epoch work included."""

    def __init__(self):
        super().__init__()
        self.times = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self._start)


def train(size: dict, callback_factory, seed: int = 0) -> list[float]:
    keras.utils.set_random_seed(seed)
    x, y = kgates.adding_problem(size["samples"], size["length"], seed=seed)
    model = keras.Sequential(
        [keras.Input((size["length"], 2)), keras.layers.LSTM(size["units"]), keras.layers.Dense(1)]
    )
    model.compile(keras.optimizers.Adam(1e-3), "mse")
    timer = EpochTimer()
    probe = (x[: size["probe"]], y[: size["probe"]])
    extra = callback_factory(probe)
    # The timer runs last, so it includes the other callbacks' epoch-end work.
    batch = size.get("batch", 64)
    model.fit(x, y, epochs=size["epochs"], batch_size=batch, verbose=0, callbacks=[*extra, timer])
    for callback in extra:
        if hasattr(callback, "wait"):
            callback.wait()
    return timer.times


def choices(bench: dict, checks: dict | None = None) -> dict:
    """The faster way of each per-device choice, from a `bench.py --variants trace flow`
    run (its LSTM at the most units it timed): `counting` ("scatter", "spread",
    "compare"), `one_pass` (the gradient flow) and `triton_scan`, this only where
    `checks` (`gpu_checks.py`'s results) hold the Triton scan and its cases all
    passed. Among the ways of counting, the default and those the checks found
    right, that the run timed (a row that failed there is not); None where it did
    not time the default and another."""
    runs = [r for r in bench.get("results", []) if r["family"] == "lstm"]
    times = max(runs, key=lambda r: r["units"])["median_s"] if runs else {}

    def fastest(rows: dict):  # {choice: row}, the default first: the one that took least
        timed = {choice: times[row]["forward"] for choice, row in rows.items() if row in times}
        return min(timed, key=timed.get) if len(timed) > 1 and next(iter(rows)) in timed else None

    numbers, counted = "dashboard numbers(keras LSTM)", "bucket counts, "
    cases = (checks or {}).get("cases", [])
    layers = [c for c in cases if not c["family"].startswith(counted)]  # and the scans
    checked = any("Triton" in c["family"] for c in layers) and all(c["ok"] for c in layers)
    triton = checked and fastest({True: "dashboard numbers, Triton scan", False: numbers})
    one_pass = "gradient flow, one pass" + (", Triton scan" if triton else "")
    right = {c["family"][len(counted) :] for c in cases if c["family"].startswith(counted)}
    right -= {c["family"][len(counted) :] for c in cases if not c["ok"]}
    counts = {"scatter": numbers}
    counts.update(
        {way: f"dashboard numbers, {way}" for way in ("spread", "compare") if way in right}
    )
    return {
        "counting": fastest(counts),
        "one_pass": fastest({True: one_pass, False: "gradient flow, unrolled"}),
        "triton_scan": bool(triton),
    }


def _read(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for tests")
    parser.add_argument("--size", choices=sorted(SIZES), default="full")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument(
        "--triton-scan",
        action="store_true",
        help="torch on CUDA: every c scan (training, trace, memory spans) by the Triton kernel",
    )
    parser.add_argument(
        "--counting", choices=_backend.COUNTING_METHODS, help="how buckets are counted"
    )
    parser.add_argument("--flow", choices=("one-pass", "unrolled"), help="the gradient flow's way")
    parser.add_argument(
        "--choose-from",
        nargs="+",
        metavar="JSON",
        help="a bench.py run on this machine (and gpu_checks.py's results): the faster "
        "way of each choice not given",
    )
    args = parser.parse_args(argv)
    size = SMOKE if args.smoke else SIZES[args.size]
    chosen = {"counting": None, "one_pass": None, "triton_scan": False}
    if args.choose_from:
        if len(args.choose_from) > 2:
            parser.error("--choose-from: a bench.py JSON, then optionally a gpu_checks.py JSON")
        try:
            chosen = choices(*(_read(path) for path in args.choose_from))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            parser.error(f"--choose-from: not a bench.py and gpu_checks.py JSON ({error!r})")
    chosen["counting"] = args.counting or chosen["counting"]
    if args.flow:
        chosen["one_pass"] = args.flow == "one-pass"
    chosen["triton_scan"] = args.triton_scan or chosen["triton_scan"]
    if chosen["triton_scan"]:
        if not _backend.fused_scan_available(keras.ops.zeros((1,))):
            parser.error("--triton-scan: needs torch on CUDA with Triton installed")
    with (  # and as they were after
        mock.patch.object(_backend, "FUSED_SCAN", chosen["triton_scan"] or _backend.FUSED_SCAN),
        mock.patch.object(_backend, "COUNTING", chosen["counting"]),
        mock.patch.object(_gradflow, "ONE_PASS", chosen["one_pass"]),
    ):
        return measure(size, chosen, args.json)


def measure(size: dict, chosen: dict, json_path: str | None = None) -> dict:
    """Trains with each callback set-up in rounds; prints the measures and writes them
    to `json_path`. `chosen`: the choices in force (recorded)."""
    for timings in WORK.values():
        timings.clear()
    with tempfile.TemporaryDirectory() as logdir:
        runs = {
            "none": lambda probe: [],
            "keras.TensorBoard": lambda probe: [keras.callbacks.TensorBoard(f"{logdir}/keras")],
            "kgates.TensorBoard": lambda probe: [
                _timed_dashboards(kgates.TensorBoard(f"{logdir}/kgates", probe=probe))
            ],
        }
        if importlib.util.find_spec("tensorflow") is None:  # Keras's callback needs it
            del runs["keras.TensorBoard"]
        # Rounds alternate the three set-ups, so that a slow spell of a shared
        # machine hits all of them alike.
        draw = kgates_callback.draw
        kgates_callback.draw = _timed_draw(draw)
        times = {name: [] for name in runs}
        try:
            for _ in range(size["rounds"]):
                for name, factory in runs.items():
                    times[name].append(train(size, factory))
        finally:
            kgates_callback.draw = draw
    # The first epoch compiles the training step (and the dashboards' functions).
    median = {
        name: float(np.median([e for run in t for e in run[1:]])) for name, t in times.items()
    }
    first = {name: float(np.median([run[0] for run in t])) for name, t in times.items()}
    totals = {name: float(np.median([sum(run) for run in t])) for name, t in times.items()}
    # Against Keras's own TensorBoard callback; without TensorFlow (a GPU machine
    # here), against no callback.
    base = "keras.TensorBoard" if "keras.TensorBoard" in runs else "none"
    overhead = median["kgates.TensorBoard"] / median[base] - 1.0
    total = totals["kgates.TensorBoard"] / totals[base] - 1.0
    rounds = max(size["rounds"], 1)
    epochs = size["epochs"] * rounds  # epochs trained, over which drawing is spread
    # Each run logs a dashboard per epoch, then at the end of training the last epoch's
    # images and explorer record (one more call). The first dashboard of each run
    # compiles the tracing and gradient functions. Explorer records (the first and the
    # last, at the default explorer_freq=10) are timed apart: per record, and spread
    # over explorer_freq dashboards.
    per_run = len(WORK["dashboards"]) // rounds
    records = WORK["explorer"]
    record_s = float(np.median(records)) if records else 0.0
    plain = WORK["dashboards"]  # without the records
    kept = [k for k in range(len(plain)) if 0 < k % per_run < size["epochs"]]
    steady = [plain[k] for k in kept]
    parts = {  # of a steady dashboard: its numbers and gradient flow (one call each)
        key: float(np.median([WORK[key][k] for k in kept])) if kept and WORK[key] else None
        for key in ("numbers", "flow")
    }
    added = (np.median(steady) if steady else 0.0) + sum(WORK["drawing"]) / epochs
    work = float(added / median[base])
    compile_s = float(np.median(plain[::per_run]))
    result = {
        "backend": keras.backend.backend(),
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}",
        "size": size,
        "triton_scan": chosen["triton_scan"],
        "choices": chosen,  # None: kgates's default
        "median_epoch_s": median,
        "first_epoch_s": first,
        "base": base,
        "overhead_vs_keras_tensorboard": overhead,
        "overhead_total_with_first_epoch": total,
        "dashboard_s_median": float(np.median(steady)) if steady else None,
        "dashboard_numbers_s_median": parts["numbers"],
        "gradient_flow_s_median": parts["flow"],
        "drawing_cpu_s_per_epoch": float(sum(WORK["drawing"]) / epochs),
        "first_dashboard_s": compile_s,
        "added_work_per_epoch": work,
        "explorer_record_s": record_s,
        "explorer_record_share_of_epoch": record_s / median[base],
        "explorer_share_per_epoch_at_freq_10": record_s / 10 / median[base],
        "runs": rounds,
        "work_s": {k: list(v) for k, v in WORK.items()},  # every timing, for a re-analysis
    }
    print(f"backend {result['backend']}, sizes {size}")
    print(
        f"  choices: counting {chosen['counting'] or 'default'}, gradient flow "
        f"{ {True: 'one pass', False: 'unrolled', None: 'default'}[chosen['one_pass']] }, "
        f"Triton scan {'on' if chosen['triton_scan'] else 'off'}"
    )
    for name in runs:
        print(f"  {name:<20} median epoch {median[name]:.3f} s   first epoch {first[name]:.3f} s")
    print(
        f"work added by kgates per epoch: dashboards {result['dashboard_s_median']:.3f} s + "
        f"drawing {result['drawing_cpu_s_per_epoch']:.3f} s CPU = {work:.1%} of an epoch "
        f"(first dashboard, compiling: {compile_s:.2f} s)"
    )
    if steady:
        shown = {k: "-" if v is None else f"{v:.3f} s" for k, v in parts.items()}
        print(f"  of a dashboard: numbers {shown['numbers']}, gradient flow {shown['flow']}")
    print(
        f"explorer record (Gates tab): {record_s:.3f} s each = "
        f"{result['explorer_record_share_of_epoch']:.1%} of an epoch; at explorer_freq=10 "
        f"{result['explorer_share_per_epoch_at_freq_10']:.2%} per epoch"
    )
    print(
        f"side by side: kgates.TensorBoard vs {base} {overhead:+.1%} per epoch "
        f"(median), {total:+.1%} over the whole run"
    )
    if json_path:
        with open(json_path, "w") as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    main()
