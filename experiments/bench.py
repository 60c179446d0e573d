"""Speed of kgates against Keras's own recurrent layers, measured side by side.

For each size, times the forward pass (predict_on_batch of the sum of every
output at each step, so that all of it is computed on the device and little
comes back) and one training step (train_on_batch; the loss reads h) of:

    keras LSTM             keras.layers.LSTM                 (the reference: 1.00x)
    keras RNN(cell)        keras.layers.RNN(keras.layers.LSTMCell)
    ... wide output        ... whose output is h repeated as wide as h and the gates
    kgates RNN(cell)       keras.layers.RNN(kgates.LSTMCell)
    kgates RNN(cell)+gates   ... with return_gates=True
    kgates LSTM            kgates.LSTM
    kgates LSTM+gates      kgates.LSTM(return_gates=True)
    ... Triton scan        the same with c by one Triton kernel each way (torch on CUDA:
                           `kgates.cells._backend.FUSED_SCAN`; LSTM only)
    keras LSTM h->host     the keras LSTM's h sequence as a NumPy array (forward only)
    trace(keras LSTM)      kgates.Tracer on that model: h and every gate as NumPy
    ... on device          the same work, each array summed over its units coming back
    dashboard numbers      what kgates.TensorBoard computes each dashboard (histograms,
                           saturation, means, memory spans), on the device
    ... Triton scan        the trace on the device and the dashboards' numbers with their
                           scans by the Triton kernel (torch on CUDA; LSTM only)
    ... spread             the same with the bucket counts spread over 256 copies of the
                           buckets (`kgates.cells._backend.COUNTING`; not torch)
    ... compare            ... and counted by compare and sum, no scatter (not torch)
    dashboard ... NumPy    the same from every gate brought to the host (as before)
    c scan, associative    the LSTM's c recurrence alone, by keras.ops.associative_scan
    c scan, doubling       ... by log2(T) passes of shifted copies
    c scan, sequential     ... and by keras.ops.scan (kgates picks per backend and device)
    ... Triton             ... by one Triton kernel (torch on CUDA)
    gradient flow, one pass  kgates.GradientFlow of the keras LSTM's model (as the
                           dashboards run it; no targets), in one pass of the layer
                           (the fused kernel where there is one; a GPU's default)
    ... unrolled           ... with the cell unrolled step by step (a CPU's default)
    ... Triton scan        the one pass with its scans by the Triton kernel (torch on
                           CUDA; LSTM only)

(and the same for the GRU with --family gru, or both with --family lstm gru;
the c scans for the LSTM only). Medians of --repeats runs after warm-up, the
variants interleaved in a new random order each round; ratios are to the Keras
layer of the same size in the same run. Prints a table and writes JSON.

    python experiments/bench.py                       # CPU sizes
    python experiments/bench.py --sizes gpu           # B 32/256, T 50/500, units 128/512
    python experiments/bench.py --smoke               # seconds, for tests
    python experiments/bench.py --check               # only the gate check
    python experiments/bench.py --table run.json      # a saved run as Markdown
    python experiments/bench.py --variants layers     # only the Keras and kgates layers

`--variants` picks groups of rows: `layers` (the Keras layer, kgates's layer with and
without gates), `cells` (the `RNN(cell)` rows), `trace` (h->host, the trace, the
dashboards' numbers), `numpy` (the dashboards' numbers via NumPy), `scan` (the c
scans), `flow` (the gradient flows); all by default. The Keras layer is always
timed: it is every ratio's base.

`--check` first compares the gates of `kgates.LSTM`/`GRU` recomputed from the
fused kernel's h (`gate_path="recompute"`) with those the kgates cell steps
(`gate_path="step"`), without and with a padding mask, and prints the largest
difference: on a GPU this is the tolerance to state (TF32 matmuls unless
`NVIDIA_TF32_OVERRIDE=0`).
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import os
import platform
import time
from functools import partial
from unittest import mock

import keras
import numpy as np

import kgates
from kgates.cells import _backend
from kgates.inspect import _gradflow as gradflow
from kgates.inspect._events import histogram_proto
from kgates.inspect._memory import Memory, has_memory
from kgates.inspect._stats import gate_statistics, valid_values

SIZES = {
    "smoke": {"batch": [4], "steps": [6], "units": [8]},
    "cpu": {"batch": [32, 256], "steps": [50], "units": [128]},
    "gpu": {"batch": [32, 256], "steps": [50, 500], "units": [128, 512]},
}
FEATURES = 32


class _Summed(keras.layers.Layer):
    """The sum over the last axis: (B, T, n) -> (B, T).

    A time average would do too, but XLA's CPU reduction over the time axis of
    a scan's stacked output costs more than the scan itself for wide outputs.
    """

    def call(self, y):
        return keras.ops.sum(y, axis=-1)


class _H(keras.layers.Layer):
    """The h part of a packed output (what a model would read)."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def call(self, y):
        return y[..., : self.units]


