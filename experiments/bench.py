"""Speed of kgates against Keras's own recurrent layers, measured side by side.

For each size, times the forward pass (predict_on_batch) and one training step
(train_on_batch; the loss reads h) of:

    keras LSTM             keras.layers.LSTM                 (the reference: 1.00x)
    keras RNN(cell)        keras.layers.RNN(keras.layers.LSTMCell)
    kgates RNN(cell)       keras.layers.RNN(kgates.LSTMCell)
    kgates RNN(cell)+gates   ... with return_gates=True
    kgates LSTM            kgates.LSTM
    kgates LSTM+gates      kgates.LSTM(return_gates=True)
    trace(keras LSTM)      kgates.Tracer on the keras LSTM model (forward only)

(and the same for GRU with --family gru). Medians of --repeats runs after
warm-up, the variants interleaved run by run; ratios are to the Keras layer of
the same size in the same run. Prints a table and writes JSON.

    python experiments/bench.py                       # CPU sizes
    python experiments/bench.py --sizes gpu           # B 32/256, T 50/500, units 128/512
    python experiments/bench.py --smoke               # seconds, for tests
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import time

import keras
import numpy as np

import kgates
from kgates.tracing import Tracer

SIZES = {
    "smoke": {"batch": [4], "steps": [6], "units": [8]},
    "cpu": {"batch": [32, 256], "steps": [50], "units": [128]},
    "gpu": {"batch": [32, 256], "steps": [50, 500], "units": [128, 512]},
}
FEATURES = 32


class _H(keras.layers.Layer):
    """The h part of a packed output (what a model would read)."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def call(self, y):
        return y[..., : self.units]


def _variants(family: str, units: int) -> dict:
    keras_layer = keras.layers.LSTM if family == "lstm" else keras.layers.GRU
    keras_cell = keras.layers.LSTMCell if family == "lstm" else keras.layers.GRUCell
    cell = kgates.LSTMCell if family == "lstm" else kgates.GRUCell
    fused = kgates.LSTM if family == "lstm" else kgates.GRU
    name = family.upper()
    return {
        f"keras {name}": lambda: keras_layer(units, return_sequences=True),
        "keras RNN(cell)": lambda: keras.layers.RNN(keras_cell(units), return_sequences=True),
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
    forward = keras.Model(inputs, y)
    h = _H(units)(y)
    train = keras.Model(inputs, keras.layers.Dense(1)(h[:, -1]))
    train.compile(keras.optimizers.SGD(1e-3), "mse")
    return forward, train


def _time(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def bench(family: str, batch: int, steps: int, units: int, repeats: int) -> dict:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch, steps, FEATURES)).astype("float32")
    y = rng.normal(size=(batch, 1)).astype("float32")
    runs = {}
    for name, make in _variants(family, units).items():
        forward, train = _models(make, steps, units)
        runs[name] = {
            "forward": lambda f=forward: np.asarray(f.predict_on_batch(x)),
            "train": lambda t=train: t.train_on_batch(x, y),
        }
    reference = f"keras {family.upper()}"
    tracer = Tracer(_models(_variants(family, units)[reference], steps, units)[0])
    runs[f"trace(keras {family.upper()})"] = {"forward": lambda: tracer(x)}
    for fns in runs.values():  # warm-up: compile
        for fn in fns.values():
            fn()
            fn()
    times = {name: {kind: [] for kind in fns} for name, fns in runs.items()}
    for _ in range(repeats):  # interleaved, so a slow spell hits every variant
        for name, fns in runs.items():
            for kind, fn in fns.items():
                times[name][kind] += _time(fn, 1)
    medians = {n: {k: float(np.median(v)) for k, v in t.items()} for n, t in times.items()}
    ratios = {n: {k: v / medians[reference][k] for k, v in m.items()} for n, m in medians.items()}
    return {"batch": batch, "steps": steps, "units": units, "median_s": medians, "ratio": ratios}


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", choices=sorted(SIZES), default="cpu")
    parser.add_argument("--smoke", action="store_true", help="same as --sizes smoke")
    parser.add_argument("--family", choices=["lstm", "gru"], default="lstm")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    sizes = SIZES["smoke" if args.smoke else args.sizes]
    repeats = 2 if args.smoke else args.repeats
    results = []
    print(
        f"backend {keras.backend.backend()}, keras {keras.__version__}, "
        f"accelerator: {kgates.fused.accelerator_available()}, {platform.processor() or 'cpu'}"
    )
    for batch, steps, units in itertools.product(sizes["batch"], sizes["steps"], sizes["units"]):
        result = bench(args.family, batch, steps, units, repeats)
        results.append(result)
        print(f"\nB={batch} T={steps} units={units}   (median s, ratio to the Keras layer)")
        print(f"{'':<24}{'forward':>18}{'train step':>22}")
        for name, medians in result["median_s"].items():
            cells = [
                f"{medians[k]:>9.4f} {result['ratio'][name][k]:>6.2f}x" if k in medians else ""
                for k in ("forward", "train")
            ]
            print(f"{name:<24}{cells[0]:>18}{cells[1]:>22}")
    if args.json:
        meta = {
            "backend": keras.backend.backend(),
            "keras": keras.__version__,
            "machine": platform.platform(),
            "accelerator": kgates.fused.accelerator_available(),
        }
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "results": results}, f, indent=2)
    return results


if __name__ == "__main__":
    main()
