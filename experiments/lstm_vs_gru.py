"""LSTM or GRU? Equal parameters at two sizes, each arm at its own learning rate, 15
seeds, on the adding problem (T = 100 and 200), copy (T = 50) and music (a staged
study: see `staged.py`).

Arms: `kgates.LSTM` (Keras's, forget bias 1) of 32 and of 128 units, and for each
the `kgates.GRU` (`reset_after=True`) whose parameter count on the task is closest
("GRU~32", "GRU~128"). A pilot picks each arm's learning rate from a 6-point grid
(grown past an end when the best rate is there); 15 seeds then run every arm at
its rate (seed s: the same data for every arm). Each GRU is compared with its
LSTM pair by pair: the Hodges-Lehmann shift of the test loss, Wilcoxon, Holm;
"GRU ~ LSTM" by two one-sided tests within the task's margin (`MARGINS`, fixed
before any run); time to solve by Kaplan-Meier and log-rank.

    python experiments/lstm_vs_gru.py pilot --task adding-100 --worker 0/2 &
    python experiments/lstm_vs_gru.py pilot --task adding-100 --worker 1/2; wait
    # again until the pilot has nothing left: a grid grows past an end that wins
    python experiments/lstm_vs_gru.py main --task adding-100 --worker 0/2 &
    python experiments/lstm_vs_gru.py main --task adding-100 --worker 1/2; wait
    python experiments/lstm_vs_gru.py report --task adding-100 --json lstm_vs_gru_adding-100.json

At the full size a task is 4 arms x (6 rates x 2 pilot seeds + 15 seeds) = 108 runs,
and 2 more for each step a grid grows.
"""

from __future__ import annotations

import os
import sys
import types

import keras

import kgates

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import staged  # noqa: E402 (this folder's shared study runner)

SIZES = (32, 128)
ARMS = tuple(f"{cell}{size}" for size in SIZES for cell in ("LSTM-", "GRU~"))
COMPARISONS = [(f"GRU~{size}", f"LSTM-{size}") for size in SIZES]
LRS = (3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
PILOT_SEEDS = (100, 101)
SEEDS = tuple(range(15))
TASKS = {  # name: (kgates task, sizes, epochs, "solved" below this validation loss)
    "adding-100": ("adding", {"samples": 4000, "length": 100}, 25, 0.01),  # mean: 0.167
    "adding-200": ("adding", {"samples": 4000, "length": 200}, 25, 0.01),
    "copy-50": ("copy", {"samples": 4000, "delay": 50}, 25, 0.03),  # blanks+guess: 0.297
    "music": ("music", {"samples": 2000, "length": 64}, 20, None),  # key Markov: 8.96
}
# "GRU ~ LSTM" within these, in each task's loss (fixed before any run): a tenth of
# the gap between the simple baselines and a solved task.
MARGINS = {"adding-100": 0.01, "adding-200": 0.01, "copy-50": 0.03, "music": 0.1}
SMOKE = {"adding-100": ("adding", {"samples": 32, "length": 8}, 2, 0.01)}
OUT = "experiments/results/lstm_vs_gru"
SMOKE_SIZES = {32: 4, 128: 8}


def _model(task, cell: str, units: int) -> keras.Model:
    inputs = keras.Input(task.x_train.shape[1:])
    layer = (kgates.LSTM if cell == "LSTM" else kgates.GRU)(
        units, return_sequences=task.sequence_output, name="rnn"
    )
    return keras.Model(inputs, task.head(layer(inputs)))


def parameters(cell: str, units: int, features: int, outputs: int) -> int:
    """Weights of one recurrent layer and the dense head (Keras's LSTM: 4 gates with
    one bias each; GRU with `reset_after=True`: 3 gates with two biases each)."""
    if cell == "LSTM":
        recurrent = 4 * (features * units + units * units + units)
    else:
        recurrent = 3 * (features * units + units * units + 2 * units)
    return recurrent + units * outputs + outputs


def units_of(arm: str, task, smoke: bool = False) -> int:
    """An arm's units: the LSTM's size, or the GRU's closest to that LSTM in weights."""
    cell, size = arm[:3].rstrip("-") if arm.startswith("GRU") else "LSTM", int(arm[-3:].strip("-~"))
    units = SMOKE_SIZES[size] if smoke else size
    if cell == "LSTM":
        return units
    features, outputs = task.x_train.shape[-1], task.outputs or task.targets
    budget = parameters("LSTM", units, features, outputs)
    return min(
        range(1, 2 * units), key=lambda u: abs(parameters("GRU", u, features, outputs) - budget)
    )


def build(arm: str, task, seed: int, lr: float, smoke: bool = False) -> keras.Model:
    units = units_of(arm, task, smoke)
    keras.utils.set_random_seed(seed)
    model = _model(task, "GRU" if arm.startswith("GRU") else "LSTM", units)
    model.compile(keras.optimizers.Adam(lr, clipnorm=1.0), loss=task.loss())
    return model


def main(argv=None) -> dict | None:
    return staged.main(types.SimpleNamespace(**globals()), argv)  # this module, however loaded


if __name__ == "__main__":
    main()