def _wide(cell, copies):
    """Keras's cell with an output as wide as h and its gates: h, repeated.

    Its cost over the plain cell is what the loop pays to carry a wider
    output (writing it at each step, stacking it, and the backward of both),
    whatever the cell computes.
    """

    class Wide(cell):
        def __init__(self, units, **kwargs):
            super().__init__(units, **kwargs)
            self.output_size = units * copies

        def call(self, inputs, states, training=False):
            h, new_states = super().call(inputs, states, training=training)
            return keras.ops.concatenate([h] * copies, axis=-1), new_states

    return Wide


GROUPS = ("layers", "cells", "trace", "numpy", "scan", "flow")


def _variants(family: str, units: int) -> dict:
    keras_layer = keras.layers.LSTM if family == "lstm" else keras.layers.GRU
    keras_cell = keras.layers.LSTMCell if family == "lstm" else keras.layers.GRUCell
    cell = kgates.LSTMCell if family == "lstm" else kgates.GRUCell
    fused = kgates.LSTM if family == "lstm" else kgates.GRU
    name = family.upper()
    return {
        f"keras {name}": lambda: keras_layer(units, return_sequences=True),
        "keras RNN(cell)": lambda: keras.layers.RNN(keras_cell(units), return_sequences=True),
        "keras RNN(cell), wide output": lambda: keras.layers.RNN(
            _wide(keras_cell, 1 + len(cell.gate_names))(units), return_sequences=True
        ),
        "kgates RNN(cell)": lambda: keras.layers.RNN(cell(units), return_sequences=True),
        "kgates RNN(cell)+gates": lambda: keras.layers.RNN(
            cell(units, return_gates=True), return_sequences=True
        ),
        f"kgates {name}": lambda: fused(units, return_sequences=True),
        f"kgates {name}+gates": lambda: fused(units, return_sequences=True, return_gates=True),
    }


def _models(make_layer, steps: int, units: int):
    inputs = keras.Input((steps, FEATURES))
    y = make_layer()(inputs)
    # The forward pass returns the sum of every output (h and gates) at each step:
    # everything is computed on the device, and only (batch, steps) comes back.
    forward = keras.Model(inputs, _Summed()(y))
    h = _H(units)(y)
    train = keras.Model(inputs, keras.layers.Dense(1)(h[:, -1]))
    train.compile(keras.optimizers.SGD(1e-3), "mse")
    return forward, train


class _Scan(keras.layers.Layer):
    """c_t = f_t * c_tm1 + b_t for made-up f (in (0, 1)) and b of shape (B, T, units)."""

    def __init__(self, method, units, **kwargs):
        super().__init__(**kwargs)
        self.method, self.units = method, units

    def call(self, x):
        b = keras.ops.tile(x, (1, 1, self.units))
        return kgates.linear_scan(keras.ops.sigmoid(b), b, self.method)


def _scan_model(method, steps, units):
    inputs = keras.Input((steps, 1))
    return keras.Model(inputs, _Scan(method, units)(inputs)[:, -1])


def _with(setting: str, value, fn):
    """`fn`, run with `kgates.cells._backend.<setting>` set to `value` (e.g. FUSED_SCAN:
    torch's sequential scan as one Triton kernel each way; COUNTING: how buckets are
    counted), as it was after."""

    def run():
        with mock.patch.object(_backend, setting, value):
            return fn()

    return run


def _numbers_on_the_host(tracer, x) -> None:
    for gates in tracer(x).values():
        gate_statistics(gates)
        for values in gates.values():
            histogram_proto(valid_values(values))
        if has_memory(gates):
            np.median(Memory.from_gates(gates).span.compressed())


