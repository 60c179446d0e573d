"""The report's pictures (matplotlib, no pyplot), written into the search directory."""

from __future__ import annotations

import io
import os

import numpy as np
from matplotlib.figure import Figure

from kgates.cells._variants import VARIANTS
from kgates.inspect._stats import SIGMOID_GATES as GATES
from kgates.study._directory import atomic_write


def score_by_cell(trials, rows, objective, baselines, path) -> None:
    fig = Figure(figsize=(9, 4.5))
    ax = fig.add_subplot()
    for k, (name, value) in enumerate(baselines.items()):
        ax.axhline(value, color="0.4", linestyle=("--", ":", "-.")[k % 3], linewidth=1)
        ax.annotate(
            f"{name}: {value:.4g}", (1.0, value), xycoords=("axes fraction", "data"),
            xytext=(-4, 3), textcoords="offset points", ha="right", fontsize=8, color="0.3",
        )  # fmt: skip
    rng = np.random.default_rng(0)
    for k, row in enumerate(rows):
        scores = [t["score"] for t in trials if t["cell"] == row["cell"] and completed(t)]
        ax.scatter(k + rng.uniform(-0.12, 0.12, len(scores)), scores, s=18, alpha=0.7)
        if scores:
            ax.hlines(np.median(scores), k - 0.3, k + 0.3, color="k", linewidth=1.5)
    ax.set_xticks(range(len(rows)), [r["cell"] for r in rows], rotation=20, fontsize=9)
    ax.set_xlabel("cell")
    ax.set_ylabel(objective)
    ax.set_title("Score by cell: a dot per trial, a bar at the median; lines: baselines")
    ax.grid(axis="y", alpha=0.3)
    fig.subplots_adjust(bottom=0.2)
    _save(fig, path)


def score_vs_learning_rate(trials, objective, path) -> None:
    fig = Figure(figsize=(9, 4.5))
    ax = fig.add_subplot()
    for cell in sorted({t["cell"] for t in trials}):
        mine = [t for t in trials if t["cell"] == cell and completed(t)]
        rates = [t["values"].get("learning_rate") for t in mine]
        ax.scatter(rates, [t["score"] for t in mine], s=18, label=cell)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel(objective)
    ax.set_title("Score vs learning rate")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.subplots_adjust(bottom=0.15)
    _save(fig, path)


def learning_curves(trials, objective, path) -> None:
    """The objective per epoch: a faint line per trial, the median per cell in bold
    (over the trials that reached the epoch); from each trial's `curves.json`."""
    fig = Figure(figsize=(9, 4.5))
    ax = fig.add_subplot()
    for k, cell in enumerate(sorted({t["cell"] for t in trials})):
        color = f"C{k % 10}"
        runs = [c[objective] for t in trials if t["cell"] == cell for c in t["curves"][:1]
                if c.get(objective)]  # fmt: skip
        for run in runs:
            ax.plot(np.arange(1, len(run) + 1), run, color=color, alpha=0.2, linewidth=0.8)
        if runs:
            longest = max(map(len, runs))
            median = [np.nanmedian([r[e] for r in runs if len(r) > e]) for e in range(longest)]
            ax.plot(np.arange(1, longest + 1), median, color=color, linewidth=2, label=cell)
    ax.set_xlabel("epoch")
    ax.set_ylabel(objective)
    ax.set_title("Learning curves: a faint line per trial, the median per cell")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    fig.subplots_adjust(bottom=0.15)
    _save(fig, path)


def expected_best_curves(scores: dict, direction: str, objective, baselines, path) -> None:
    """Expected best score of k random trials of each cell, k = 1 .. trials."""
    from kgates.study._compare import expected_best

    fig = Figure(figsize=(9, 4.5))
    ax = fig.add_subplot()
    for cell, values in scores.items():
        ks = np.arange(1, len(values) + 1)
        ax.plot(ks, [expected_best(values, k, direction) for k in ks], marker=".", label=cell)
    for k, value in enumerate(baselines.values()):
        ax.axhline(value, color="0.4", linestyle=("--", ":", "-.")[k % 3], linewidth=1)
    ax.set_xlabel("trials (k)")
    ax.set_ylabel(f"expected best {objective}")
    ax.set_title(
        "Expected best of k random trials per cell (failures scored worst); lines: baselines"
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.subplots_adjust(bottom=0.15)
    _save(fig, path)


def saturation_by_cell(rows, path) -> None:
    fig = Figure(figsize=(9, 4.5))
    ax = fig.add_subplot()
    gates = [g for g in GATES if any(g in r["saturation"] for r in rows)]
    width = 0.8 / max(len(gates), 1)
    for j, gate in enumerate(gates):
        where = np.arange(len(rows)) + (j - (len(gates) - 1) / 2) * width
        heights = [r["saturation"].get(gate, np.nan) for r in rows]
        bars = ax.bar(where, heights, width, label=gate)
        labels = [f"{h:.0%}" if np.isfinite(h) else "" for h in heights]
        ax.bar_label(bars, labels, fontsize=7, padding=1)  # zero bars show as 0%
        for x, row in zip(where, rows):
            if gate in pinned_gates(row["cell"]):
                ax.text(x, 0.01, "pinned", rotation=90, ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(rows)), [r["cell"] for r in rows], rotation=20, fontsize=9)
    ax.set_xlabel("cell")
    ax.set_ylabel("share < 0.1 or > 0.9")
    ax.set_ylim(0, 1.08)
    ax.set_title("Mean gate saturation at the end of training (pinned gates: not drawn)")
    if gates:
        ax.legend(fontsize=8, ncols=len(gates), title="gate", title_fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.subplots_adjust(bottom=0.2)
    _save(fig, path)


def pinned_gates(cell: str) -> set:
    """The gates a cell code pins to constants (none for NP, GRU, ...)."""
    return set(VARIANTS[cell].get("pin", {})) if cell in VARIANTS else set()


def _save(fig: Figure, path: str) -> None:
    """A PNG into the report folder, written as `atomic_write` does (in the search)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    atomic_write(path, buffer.getvalue(), os.path.dirname(os.path.dirname(path)))


def completed(trial: dict) -> bool:
    """Whether a trial (from `load_trials`) finished with a finite score."""
    return (
        trial["status"] == "COMPLETED"
        and trial["score"] is not None
        and np.isfinite(trial["score"])
    )
