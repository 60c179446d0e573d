"""Forget-gate bias 0, 1 or chrono (Tallec & Ollivier 2018) on a long copy delay.

An LSTM (Keras's, variant NP) must recall 5 symbols across a long blank delay.
Only the initial forget (and, for chrono, input) bias differs between the
three settings; seeds change the weights and batch order. Writes the learning
curves (validation recall accuracy per epoch) as a PNG.

    python experiments/forget_bias.py                  # full size, ~10 min on 2 CPU cores
    python experiments/forget_bias.py --smoke
"""

from __future__ import annotations

import argparse
import json

import keras
import keras_tuner
import numpy as np
from matplotlib.figure import Figure

import kgates

FORGET_BIASES = ("zero", "one", "chrono")  # the hypermodel's forget_bias choices
FULL = {
    "sizes": {"samples": 3000, "delay": 60, "symbols": 5},
    "units": 64,
    "seeds": 3,
    "epochs": 15,
}
SMOKE = {"sizes": {"samples": 32, "delay": 4, "symbols": 2}, "units": 4, "seeds": 1, "epochs": 2}
HYPERPARAMETERS = {
    "cell": "NP",
    "layers": 1,
    "learning_rate": 3e-3,
    "dropout": 0.0,
    "clipnorm": 1.0,
}


def run(size: dict) -> dict:
    task = kgates.make_task("copy", seed=0, **size["sizes"])
    curves = {}
    for bias in FORGET_BIASES:
        curves[bias] = []
        for seed in range(size["seeds"]):
            keras.utils.set_random_seed(seed)
            hp = keras_tuner.HyperParameters()
            values = {**HYPERPARAMETERS, "units": size["units"], "forget_bias": bias}
            for name, value in values.items():
                hp.Fixed(name, value)
            model = kgates.GateHyperModel(task, cells=("NP",), seed=seed).build(hp)
            history = model.fit(
                task.x_train, task.y_train, batch_size=64, epochs=size["epochs"],
                validation_data=(task.x_val, task.y_val), verbose=0,
            )  # fmt: skip
            curves[bias].append([float(v) for v in history.history["val_accuracy"]])
            print(f"forget bias {bias}, seed {seed}: final val_accuracy {curves[bias][-1][-1]:.3f}")
    return {"task": task.sizes, "timescale": task.timescale, "curves": curves}


def plot(result: dict, path: str) -> None:
    fig = Figure(figsize=(6.5, 3.6))
    ax = fig.add_subplot()
    for bias, runs in result["curves"].items():
        runs = np.asarray(runs)
        epochs = np.arange(1, runs.shape[1] + 1)
        ax.plot(epochs, runs.mean(0), label=f"{bias} (mean of {len(runs)})")
        ax.fill_between(epochs, runs.min(0), runs.max(0), alpha=0.2)
    ax.axhline(1 / 8, color="grey", linestyle=":", label="chance")
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation recall accuracy")
    ax.set_title(f"Copy task, delay {result['task']['delay']}: forget-gate bias")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.subplots_adjust(bottom=0.15)
    fig.savefig(path, dpi=90)


def markdown(result: dict) -> str:
    lines = ["| forget bias | final val accuracy, mean (min-max) | epochs to 50% (mean) |"]
    lines.append("| --- | ---: | ---: |")
    for bias, runs in result["curves"].items():
        final = [r[-1] for r in runs]
        reached = [next((k + 1 for k, v in enumerate(r) if v >= 0.5), None) for r in runs]
        shown = [r for r in reached if r is not None]
        to_half = f"{np.mean(shown):.1f} ({len(shown)}/{len(runs)} runs)" if shown else "never"
        lines.append(
            f"| {bias} | {np.mean(final):.3f} ({min(final):.3f}-{max(final):.3f}) | {to_half} |"
        )
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for tests")
    parser.add_argument("--json", help="write the learning curves here")
    parser.add_argument("--png", help="write the plot here")
    args = parser.parse_args(argv)
    result = run(SMOKE if args.smoke else FULL)
    print(markdown(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    if args.png:
        plot(result, args.png)
    return result


if __name__ == "__main__":
    main()