def _time(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _trace_runs(family: str, units: int, steps: int, x, groups) -> dict:
    """The trace rows: a stock Keras layer's h to the host, its trace, the dashboards'
    numbers on the device (and, with `numpy`, via NumPy as before)."""
    if "trace" not in groups and "numpy" not in groups:
        return {}
    name = family.upper()
    inputs = keras.Input((steps, FEATURES))
    stock = keras.Model(inputs, _variants(family, units)[f"keras {name}"]()(inputs))
    tracer = kgates.Tracer(stock)
    tracer(x)  # the tracing model, with the layer's weights in
    runs = {}
    if "trace" in groups:
        # What a trace is fairly compared with: the layer's h sequence, brought to the host.
        runs[f"keras {name} h->host"] = {"forward": lambda: stock.predict_on_batch(x)}
        runs[f"trace(keras {name})"] = {"forward": lambda: tracer(x)}
        # The same work without the copies to the host: each array summed over its units.
        traced = tracer._gate_model(False)
        summed = [_Summed()(v) for k, v in traced.output.items() if not k.endswith("/_valid")]
        on_device = keras.Model(traced.input, summed)
        runs[f"trace(keras {name}) on device"] = {"forward": lambda: on_device.predict_on_batch(x)}
        # The dashboards' numbers (histograms, saturation, means, memory spans), computed
        # on the device as kgates.TensorBoard does.
        runs[f"dashboard numbers(keras {name})"] = {"forward": lambda: tracer.summaries(x)}
        if family == "lstm" and _backend.fused_scan_available(keras.ops.zeros((1,))):
            # torch on CUDA: the trace's c and the memory spans by the Triton scan
            rows = {"trace on device": "trace(keras LSTM) on device"}
            rows["dashboard numbers"] = "dashboard numbers(keras LSTM)"
            for short, row in rows.items():
                runs[f"{short}, Triton scan"] = {
                    "forward": _with("FUSED_SCAN", True, runs[row]["forward"])
                }
        if keras.backend.backend() != "torch":  # (torch counts with bincount, eagerly)
            # The same with the bucket counts spread over copies of the buckets, or by
            # compare and sum (`_backend.COUNTING`), candidates for GPUs.
            for method in ("spread", "compare"):
                counted = kgates.Tracer(stock)
                run = _with("COUNTING", method, partial(counted.summaries, x))
                runs[f"dashboard numbers, {method}"] = {"forward": run}
    if "numpy" in groups:  # as it was done before: every gate to the host, then NumPy
        runs["dashboard numbers via NumPy"] = {"forward": lambda: _numbers_on_the_host(tracer, x)}
    return runs


def _flow_runs(family: str, units: int, steps: int, x, groups) -> dict:
    """The dashboards' gradient flow of the stock layer's model (no targets: the loss
    is half the mean squared h), in one pass of its layer and unrolled."""
    if "flow" not in groups:
        return {}
    name = family.upper()
    inputs = keras.Input((steps, FEATURES))
    model = keras.Model(inputs, _variants(family, units)[f"keras {name}"]()(inputs))
    ways = {"one pass": True, "unrolled": False}
    runs = {}
    for way, one_pass in ways.items():
        flow = kgates.GradientFlow(model)
        with mock.patch.object(gradflow, "ONE_PASS", one_pass):  # read at a part's first call
            flow(x)
        runs[f"gradient flow, {way}"] = {"forward": lambda f=flow: f(x)}
    if family == "lstm" and _backend.fused_scan_available(keras.ops.zeros((1,))):
        one_pass = runs["gradient flow, one pass"]["forward"]
        runs["gradient flow, one pass, Triton scan"] = {
            "forward": _with("FUSED_SCAN", True, one_pass)
        }
    return runs


def bench(family: str, batch: int, steps: int, units: int, repeats: int, groups=GROUPS) -> dict:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch, steps, FEATURES)).astype("float32")
    y = rng.normal(size=(batch, 1)).astype("float32")
    reference = f"keras {family.upper()}"
    runs = {}
    for name, make in _variants(family, units).items():
        group = "cells" if "RNN(cell)" in name else "layers"
        if name != reference and group not in groups:  # the reference is every ratio's base
            continue
        forward, train = _models(make, steps, units)
        runs[name] = {
            "forward": lambda f=forward: np.asarray(f.predict_on_batch(x)),
            "train": lambda t=train: t.train_on_batch(x, y),
        }
    # torch on CUDA: c by one Triton kernel, a candidate (off by default until measured)
    triton = family == "lstm" and _backend.fused_scan_available(keras.ops.zeros((1,)))
    if triton and "layers" in groups:
        name = "kgates LSTM+gates"
        runs[f"{name}, Triton scan"] = {
            k: _with("FUSED_SCAN", True, f) for k, f in runs[name].items()
        }
    runs.update(_trace_runs(family, units, steps, x, groups))
    runs.update(_flow_runs(family, units, steps, x, groups))
    if "scan" in groups and family == "lstm":  # c from (f, i*g): which is faster
        for method in kgates.SCAN_METHODS:
            scan = _scan_model(method, steps, units)
            runs[f"c scan, {method}"] = {"forward": lambda m=scan: m.predict_on_batch(x[..., :1])}
        if triton:
            runs["c scan, sequential, Triton"] = {
                "forward": _with("FUSED_SCAN", True, runs["c scan, sequential"]["forward"])
            }
    failed = {}  # rows that could not run here, and why
    for name, fns in runs.items():
        try:
            for fn in fns.values():  # warm-up: compile
                fn()
                fn()
        except Exception as error:  # e.g. a candidate out of device memory: the rest go on
            if name == reference:
                raise
            failed[name] = f"{type(error).__name__}: {(str(error) or '-').splitlines()[0][:300]}"
            gc.collect()
            if keras.backend.backend() == "torch":  # what torch keeps cached, back
                import torch

                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
    runs = {name: fns for name, fns in runs.items() if name not in failed}
    jobs = [(name, kind, fn) for name, fns in runs.items() for kind, fn in fns.items()]
    times = {name: {kind: [] for kind in fns} for name, fns in runs.items()}
    for _ in range(repeats):  # interleaved in a new order each round, so that a slow
        for i in rng.permutation(len(jobs)):  # spell or a predecessor's garbage hits all
            name, kind, fn = jobs[i]
            gc.collect()
            times[name][kind].append(_time(fn))
    medians = {n: {k: float(np.median(v)) for k, v in t.items()} for n, t in times.items()}
    ratios = {n: {k: v / medians[reference][k] for k, v in m.items()} for n, m in medians.items()}
    result = {"batch": batch, "steps": steps, "units": units, "median_s": medians}
    return {**result, "ratio": ratios, **({"failed": failed} if failed else {})}


