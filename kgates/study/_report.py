"""`kgates report`: a search directory summarised in markdown and pictures.

Reads only the files a search leaves (`kgates_search.json`, Keras Tuner's
`trial.json`, kgates's `gates.json`); it never writes into the search itself,
only `report.md` and `report/*.png` next to it.
"""

from __future__ import annotations

import glob
import os

import numpy as np

from kgates.inspect._stats import SIGMOID_GATES as GATES
from kgates.study._choices import SPACE
from kgates.study._compare import (
    comparison,
    fanova_importance,
    fmt,
    held_out,
    scores_by_cell,
)
from kgates.study._directory import PROJECT, atomic_write, read_json, stored_search
from kgates.study._figures import (
    completed,
    expected_best_curves,
    learning_curves,
    pinned_gates,
    saturation_by_cell,
    score_by_cell,
    score_vs_learning_rate,
)
from kgates.study._own_data import spec_objective, spec_task
from kgates.study._paired import paired_comparison

MIN_TRIALS_FOR_IMPORTANCE = 6


def cell_label(values: dict) -> str:
    """The cell a trial ran, e.g. `NP`, `CIFG`, `GRU`, `GRU(reset_after=False)`."""
    cell = values.get("cell", "?")
    if cell == "GRU" and values.get("reset_after", True) in (False, 0):
        return "GRU(reset_after=False)"
    return cell


def load_trials(directory: str) -> list[dict]:
    """Every trial of the search in `directory`.

    Returns:
        One dict per trial: `id`, `status`, `score`, `values` (its
        hyperparameters), `cell` (see `cell_label`), `gates` (its final gate
        statistics by layer), `message`, `completed` (finished with a finite
        score) and `saturation` (see `trial_saturation`).
    """
    trials = []
    for path in sorted(glob.glob(os.path.join(directory, PROJECT, "trial_*", "trial.json"))):
        data = read_json(path, ("trial_id", "hyperparameters", "status"))
        folder = os.path.dirname(path)
        gates, curves = {}, {}
        if os.path.exists(os.path.join(folder, "gates.json")):
            gates = read_json(os.path.join(folder, "gates.json"))
        if os.path.exists(os.path.join(folder, "curves.json")):
            curves = read_json(os.path.join(folder, "curves.json"), ("executions",))
        values = {
            k: v for k, v in data["hyperparameters"]["values"].items() if not k.startswith("tuner/")
        }
        score = data.get("score")
        trial = {
            "id": data["trial_id"],
            "status": data["status"],
            "score": float(score) if score is not None else None,
            "values": values,
            "cell": cell_label(values),
            "gates": gates,
            "message": (data.get("message") or "").strip().splitlines()[-1:],
            "curves": curves.get("executions", []),
            "test": curves.get("test"),
        }
        trial["completed"] = completed(trial)
        trial["saturation"] = trial_saturation(trial)
        spans = [layer["memory_span"] for layer in gates.values() if "memory_span" in layer]
        trial["memory_span"] = float(np.mean(spans)) if spans else None
        trials.append(trial)
    return trials


def trial_saturation(trial: dict) -> dict[str, float]:
    """Share of a trial's gate activations below 0.1 or above 0.9, by gate.

    Averaged over its layers; gates pinned by the variant are left out (a
    constant gate is not a saturated one).
    """
    pinned = pinned_gates(trial["values"].get("cell"))
    shares: dict[str, list[float]] = {}
    for layer in trial["gates"].values():
        for gate in GATES:
            stats = layer.get(gate)
            if gate not in pinned and stats and "left" in stats:
                shares.setdefault(gate, []).append(stats["left"] + stats["right"])
    return {gate: float(np.mean(v)) for gate, v in shares.items()}


def importance(trials: list[dict], seed: int = 0) -> list[tuple[str, float]] | None:
    """Hyperparameter importance by fANOVA (optuna's evaluator), normalised to 1 (most
    important first), over the hyperparameters every completed trial has.

    None with fewer than `MIN_TRIALS_FOR_IMPORTANCE` completed trials, or when
    fewer than two hyperparameters vary.
    """
    done = [t for t in trials if completed(t)]
    if len(done) < MIN_TRIALS_FOR_IMPORTANCE:
        return None
    found = fanova_importance(done, ["cell", *SPACE], seed=seed)
    if found is None:
        return None
    return sorted(found.items(), key=lambda item: -item[1])


