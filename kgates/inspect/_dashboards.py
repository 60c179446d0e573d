"""What `kgates.TensorBoard` writes for one layer: gate histograms and scalars, memory
spans, gradient flow, and the pictures (drawn off the training thread), from the
numbers `Tracer.summaries` computes on the device."""

from __future__ import annotations

import numpy as np

from kgates.inspect._events import EventWriter
from kgates.inspect._gradflow import reach
from kgates.inspect._memory import Memory, has_memory
from kgates.inspect._stats import SIGMOID_GATES, closed_share

TRACED_UNITS = 6  # lines in the cell-state trace plot


def draw(
    writer: EventWriter, summaries: dict, flows: dict, step: int, pinned: dict, backwards: dict
) -> None:
    from kgates.inspect import _plots as plots  # matplotlib, only when drawing

    for part, summary in summaries.items():
        gates = summary["first"]  # the first probe sequence
        shown = {k: v for k, v in gates.items() if k not in pinned.get(part, ())}
        write_gate_images(writer, part, shown, summary, step)
        memory = layer_memory(gates, backwards.get(part, False))
        if memory is not None:
            real = memory.valid[0]
            if real.any():
                shares = memory.attention_map(sequence=0)[np.ix_(real, real)]
                png, height, width = plots.heatmap(
                    shares,
                    f"{part}: share of |state_t| written at each step, first probe sequence",
                    "magma",
                    0.0,
                    None,
                    xlabel="written at step",
                    ylabel="held at step",
                )
                writer.image(f"memory_attention/{part}", png, height, width, step)
        if part in flows:
            png, height, width = plots.gradient_flow(
                flows[part], f"{part}: gradient flow over time"
            )
            writer.image(f"gradient_flow/{part}", png, height, width, step)


def write_gate_summaries(writer: EventWriter, part: str, summary: dict, step: int) -> dict:
    """Histograms and scalars of one layer's gates (`Tracer.summaries`); returns its
    statistics as `gate_statistics` gives them."""
    stats: dict = {}
    for name in summary["first"]:
        numbers = summary[name]
        num = float(numbers["num"])
        stats[name] = {"mean": float(numbers["sum"]) / num if num else float("nan")}
        writer.counted_histogram(f"gates/{part}/{name}", numbers, step)
        writer.scalar(f"gate_mean/{part}/{name}", stats[name]["mean"], step)
        if "left" in numbers:
            stats[name].update(left=float(numbers["left"]), right=float(numbers["right"]))
            writer.scalar(f"saturation/{part}/{name}/left", stats[name]["left"], step)
            writer.scalar(f"saturation/{part}/{name}/right", stats[name]["right"], step)
    if "f" in summary["first"]:
        stats["forget_closed"] = closed_share(summary["f"]["unit_left"])
        writer.scalar(f"forget_closed/{part}", stats["forget_closed"], step)
    stats["nonfinite"] = summary["nonfinite"]
    writer.scalar(f"nonfinite/{part}", stats["nonfinite"], step)
    return stats


def layer_memory(gates: dict, backwards: bool):
    """The layer's `Memory`, or None for a layer without one (a SimpleRNN)."""
    if not has_memory(gates):
        return None
    return Memory.from_gates(gates, backwards=bool(backwards))


def write_memory_summaries(
    writer: EventWriter, part: str, summary: dict, step: int
) -> float | None:
    """The memory span of every unit at every real step: a histogram and its median,
    which it returns (None for a layer without memory)."""
    span = summary.get("span")
    if span is None or not float(span["num"]):
        return None
    median = float(span["median"])
    writer.counted_histogram(f"memory_span/{part}", span, step)
    writer.scalar(f"memory_span_median/{part}", median, step)
    return median


def _first_sample(values) -> np.ndarray:
    """(time, units) of the first probe sequence, its padded steps dropped."""
    sample = values[0]
    valid = ~np.ma.getmaskarray(sample).any(axis=-1)
    return np.ma.getdata(sample)[valid]


def write_gate_images(
    writer: EventWriter, part: str, gates: dict, summary: dict, step: int
) -> None:
    """Heatmaps and traces of one layer's gates (`gates`: the first probe sequence), and
    the saturation scatter of every unit over the probe (`summary`)."""
    from kgates.inspect import _plots as plots

    state_name = "c" if "c" in gates else "h"
    state = _first_sample(gates[state_name])
    if state.size:
        bound = float(np.nanmax(np.abs(state), initial=0.0)) or 1.0
        png, height, width = plots.heatmap(
            state.T, f"{part}: {state_name}_t, first probe sequence", "RdBu_r", -bound, bound
        )
        writer.image(f"cell_state/{part}", png, height, width, step)
        finite = np.where(np.isfinite(state), state, 0.0)
        active = np.argsort(-finite.std(axis=0))[: min(TRACED_UNITS, state.shape[1])]
        png, height, width = plots.traces(
            state, active, f"{part}: {state_name}_t of the most active units", state_name
        )
        writer.image(f"cell_trace/{part}", png, height, width, step)
    fractions = {}
    for name in SIGMOID_GATES:
        if name not in gates:
            continue
        sample = _first_sample(gates[name])
        if sample.size:
            png, height, width = plots.heatmap(
                sample.T, f"{part}: gate {name}, first probe sequence", "viridis", 0.0, 1.0
            )
            writer.image(f"gate_heatmap/{part}/{name}", png, height, width, step)
        fractions[name] = (summary[name]["unit_left"], summary[name]["unit_right"])
    if fractions:
        png, height, width = plots.saturation_scatter(fractions, f"{part}: saturation per unit")
        writer.image(f"saturation_scatter/{part}", png, height, width, step)


def write_gradient_flow(writer: EventWriter, part: str, norms: dict, step: int) -> None:
    for name, values in norms.items():
        writer.scalar(f"gradient_flow/{part}/reach_{name}", reach(values), step)