def check(family: str, batch: int = 64, steps: int = 100, units: int = 128) -> dict:
    """Largest |recomputed - stepped| per output (h and every gate), unmasked and masked."""
    layer_type = kgates.LSTM if family == "lstm" else kgates.GRU
    rng = np.random.default_rng(1)
    x = rng.normal(size=(batch, steps, FEATURES)).astype("float32")
    lengths = rng.integers(steps // 2, steps + 1, size=batch)
    mask = np.arange(steps)[None] < lengths[:, None]
    layers = {
        path: layer_type(units, return_sequences=True, return_gates=True, gate_path=path)
        for path in ("recompute", "step")
    }
    for layer in layers.values():
        layer(x[:1])
    weights = layers["step"].get_weights()  # Keras's initializers: a model before training
    result = {}
    for masked in (False, True):
        out = {}
        for path, layer in layers.items():
            layer.set_weights(weights)
            y = layer(x, mask=mask if masked else None)
            out[path] = kgates.split_gates(keras.ops.convert_to_numpy(y), layer)
        result["masked" if masked else "unmasked"] = {
            name: float(np.max(np.abs(out["recompute"][name] - out["step"][name])))
            for name in out["step"]
        }
    return result


def _device() -> str:
    """The accelerator's name, or the processor's."""
    backend = keras.backend.backend()
    if kgates.accelerator_available():
        if backend == "jax":
            import jax

            return jax.devices()[0].device_kind
        if backend == "torch":
            import torch

            return torch.cuda.get_device_name()
        return "GPU"
    return platform.processor() or "cpu"


def _versions() -> dict:
    versions = {"keras": keras.__version__, "numpy": np.__version__}
    module = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}
    backend = keras.backend.backend()
    if backend in module:
        versions[backend] = __import__(module[backend]).__version__
    return versions


