"""How far back do gradients reach? SimpleRNN, GRU, LSTM and NFG on the adding problem.

Each model reads a long sequence and predicts the sum of the two marked values
from its last state. `kgates.gradient_flow` gives ||dL/dh_t|| (and ||dL/dc_t||
for the LSTMs) at every step, at initialisation and after training; "reach"
is how many steps back the gradient stays above 1% of its peak.

    python experiments/gradient_flow.py                # full size, ~5 min on 2 CPU cores
    python experiments/gradient_flow.py --smoke
"""

from __future__ import annotations

import argparse
import json

import keras
import numpy as np
from matplotlib.figure import Figure

import kgates

FULL = {"samples": 4000, "length": 60, "units": 32, "epochs": 12, "probe": 128}
SMOKE = {"samples": 32, "length": 8, "units": 4, "epochs": 1, "probe": 8}
LEARNING_RATE = 1e-2
MODELS = {
    "SimpleRNN": lambda units: keras.layers.SimpleRNN(units, name="rnn"),
    "GRU": lambda units: keras.layers.GRU(units, name="rnn"),
    "LSTM": lambda units: keras.layers.LSTM(units, name="rnn"),
    "NFG": lambda units: kgates.LSTM(units, variant="NFG", name="rnn"),
}


def run(size: dict) -> dict:
    x, y = kgates.adding_problem(size["samples"], size["length"], seed=0)
    probe = (x[: size["probe"]], y[: size["probe"]])
    results = {}
    for name, make in MODELS.items():
        keras.utils.set_random_seed(0)
        model = keras.Sequential(
            [keras.Input(x.shape[1:]), make(size["units"]), keras.layers.Dense(1)]
        )
        model.compile(keras.optimizers.Adam(LEARNING_RATE, clipnorm=1.0), "mse")
        flows = {"init": kgates.gradient_flow(model, *probe)["rnn"]}
        history = model.fit(
            x, y, batch_size=64, epochs=size["epochs"], validation_split=0.2, verbose=0
        )
        flows["trained"] = kgates.gradient_flow(model, *probe)["rnn"]
        results[name] = {
            "val_mse": float(history.history["val_loss"][-1]),
            **{
                f"{when}_{state}": [float(v) for v in flow[state]]
                for when, flow in flows.items()
                for state in flow
            },
            **{
                f"reach_{when}_{state}": kgates.reach(flow[state])
                for when, flow in flows.items()
                for state in flow
            },
        }
        r = results[name]
        print(
            f"{name}: reach of dL/dh {r['reach_init_h']} steps at init, "
            f"{r['reach_trained_h']} trained; val MSE {r['val_mse']:.4f}"
        )
    return {"size": size, "models": results}


def plot(result: dict, path: str) -> None:
    fig = Figure(figsize=(9, 3.6))
    for k, when in enumerate(("init", "trained")):
        ax = fig.add_subplot(1, 2, k + 1)
        for name, r in result["models"].items():
            for state, style in (("h", "-"), ("c", "--")):
                norms = np.asarray(r.get(f"{when}_{state}", []))
                if norms.size:
                    back = np.arange(len(norms))[::-1]
                    ax.plot(back, norms / norms.max(), style, label=f"{name} {state}")
        ax.set_yscale("log")
        ax.set_ylim(1e-8, 2)
        ax.set_xlabel("steps before the last")
        ax.set_title(f"||dL/d state_t|| / peak, {when}")
        ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.subplots_adjust(bottom=0.15, wspace=0.25)
    fig.savefig(path, dpi=90)


def markdown(result: dict) -> str:
    lines = [
        "| model | reach of dL/dh, init | trained | reach of dL/dc, init | trained | val MSE |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, r in result["models"].items():
        c = [str(r[k]) if k in r else "-" for k in ("reach_init_c", "reach_trained_c")]
        lines.append(
            f"| {name} | {r['reach_init_h']} | {r['reach_trained_h']} | {c[0]} | {c[1]} | "
            f"{r['val_mse']:.4f} |"
        )
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for tests")
    parser.add_argument("--json", help="write the norms and reaches here")
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
