"""Does the LSTM's additive cell path keep gradients alive? Gradient reach at
initialisation, many seeds, three lengths, against the sigma(b_f)^k prediction.

For each model and length T, `--seeds` fresh initialisations (and fresh
adding-problem probes, seeded alike) get `kgates.gradient_flow` of the MSE loss
at the last step: ||dL/dh_t|| and, for the LSTMs, ||dL/dc_t||. Reach = the
unbroken run of steps back from the last over which the norm stays >= 1% of
its peak (`kgates.reach`).

Prediction for an LSTM's c: along the cell path dc_T/dc_t = f_{t+1} ... f_T,
and at initialisation f ~= sigma(b_f) per unit, so ||dL/dc_{T-k}|| / ||dL/dc_T||
~= sqrt(mean_u sigma(b_u)^{2k}) (units weighted alike); the predicted reach is
the number of k >= 0 at which that is >= 1%. It is computed from each
initialisation's own forget biases (chrono draws them per unit).

Statistics: the median reach per (model, T) with a bootstrap 95% interval
(seeds resampled, 2000 draws); the LSTM (Keras default b_f = 1) against the
SimpleRNN and the GRU by a two-sided Mann-Whitney U test, with the
Hodges-Lehmann shift (median of all pairwise differences) and its bootstrap
95% interval.

    python experiments/gradient_flow_init.py --json experiments/results/gradient_flow_init.json
    python experiments/gradient_flow_init.py --smoke
"""

from __future__ import annotations

import argparse
import json
import time

import keras
import numpy as np
from scipy import stats

import kgates

FULL = {"seeds": 20, "lengths": (60, 200, 500), "units": 32, "probe": 64}
SMOKE = {"seeds": 3, "lengths": (12,), "units": 4, "probe": 8}
BOOTSTRAP = 2000
RATIO = 0.01


def _lstm(units):
    return keras.layers.LSTM(units, unit_forget_bias=False, name="rnn")


MODELS = {  # name: (layer of `units`, forget-gate bias to set, if any)
    "SimpleRNN": (lambda units: keras.layers.SimpleRNN(units, name="rnn"), None),
    "GRU": (lambda units: keras.layers.GRU(units, name="rnn"), None),
    "LSTM b_f=0": (_lstm, 0.0),
    "LSTM b_f=1": (_lstm, 1.0),
    "LSTM b_f=2": (_lstm, 2.0),
    "LSTM chrono": (_lstm, "chrono"),
    "NFG": (lambda units: kgates.LSTM(units, variant="NFG", name="rnn"), None),
}


def build(name: str, size: dict, length: int, seed: int):
    keras.utils.set_random_seed(seed)
    make, forget_bias = MODELS[name]
    layer = make(size["units"])
    model = keras.Sequential([keras.Input((length, 2)), layer, keras.layers.Dense(1)])
    model.compile("adam", "mse")
    units = size["units"]
    if forget_bias == "chrono":
        kgates.set_chrono_bias(layer, timescale=length, seed=seed)
    elif forget_bias is not None:
        bias = np.array(keras.ops.convert_to_numpy(layer.cell.bias))
        bias[units : 2 * units] = forget_bias  # Keras's gate order: i, f, c, o
        layer.cell.bias.assign(bias)
    return model, layer


def predicted_reach(layer, steps: int) -> int | None:
    """Reach of sqrt(mean_u sigma(b_u)^(2k)) over k = 0 .. steps-1 (cell path only)."""
    if isinstance(layer, kgates.LSTM):
        return steps  # NFG: f = 1
    if not isinstance(layer, keras.layers.LSTM):
        return None
    units = layer.cell.units
    b = np.asarray(keras.ops.convert_to_numpy(layer.cell.bias), np.float64)[units : 2 * units]
    keep = 1.0 / (1.0 + np.exp(-b))
    k = np.arange(steps)[:, None]
    curve = np.sqrt(np.mean(keep[None, :] ** (2 * k), axis=1))
    return kgates.reach(curve[::-1], RATIO)


def bootstrap_median(values, rng) -> tuple[float, float, float]:
    values = np.asarray(values, np.float64)
    draws = rng.choice(values, (BOOTSTRAP, len(values)))
    medians = np.median(draws, axis=1)
    return float(np.median(values)), *np.quantile(medians, [0.025, 0.975]).tolist()