def _print_result(result: dict) -> None:
    print(f"\nB={result['batch']} T={result['steps']} units={result['units']}", end="")
    print("   (median s, ratio to the Keras layer)")
    print(f"{'':<30}{'forward':>18}{'train step':>22}")
    for name, medians in result["median_s"].items():
        cells = [
            f"{medians[k]:>9.4f} {result['ratio'][name][k]:>6.2f}x" if k in medians else ""
            for k in ("forward", "train")
        ]
        print(f"{name:<30}{cells[0]:>18}{cells[1]:>22}", flush=True)
    for name, error in result.get("failed", {}).items():
        print(f"{name:<30}  failed: {error}", flush=True)


def markdown(report: dict) -> str:
    """A saved run as Markdown tables (one per family): a row per size, forward / train ratios."""
    tables = []
    for family in dict.fromkeys(r.get("family", "lstm") for r in report["results"]):
        rows = [r for r in report["results"] if r.get("family", "lstm") == family]
        names = list(dict.fromkeys(name for r in rows for name in r["ratio"]))
        lines = [
            "| B, T, units | " + " | ".join(names) + " |",
            "|" + " --- |" * (len(names) + 1),
        ]
        for r in rows:
            cells = [" / ".join(f"{v * 1000:.1f}" for v in r["median_s"][names[0]].values())]
            cells[0] += " ms"
            cells += [
                " / ".join(f"{v:.2f}" for v in r["ratio"][n].values()) if n in r["ratio"] else "-"
                for n in names[1:]
            ]
            lines.append(
                f"| {r['batch']}, {r['steps']}, {r['units']} | " + " | ".join(cells) + " |"
            )
        tables.append("\n".join(lines))
    return "\n\n".join(tables)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", choices=sorted(SIZES), default="cpu")
    parser.add_argument("--smoke", action="store_true", help="same as --sizes smoke")
    parser.add_argument("--family", choices=["lstm", "gru"], nargs="+", default=["lstm"])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--json", help="write the results here (after each size)")
    parser.add_argument("--check", action="store_true", help="only the gate check")
    parser.add_argument(
        "--variants", choices=GROUPS, nargs="+", default=list(GROUPS), help="groups of rows"
    )
    for dim in ("batch", "steps", "units"):
        parser.add_argument(
            f"--{dim}", type=int, nargs="+", help=f"{dim} values (instead of those of --sizes)"
        )
    parser.add_argument("--table", metavar="JSON", help="print a saved run as Markdown; no timing")
    args = parser.parse_args(argv)
    if args.table:
        with open(args.table) as f:
            report = json.load(f)
        print(markdown(report))
        return report
    sizes = SIZES["smoke" if args.smoke else args.sizes]
    sizes = {dim: getattr(args, dim) or sizes[dim] for dim in sizes}
    repeats = 2 if args.smoke else args.repeats
    report = {
        "meta": {
            "backend": keras.backend.backend(),
            **_versions(),
            "machine": platform.platform(),
            "device": _device(),
            "accelerator": kgates.accelerator_available(),
            "tf32_override": os.environ.get("NVIDIA_TF32_OVERRIDE"),
            "jax_matmul_precision": os.environ.get("JAX_DEFAULT_MATMUL_PRECISION"),
        },
        "check": {
            family: check(family, *((4, 6, 8) if args.smoke else ())) for family in args.family
        },
        "results": [],
    }
    print(json.dumps(report["meta"]), flush=True)
    for family, worst in report["check"].items():
        print(f"{family}: largest |recomputed - stepped| gate:", json.dumps(worst), flush=True)

    def save():  # after the check and after every size: a cut-off run keeps what it did
        if args.json:  # whole or not at all: a step cut mid-write leaves the last one
            with open(args.json + ".part", "w") as f:
                json.dump(report, f, indent=2)
            os.replace(args.json + ".part", args.json)

    save()
    grid = itertools.product(sizes["batch"], sizes["steps"], sizes["units"])
    for family, (batch, steps, units) in itertools.product([] if args.check else args.family, grid):
        result = {"family": family, **bench(family, batch, steps, units, repeats, args.variants)}
        report["results"].append(result)
        _print_result(result)
        save()
    return report


if __name__ == "__main__":
    main()