def by_cell(trials: list[dict], direction: str) -> list[dict]:
    """Per cell: trial counts, best and median score, mean saturation by gate."""
    rows = []
    for cell in sorted({t["cell"] for t in trials}):
        mine = [t for t in trials if t["cell"] == cell]
        scores = [t["score"] for t in mine if t["status"] == "COMPLETED" and t["score"] is not None]
        scores = [s for s in scores if np.isfinite(s)]
        saturations = [trial_saturation(t) for t in mine if t["status"] == "COMPLETED"]
        spans = [t.get("memory_span") for t in mine if t["status"] == "COMPLETED"]
        spans = [s for s in spans if s is not None]
        gates = sorted({g for s in saturations for g in s}, key=GATES.index)
        rows.append(
            {
                "cell": cell,
                "trials": len(mine),
                "completed": len(scores),
                "failed": sum(t["status"] == "FAILED" for t in mine),
                "best": (min(scores) if direction == "min" else max(scores)) if scores else None,
                "median": float(np.median(scores)) if scores else None,
                "memory_span": float(np.median(spans)) if spans else None,
                "saturation": {
                    g: float(np.mean([s[g] for s in saturations if g in s])) for g in gates
                },
            }
        )
    best_first = 1 if direction == "min" else -1
    return sorted(rows, key=lambda r: (r["best"] is None, best_first * (r["best"] or 0.0)))


def summary(directory: str, top: int = 5) -> str:
    """Plain-text table of the search so far: per cell, then the best trials."""
    spec, trials = _open(directory)
    objective, direction = spec_objective(spec)
    rows = by_cell(trials, direction)
    lines = [f"{len(trials)} trials in {directory}; {objective} ({direction}imise):", ""]
    lines.append(f"{'cell':<24}{'trials':>7}{'failed':>7}{'best':>11}{'median':>11}")
    for r in rows:
        lines.append(
            f"{r['cell']:<24}{r['trials']:>7}{r['failed']:>7}"
            f"{fmt(r['best']):>11}{fmt(r['median']):>11}"
        )
    return "\n".join(lines)