def hodges_lehmann(a, b, rng) -> tuple[float, float, float]:
    """Median of all pairwise differences a_i - b_j, with a bootstrap 95% interval."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    shift = float(np.median(a[:, None] - b[None, :]))
    draws = [
        np.median(rng.choice(a, len(a))[:, None] - rng.choice(b, len(b))[None, :])
        for _ in range(BOOTSTRAP)
    ]
    return shift, *np.quantile(draws, [0.025, 0.975]).tolist()


def run(size: dict) -> dict:
    runs = []
    for length in size["lengths"]:
        for name in MODELS:
            flow, model = None, None
            began = time.perf_counter()
            for seed in range(size["seeds"]):
                fresh, layer = build(name, size, length, seed)
                if model is None:  # one compiled gradient per (model, T); weights per seed
                    model, flow = fresh, kgates.GradientFlow(fresh)
                else:
                    model.set_weights(fresh.get_weights())
                x, y = kgates.adding_problem(size["probe"], length, seed=1000 + seed)
                norms = flow(x, y)["rnn"]
                row = {"model": name, "length": length, "seed": seed}
                row["reach_h"] = kgates.reach(norms["h"], RATIO)
                if "c" in norms:
                    row["reach_c"] = kgates.reach(norms["c"], RATIO)
                    row["predicted_c"] = predicted_reach(layer, length)
                runs.append(row)
            took = time.perf_counter() - began
            print(f"T={length} {name}: {size['seeds']} seeds in {took:.1f} s", flush=True)
    return {"size": {**size, "lengths": list(size["lengths"])}, "runs": runs}


def analyse(result: dict, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    runs = result["runs"]
    summary, tests = [], []
    for length in result["size"]["lengths"]:
        by = {}
        for row in runs:
            if row["length"] == length:
                by.setdefault(row["model"], []).append(row)
        for name, rows in by.items():
            entry = {"model": name, "length": length, "seeds": len(rows)}
            for key in ("reach_h", "reach_c", "predicted_c"):
                values = [r[key] for r in rows if r.get(key) is not None]
                if values:
                    entry[key] = bootstrap_median(values, rng)
                    entry[f"{key}_full"] = float(np.mean([v == length for v in values]))
            summary.append(entry)
        lstm = [r["reach_c"] for r in by["LSTM b_f=1"]]
        for other, key in (("SimpleRNN", "reach_h"), ("GRU", "reach_h")):
            values = [r[key] for r in by[other]]
            u, p = stats.mannwhitneyu(lstm, values, alternative="two-sided")
            tests.append(
                {
                    "length": length,
                    "compare": f"LSTM b_f=1 c vs {other} h",
                    "U": float(u),
                    "p": float(p),
                    "hodges_lehmann": hodges_lehmann(lstm, values, rng),
                }
            )
    return {"summary": summary, "tests": tests}


def markdown(analysis: dict) -> str:
    def cell(entry, key):
        if key not in entry:
            return "-"
        m, low, high = entry[key]
        return f"{m:g} [{low:g}, {high:g}] ({entry[f'{key}_full']:.0%})"

    lines = [
        "| T | model | reach of dL/dh | reach of dL/dc | predicted (c path) |",
        "| ---: | --- | ---: | ---: | ---: |",
    ]
    for e in analysis["summary"]:
        lines.append(
            f"| {e['length']} | {e['model']} | {cell(e, 'reach_h')} | {cell(e, 'reach_c')} | "
            f"{cell(e, 'predicted_c')} |"
        )
    lines += [
        "",
        "| T | comparison | U | p | Hodges-Lehmann shift [95% CI] |",
        "| --- | --- | ---: | ---: | --- |",
    ]
    for t in analysis["tests"]:
        shift, low, high = t["hodges_lehmann"]
        lines.append(
            f"| {t['length']} | {t['compare']} | {t['U']:.0f} | {t['p']:.2g} | "
            f"{shift:+g} [{low:+g}, {high:+g}] |"
        )
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for tests")
    parser.add_argument("--json", help="write every run and the analysis here")
    args = parser.parse_args(argv)
    result = run(SMOKE if args.smoke else FULL)
    result["analysis"] = analyse(result)
    print(markdown(result["analysis"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    main()
