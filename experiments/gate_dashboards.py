"""Train a small model and write a TensorBoard run that shows every gate dashboard.

Two stacked layers, a stock Keras LSTM and a kgates GRU, learn the adding
problem with padded (masked) sequences; kgates.TensorBoard logs gate
histograms, saturation, cell-state traces and gradient flow every epoch
(images every few).

    python experiments/gate_dashboards.py                 # writes runs/gate_dashboards
    python experiments/gate_dashboards.py --smoke --logdir /tmp/x
    kgates board runs/gate_dashboards
"""

from __future__ import annotations

import argparse

import keras
import numpy as np

import kgates

FULL = {"samples": 6000, "length": 40, "units": 32, "epochs": 20, "image_freq": 4}
SMOKE = {"samples": 128, "length": 8, "units": 4, "epochs": 2, "image_freq": 1}


def main(argv=None) -> keras.Model:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logdir", default="runs/gate_dashboards")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for tests")
    args = parser.parse_args(argv)
    size = SMOKE if args.smoke else FULL
    keras.utils.set_random_seed(0)

    x, y = kgates.adding_problem(size["samples"], size["length"], seed=0)
    # Pad a third of the sequences: the marked values stay, the tail is cut.
    rng = np.random.default_rng(0)
    lengths = np.where(rng.random(len(x)) < 1 / 3, size["length"] * 3 // 4, size["length"])
    for k, n in enumerate(lengths):
        y[k] = (x[k, :n, 0] * x[k, :n, 1]).sum()
        x[k, n:] = 0.0

    inputs = keras.Input((size["length"], 2))
    h = keras.layers.Masking(0.0)(inputs)
    h = keras.layers.LSTM(size["units"], return_sequences=True, name="lstm")(h)
    h = keras.layers.RNN(kgates.GRUCell(size["units"]), name="gru")(h)
    model = keras.Model(inputs, keras.layers.Dense(1)(h))
    model.compile(keras.optimizers.Adam(3e-3, clipnorm=1.0), "mse")

    board = kgates.TensorBoard(
        args.logdir, probe=(x[:64], y[:64]), gate_freq=1, image_freq=size["image_freq"]
    )
    model.fit(
        x,
        y,
        epochs=size["epochs"],
        batch_size=64,
        validation_split=0.1,
        callbacks=[board],
        verbose=2,
    )
    print(f"Wrote {args.logdir}; look at it with: kgates board {args.logdir}")
    return model


if __name__ == "__main__":
    main()