def rate_edges(done: list[dict], direction: str, searched) -> list[str]:
    """Where each cell's best trial's learning rate fell in the searched range (on a
    log scale, 0 at the low end, 1 at the high end): near an end, the cell's optimum
    may lie outside the range, and its scores understate it."""
    if len(searched) != 2 or searched[0] == searched[1]:
        return []
    low, high = np.log(searched[0]), np.log(searched[1])
    lines = [
        f"Where each cell's best learning rate fell in the range searched "
        f"({searched[0]:g} to {searched[1]:g}, log scale, 0 to 1):",
        "",
        "| cell | best trial | learning rate | position | |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    pick = min if direction == "min" else max
    for cell in sorted({t["cell"] for t in done}):
        best = pick((t for t in done if t["cell"] == cell), key=lambda t: t["score"])
        rate = best["values"].get("learning_rate")
        position = (np.log(rate) - low) / (high - low)
        edge = "near an end: widen the range" if not 0.1 <= position <= 0.9 else ""
        lines.append(f"| {cell} | {best['id']} | {rate:.3g} | {position:.2f} | {edge} |")
    return lines


def _open(directory: str) -> tuple[dict, list[dict]]:
    spec = stored_search(directory)
    if spec is None:
        raise ValueError(f"{directory} holds no kgates search (made by kgates tune).")
    return spec, load_trials(directory)


def write_report(directory: str) -> str:
    """Writes `report.md` and `report/*.png` into `directory`; returns the markdown's path."""
    spec, trials = _open(directory)
    if not trials:
        raise ValueError(f"{directory} holds a search with no trials yet.")
    objective, direction = spec_objective(spec)
    rows = by_cell(trials, direction)
    task = spec_task(spec)  # its baselines
    pictures = os.path.join(directory, "report")
    os.makedirs(pictures, exist_ok=True)
    score_png = os.path.join(pictures, "score_by_cell.png")
    score_by_cell(trials, rows, objective, task.baselines, score_png)
    score_vs_learning_rate(trials, objective, os.path.join(pictures, "score_vs_learning_rate.png"))
    learning_curves(trials, objective, os.path.join(pictures, "learning_curves.png"))
    saturation_by_cell(rows, os.path.join(pictures, "saturation_by_cell.png"))
    scores, failures = scores_by_cell(trials, direction)
    best_png = os.path.join(pictures, "expected_best.png")
    expected_best_curves(scores, direction, objective, task.baselines, best_png)

    done = [t for t in trials if completed(t)]
    sizes = ", ".join(f"{k} {v}" for k, v in task.sizes.items()) or "fixed size"
    lines = [f"# Search: {spec['task']} ({sizes})", ""]
    if spec["data"]:
        lines += [f"Data: `{spec['data']['file']}` (SHA-256 {spec['data']['sha256'][:12]}...).", ""]
    lines += [
        f"{len(trials)} trials ({len(done)} completed, "
        f"{sum(t['status'] == 'FAILED' for t in trials)} failed) of {spec['max_trials']}, "
        f"{spec['tuner']} search, at most {spec['epochs'] or task.epochs} epochs per trial "
        "(early stopping), seed "
        f"{spec['seed']}. Score: `{objective}` ({'lower' if direction == 'min' else 'higher'} "
        "is better).",
        "",
        "## Score by cell",
        "",
        "| cell | trials | failed | best | median | memory span | saturated i | f | o | z | r |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        sat = [f"{r['saturation'][g]:.0%}" if g in r["saturation"] else "-" for g in GATES]
        lines.append(
            f"| {r['cell']} | {r['trials']} | {r['failed']} | {fmt(r['best'])} | "
            f"{fmt(r['median'])} | {fmt(r['memory_span'])} | " + " | ".join(sat) + " |"
        )
    lines += ["", "Baselines (on the validation data):", ""]
    lines += [f"- {name}: {fmt(value)}" for name, value in task.baselines.items()]
    if task.about:  # what the data is made of, and the hash that names each split
        lines += ["", "Data:", ""]
        for part, about in task.about.items():
            sizes = ", ".join(f"{v} {k}" for k, v in about.items() if k != "sha256")
            lines.append(f"- {part}: {sizes} (list SHA-256 `{about['sha256'][:16]}`)")
    lines += [
        "",
        "Memory span: the median over trials of each trial's median age, in steps, of what "
        "its units' states hold on the probe at the end of training (`kgates.memory`; "
        "mean over layers). Saturated: share of the gate's activations on the probe below "
        "0.1 or above 0.9 at the end of training, averaged over trials and layers (pinned "
        "gates left out).",
        "",
        "![score by cell](report/score_by_cell.png)",
        "",
        "![learning curves](report/learning_curves.png)",
        "",
    ]
    lines += held_out(trials, direction)
    lines += comparison(scores, failures, direction, spec["cells"])
    if spec["tuner"] == "paired":
        lines += paired_comparison(trials, direction, scores, spec["cells"], spec.get("margin"))
    lines += [
        "## Hyperparameter importance",
        "",
    ]
    ranked = importance(trials, seed=spec["seed"])
    if ranked is None:
        lines.append(
            f"Needs at least {MIN_TRIALS_FOR_IMPORTANCE} completed trials with something "
            f"varying (has {len(done)})."
        )
    else:
        lines += [
            f"fANOVA (Hutter et al. 2014, as Greff et al. 2015; optuna's evaluator) over "
            f"the {len(done)} completed trials: the share of the score's variance each "
            "hyperparameter explains alone (learning rate on a log scale; sums to 1). "
            "With few trials treat it as a hint.",
            "",
            "| hyperparameter | importance |",
            "| --- | ---: |",
        ]
        lines += [f"| {name} | {weight:.2f} |" for name, weight in ranked]
    lines += ["", *rate_edges(done, direction, spec["space"].get("learning_rate", []))]
    lines += [
        "",
        "![score vs learning rate](report/score_vs_learning_rate.png)",
        "",
        "## Best trials",
        "",
        "| trial | cell | score | hyperparameters |",
        "| --- | --- | ---: | --- |",
    ]
    ordered = sorted(done, key=lambda t: t["score"] if direction == "min" else -t["score"])
    for t in ordered[:10]:
        shown = ", ".join(f"{k}={fmt(v)}" for k, v in t["values"].items() if k != "cell")
        lines.append(f"| {t['id']} | {t['cell']} | {fmt(t['score'])} | {shown} |")
    failed = [t for t in trials if t["status"] not in ("COMPLETED", "RUNNING")]
    if failed:
        lines += ["", "## Failed trials", ""]
        lines += [f"- trial {t['id']} ({t['cell']}): {' '.join(t['message'])}" for t in failed]
    lines += [
        "",
        "## Gate saturation by cell",
        "",
        "![saturation by cell](report/saturation_by_cell.png)",
        "",
        f"Per-trial gate dashboards and the HParams view: `kgates board {directory}`.",
        "",
    ]
    path = os.path.join(directory, "report.md")
    atomic_write(path, "\n".join(lines), directory)
    return path
