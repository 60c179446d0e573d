"""A small end-to-end example: train on the adding problem, then look at the gates."""

from __future__ import annotations

import time

import keras
import numpy as np

from kgates.cells import _backend
from kgates.cells._gru import GRUCell
from kgates.cells._lstm import LSTMCell
from kgates.cells._variants import VARIANTS
from kgates.inspect._stats import SIGMOID_GATES, saturation
from kgates.inspect._trace import trace
from kgates.study._choices import CELLS, DEMO
from kgates.study._data import adding_problem
from kgates.study._interrupt import DeferredInterrupt


def make_cell(code: str, units: int, **kwargs):
    """A kgates cell from a code: a Greff variant (`NP` = Keras's LSTM) or `GRU`."""
    if code == "GRU":
        return GRUCell(units, **kwargs)
    if code in VARIANTS:
        return LSTMCell(units, variant=code, **kwargs)
    raise ValueError(f"unknown cell {code!r}; expected one of {CELLS}.")


def run(
    cell: str = "NP",
    units: int = DEMO["units"],
    length: int = DEMO["length"],
    samples: int = DEMO["samples"],
    epochs: int = DEMO["epochs"],
    seed: int = 0,
    verbose: int = 2,
) -> dict:
    """Trains `RNN(cell) -> Dense(1)` on the adding problem and reports its gates.

    Returns:
        A dict with the test MSE, the MSE of always predicting the mean, and
        per-gate statistics over the test sequences.
    """
    keras.utils.set_random_seed(seed)
    x, y = adding_problem(samples, length, seed=seed)
    x_test, y_test = adding_problem(max(samples // 4, 1), length, seed=seed + 1)
    rnn = keras.layers.RNN(make_cell(cell, units))
    model = keras.Sequential([keras.Input((length, 2)), rnn, keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(1e-2, clipnorm=1.0), loss="mse")
    print(
        f"Training RNN({cell}, {units} units) on the adding problem: {samples} sequences "
        f"of {length} steps, {epochs} epochs, {_backend.name()} backend."
    )
    start = time.perf_counter()
    with DeferredInterrupt() as interrupt:  # Ctrl-C: at a batch's end, not inside an op
        model.fit(
            x, y, epochs=epochs, batch_size=64, validation_split=0.1, verbose=verbose,
            callbacks=[interrupt],
        )  # fmt: skip
    seconds = time.perf_counter() - start
    mse = float(model.evaluate(x_test, y_test, verbose=0))
    baseline = float(np.mean((y_test - y.mean()) ** 2))

    gates = {k: v.astype("float64") for k, v in trace(model, x_test)[rnn.name].items()}
    marked = x_test[..., 1] == 1.0
    stats = {}
    for name, value in gates.items():
        stats[name] = {
            "mean": float(value.mean()),
            "mean_marked": float(value[marked].mean()),
            "mean_unmarked": float(value[~marked].mean()),
            "max_abs": float(np.abs(value).max()),
        }
        if name in SIGMOID_GATES:  # saturation after Karpathy et al. 2015
            stats[name]["left"], stats[name]["right"] = saturation(value)
    result = {"mse": mse, "baseline_mse": baseline, "seconds": seconds, "gates": stats}
    # The unit whose write gate best separates marked from other steps: an
    # LSTM opens i there; a GRU lowers z (h = z * h_tm1 + (1 - z) * g).
    gate = next((g for g in ("i", "z") if g in gates and g not in rnn.cell.pin), None)
    if gate:
        per_unit = np.stack([gates[gate][marked].mean(0), gates[gate][~marked].mean(0)])
        contrast = per_unit[0] - per_unit[1] if gate == "i" else per_unit[1] - per_unit[0]
        unit = int(np.argmax(contrast))
        result["writer"] = (gate, unit, float(per_unit[0, unit]), float(per_unit[1, unit]))
    print(report(result))
    return result


def report(result: dict) -> str:
    lines = [
        "",
        f"Test MSE {result['mse']:.4f} (always predicting the mean: "
        f"{result['baseline_mse']:.4f}); trained in {result['seconds']:.0f} s.",
        "",
        "What the gates did on the test sequences (mean over steps and units):",
        "",
        "       mean at     mean at       saturated",
        "gate   marked step other steps   < 0.1    > 0.9    max |value|",
    ]
    for name, s in result["gates"].items():
        saturation = (
            f"{s['left']:>6.1%}   {s['right']:>6.1%}" if "left" in s else f"{'-':>6}   {'-':>6}"
        )
        lines.append(
            f"{name:<6} {s['mean_marked']:>11.3f} {s['mean_unmarked']:>11.3f}"
            f"   {saturation}   {s['max_abs']:>11.3f}"
        )
    writer = result.get("writer")
    if writer:
        gate, unit, at_marked, elsewhere = writer
        lines += [
            "",
            f"Most selective unit: {gate}[{unit}] is {at_marked:.2f} at the marked steps and "
            f"{elsewhere:.2f} elsewhere:",
            "it lets the values to add into the state and keeps the rest out."
            if abs(at_marked - elsewhere) > 0.3
            else "no unit picks out the marked steps clearly yet (train longer?).",
        ]
    return "\n".join(lines)
