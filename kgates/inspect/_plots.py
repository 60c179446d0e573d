"""Pictures of gates, rendered with matplotlib (no pyplot: safe off the main thread)."""

from __future__ import annotations

import io

import numpy as np
from matplotlib.figure import Figure

DPI = 80


def _png(fig: Figure) -> tuple[bytes, int, int]:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    width, height = (int(round(v * DPI)) for v in fig.get_size_inches())
    return buffer.getvalue(), height, width


def heatmap(
    values: np.ndarray,
    title: str = "",
    cmap: str = "viridis",
    vmin=None,
    vmax=None,
    xlabel: str = "time step",
    ylabel: str = "unit",
) -> tuple[bytes, int, int]:
    """A (units, time) array as a heatmap: a row per unit, time to the right, with
    labelled axes, a colour bar and a title. Non-finite values are grey."""
    values = np.ma.masked_invalid(np.asarray(values, np.float64))
    units, steps = values.shape
    fig = Figure(figsize=(6.4, 2.2 + min(units, 64) * 0.03))
    ax = fig.add_subplot()
    ax.set_facecolor("0.5")
    image = ax.imshow(
        values, aspect="auto", interpolation="nearest", cmap=cmap, vmin=vmin, vmax=vmax,
        extent=(-0.5, steps - 0.5, units - 0.5, -0.5),
    )  # fmt: skip
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.title.set_fontsize(9)
    fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02)
    fig.subplots_adjust(left=0.1, right=0.9, bottom=0.2, top=0.86)
    return _png(fig)


def traces(
    values: np.ndarray, units: np.ndarray, title: str, ylabel: str
) -> tuple[bytes, int, int]:
    """Lines over time of a few units: `values` is (time, all units)."""
    fig = Figure(figsize=(6.4, 3.4))
    ax = fig.add_subplot()
    for unit in units:
        ax.plot(values[:, unit], label=f"unit {unit}", linewidth=1.2)
    ax.axhline(0.0, color="0.6", linewidth=0.6)
    ax.set(title=title, xlabel="time step", ylabel=ylabel)
    ax.legend(fontsize=7, ncol=2, loc="upper left")
    fig.subplots_adjust(left=0.1, right=0.98, bottom=0.15, top=0.9)
    return _png(fig)


def saturation_scatter(fractions: dict, title: str) -> tuple[bytes, int, int]:
    """Per unit, the share of time a gate is left (< 0.1) vs right (> 0.9) saturated.

    `fractions` maps a gate name to `(left, right)` arrays over units; the
    layout follows Karpathy et al., "Visualizing and Understanding Recurrent
    Networks" (2015).
    """
    fig = Figure(figsize=(3.0 * max(len(fractions), 1) + 0.6, 3.4))
    axes = fig.subplots(1, max(len(fractions), 1), squeeze=False)[0]
    for ax, (gate, (left, right)) in zip(axes, fractions.items()):
        ax.plot([0, 1], [1, 0], color="0.75", linewidth=0.8)
        ax.plot(left, right, "o", markersize=3.5, alpha=0.7)
        ax.set(xlim=(-0.03, 1.03), ylim=(-0.03, 1.03), title=f"gate {gate}")
        ax.set(xticks=[0, 0.5, 1], yticks=[0, 0.5, 1])
        ax.set_xlabel("fraction left-saturated (< 0.1)", fontsize=8)
        ax.set_ylabel("fraction right-saturated (> 0.9)", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.subplots_adjust(left=0.12, right=0.98, bottom=0.16, top=0.82, wspace=0.45)
    return _png(fig)


def gradient_flow(norms: dict, title: str) -> tuple[bytes, int, int]:
    """||dL/dh_t|| (and ||dL/dc_t||) against t, on a log scale."""
    fig = Figure(figsize=(6.4, 3.4))
    ax = fig.add_subplot()
    labels = {"h": "||dL/dh_t||", "c": "||dL/dc_t||"}
    for name, values in norms.items():
        values = np.asarray(values, np.float64)
        ax.plot(np.where(values > 0, values, np.nan), label=labels.get(name, name), linewidth=1.5)
    ax.set_yscale("log")
    ax.set(title=title, xlabel="time step t", ylabel="gradient norm (mean over probe)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    ax.minorticks_off()
    fig.subplots_adjust(left=0.12, right=0.98, bottom=0.15, top=0.9)
    return _png(fig)
