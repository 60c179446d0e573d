"""LSTM or GRU? Both at the same parameter budget, several seeds each, on two tasks.

The GRU gets as many units as fit the LSTM's parameter count (within one unit).
Everything else is equal (Adam, learning rate, clipping, epochs, data); each
seed changes the initial weights and the batch order. The difference is called
real when the seeds separate the cells at p < 0.05: Welch's t-test (means)
and the Mann-Whitney U test (ranks: robust to one seed that fails to learn).

    python experiments/lstm_vs_gru.py                  # full size, ~10 min on 2 CPU cores
    python experiments/lstm_vs_gru.py --smoke
"""

from __future__ import annotations

import argparse
import json

import keras
import keras_tuner
import numpy as np
from scipy import stats

import kgates

FULL = {
    "tasks": {"adding": {"samples": 2000, "length": 50}, "copy": {"samples": 2000, "delay": 20}},
    "lstm_units": 48,
    "seeds": 5,
    "epochs": 12,
}
SMOKE = {
    "tasks": {"adding": {"samples": 32, "length": 6}},
    "lstm_units": 4,
    "seeds": 2,
    "epochs": 1,
}
HYPERPARAMETERS = {"layers": 1, "learning_rate": 1e-2, "dropout": 0.0, "clipnorm": 1.0}


def build(task, cell: str, units: int) -> keras.Model:
    hp = keras_tuner.HyperParameters()
    for name, value in {"cell": cell, "units": units, **HYPERPARAMETERS}.items():
        hp.Fixed(name, value)
    if cell == "GRU":
        hp.Fixed("reset_after", True)
    else:
        hp.Fixed("forget_bias", "one")
    return kgates.GateHyperModel(task, cells=(cell,)).build(hp)


def matching_units(task, lstm_units: int) -> int:
    """GRU units whose parameter count is closest to an LSTM of `lstm_units`."""
    budget = build(task, "NP", lstm_units).count_params()
    counts = {u: build(task, "GRU", u).count_params() for u in range(lstm_units, 2 * lstm_units)}
    return min(counts, key=lambda u: abs(counts[u] - budget))


def run(size: dict) -> list[dict]:
    rows = []
    for name, sizes in size["tasks"].items():
        task = kgates.make_task(name, seed=0, **sizes)
        units = {"NP": size["lstm_units"], "GRU": matching_units(task, size["lstm_units"])}
        scores = {}
        for cell, n in units.items():
            scores[cell] = []
            for seed in range(size["seeds"]):
                keras.utils.set_random_seed(seed)
                model = build(task, cell, n)
                history = model.fit(
                    task.x_train, task.y_train, batch_size=64, epochs=size["epochs"],
                    validation_data=(task.x_val, task.y_val), verbose=0,
                )  # fmt: skip
                curve = history.history[task.objective]
                scores[cell].append(float(min(curve) if task.direction == "min" else max(curve)))
                print(f"{name} {cell}({n}) seed {seed}: {task.objective} {scores[cell][-1]:.4f}")
        rows.append(
            {
                "task": name,
                "objective": task.objective,
                "units": units,
                "params": {c: build(task, c, n).count_params() for c, n in units.items()},
                "scores": scores,
                **significance(scores),
            }
        )
    return rows


def significance(scores: dict) -> dict:
    """Two-sided p-values of LSTM vs GRU over the seeds: Welch's t-test and Mann-Whitney U."""
    welch = stats.ttest_ind(scores["NP"], scores["GRU"], equal_var=False)
    ranks = stats.mannwhitneyu(scores["NP"], scores["GRU"], alternative="two-sided")
    return {"p": float(welch.pvalue), "p_rank": float(ranks.pvalue)}


def markdown(rows: list[dict]) -> str:
    lines = [
        "| task | objective | LSTM (units, params) | GRU (units, params) | LSTM mean ± sd | "
        "GRU mean ± sd | p (Welch) | p (Mann-Whitney) |",
        "| --- | --- | --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        cells = [f"{np.mean(r['scores'][c]):.4f} ± {np.std(r['scores'][c], ddof=1):.4f}"
                 for c in ("NP", "GRU")]  # fmt: skip
        lines.append(
            f"| {r['task']} | {r['objective']} | {r['units']['NP']}, {r['params']['NP']} | "
            f"{r['units']['GRU']}, {r['params']['GRU']} | {cells[0]} | {cells[1]} | "
            f"{r['p']:.3g} | {r['p_rank']:.3g} |"
        )
    return "\n".join(lines)


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for tests")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    rows = run(SMOKE if args.smoke else FULL)
    print(markdown(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return rows


if __name__ == "__main__":
    main()
