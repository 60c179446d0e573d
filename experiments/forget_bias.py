"""Does a forget-gate bias of 1 help? b_f = 0, 1, 2, chrono and chrono with b_i = 0,
many seeds, each arm at its own learning rate (a staged study: see `staged.py`).

Arms differ only in the initial forget (and input) gate biases of one `kgates.LSTM`
layer of 64 units: b_f = 0, 1 (Keras's `unit_forget_bias`), 2; chrono (Tallec &
Ollivier 2018: b_f = log U(1, T - 1), b_i = -b_f); chrono with b_i = 0. Seed s gives
every arm the same training data (fresh per seed), the same other initial weights
and the same batch order. Each arm is compared with b_f = 1 (Keras's default).

    python experiments/forget_bias.py pilot --task adding-100 --worker 0/2 &
    python experiments/forget_bias.py pilot --task adding-100 --worker 1/2; wait
    # again until the pilot has nothing left: a grid grows past an end that wins
    python experiments/forget_bias.py main --task adding-100 --worker 0/2 &
    python experiments/forget_bias.py main --task adding-100 --worker 1/2; wait
    python experiments/forget_bias.py report --task adding-100 \\
        --json experiments/results/forget_bias_adding-100.json
    python experiments/forget_bias.py pilot --task adding-100 --smoke --out /tmp/fb  # tiny
"""

from __future__ import annotations

import os
import sys
import types

import keras

import kgates

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import staged  # noqa: E402 (this folder's shared study runner)

ARMS = ("b_f=0", "b_f=1", "b_f=2", "chrono", "chrono, b_i=0")
COMPARISONS = [(arm, "b_f=1") for arm in ARMS if arm != "b_f=1"]
LRS = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
PILOT_SEEDS = (100, 101)
SEEDS = tuple(range(12))
TASKS = {  # name: (kgates task, sizes, epochs, "solved" below this validation loss)
    "adding-100": ("adding", {"samples": 4000, "length": 100}, 25, 0.01),  # mean: 0.167
    "copy-30": ("copy", {"samples": 4000, "delay": 30}, 25, 0.04),  # blanks+guess: 0.416
    "music": ("music", {"samples": 2000, "length": 64}, 20, None),
}
SMOKE = {"adding-100": ("adding", {"samples": 32, "length": 8}, 2, 0.01)}
OUT = "experiments/results/forget_bias"
UNITS, SMOKE_UNITS = 64, 4


def _set_gate_bias(layer, gate: str, values) -> None:
    cell = layer.cell
    gates = list(getattr(cell, "weighted_gates", "ifgo"))
    bias = keras.ops.convert_to_numpy(cell.bias).copy()
    k = gates.index(gate)
    bias[k * cell.units : (k + 1) * cell.units] = values
    cell.bias.assign(bias)


def build(arm: str, task, seed: int, lr: float, smoke: bool = False) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(task.x_train.shape[1:])
    layer = kgates.LSTM(
        SMOKE_UNITS if smoke else UNITS,
        unit_forget_bias=False,
        return_sequences=task.sequence_output,
        name="rnn",
    )
    model = keras.Model(inputs, task.head(layer(inputs)))
    if arm.startswith("chrono"):
        kgates.set_chrono_bias(layer, task.timescale, seed)
        if arm == "chrono, b_i=0":
            _set_gate_bias(layer, "i", 0.0)
    else:
        _set_gate_bias(layer, "f", float(arm.removeprefix("b_f=")))
    model.compile(keras.optimizers.Adam(lr, clipnorm=1.0), loss=task.loss())
    return model


def main(argv=None) -> dict | None:
    return staged.main(types.SimpleNamespace(**globals()), argv)  # this module, however loaded


if __name__ == "__main__":
    main()
