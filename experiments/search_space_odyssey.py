"""Greff et al.'s "LSTM: A Search Space Odyssey" on one task, with kgates tune.

Every variant gets its own random search over the same space (learning rate,
units, dropout), like the paper's per-variant random searches; the variants are
then compared with V by Welch's t-test over their trials, as in the paper
(Section 5). Does the ordering hold: NFG and NOAF clearly worse, CIFG and NP no
worse than V?

    python experiments/search_space_odyssey.py     # full size: ~5 min on 2 CPU cores (TensorFlow)
    python experiments/search_space_odyssey.py --smoke --directory /tmp/odyssey
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np
from scipy import stats

import kgates

TASK = "code"  # next-character prediction on Python source: closest to the paper's tasks
FULL = {
    "sizes": {"samples": 1000, "length": 50},
    "trials": 3,
    "epochs": 5,
    "space": {"units": (32, 64), "learning_rate": (1e-3, 3e-2), "dropout": (0.0, 0.2)},
}
SMOKE = {
    "sizes": {"samples": 32, "length": 8},
    "trials": 1,
    "epochs": 1,
    "space": {"units": 4, "learning_rate": 1e-2, "dropout": 0.0},
}
COMMON = {"layers": 1, "clipnorm": 1.0, "forget_bias": "one"}


def run(directory: str, size: dict, variants=tuple(kgates.VARIANTS), seed: int = 0) -> dict:
    """One search per variant in `directory/VARIANT`; returns the scores by variant."""
    scores = {}
    for variant in variants:
        where = os.path.join(directory, variant)
        kgates.tune(
            where,
            task=TASK,
            cells=(variant,),
            max_trials=size["trials"],
            epochs=size["epochs"],
            seed=seed,
            sizes=size["sizes"],
            space={**size["space"], **COMMON},
            gate_freq=max(size["epochs"] - 1, 1),  # dashboards after the first and last epoch
            verbose=0,
        )
        trials = kgates.load_trials(where)
        scores[variant] = {
            "scores": [t["score"] for t in trials if t["completed"]],
            "failed": sum(t["status"] != "COMPLETED" for t in trials),
            "saturation": [t["saturation"] for t in trials if t["completed"]],
        }
    return scores


def compare(scores: dict, reference: str = "V") -> list[dict]:
    """Per variant: median, best, and Welch's t-test against `reference` (lower is better)."""
    rows = []
    base = scores[reference]["scores"]
    for variant, result in scores.items():
        s = result["scores"]
        row = {"variant": variant, "trials": len(s), "failed": result["failed"]}
        if s:
            row.update(median=float(np.median(s)), best=float(np.min(s)))
        if variant != reference and len(s) > 1 and len(base) > 1:
            test = stats.ttest_ind(s, base, equal_var=False)
            row["t"], row["p"] = float(test.statistic), float(test.pvalue)
        rows.append(row)
    return rows


def markdown(rows: list[dict]) -> str:
    lines = [
        "| variant | trials | median val_loss | best | vs V: t | p (Welch) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in sorted(rows, key=lambda r: r.get("median", np.inf)):
        t = f"{r['t']:+.2f}" if "t" in r else "-"
        p = f"{r['p']:.3f}" if "p" in r else "-"
        lines.append(
            f"| {r['variant']} | {r['trials']} | {r.get('median', np.nan):.4f} | "
            f"{r.get('best', np.nan):.4f} | {t} | {p} |"
        )
    return "\n".join(lines)


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--directory", default="runs/odyssey")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for tests")
    parser.add_argument("--variants", default=",".join(kgates.VARIANTS))
    parser.add_argument("--json", help="write the scores and comparison here")
    args = parser.parse_args(argv)
    size = SMOKE if args.smoke else FULL
    scores = run(args.directory, size, tuple(args.variants.split(",")))
    rows = compare(scores, "V" if "V" in scores else next(iter(scores)))
    print(markdown(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"size": size, "scores": scores, "comparison": rows}, f, indent=1)
    return rows


if __name__ == "__main__":
    main()
