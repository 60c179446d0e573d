"""`kgates inspect`: the whole analysis of a saved model, for users without Python
code: its gates (dashboards), what its memory holds, and, given labels, which units
matter (ablation), as a TensorBoard run and a short markdown summary."""

from __future__ import annotations

import os
import warnings

import keras
import numpy as np

from kgates.inspect._ablate import ablate
from kgates.inspect._dashboards import draw, write_gate_summaries, write_memory_summaries
from kgates.inspect._events import EventWriter
from kgates.inspect._explorer import explorer_record, record_summary
from kgates.inspect._stats import has_memory
from kgates.inspect._trace import Tracer

HELD_GATE = {"f": "f", "z": "z"}  # the gate ablated per layer: what keeps the memory


def _load_array(path: str, what: str) -> np.ndarray:
    if not os.path.isfile(path):
        raise ValueError(f"`{what}` {path}: no such file.")
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise ValueError(f"`{what}` {path} is not a NumPy .npy array ({error}).") from None
    if not isinstance(array, np.ndarray):  # an .npz archive
        array.close()
        raise ValueError(f"`{what}` {path} is a NumPy .npz archive; expected one .npy array.")
    return array


def load_model(path: str) -> keras.Model:
    """A saved `.keras` model, with kgates's layers known; errors name the file."""
    if not os.path.isfile(path):
        raise ValueError(f"`model` {path}: no such file.")
    try:
        with warnings.catch_warnings():  # the optimizer's state: not needed to look inside
            warnings.simplefilter("ignore")
            return keras.saving.load_model(path)
    except Exception as error:  # noqa: BLE001 - any load failure: one clear line
        raise ValueError(
            f"`model` {path} could not be loaded as a Keras model ({error})."
        ) from None


def inspect_saved(
    model_path: str,
    data_path: str,
    out: str,
    mask_value: float | None = None,
    labels_path: str | None = None,
    limit: int = 256,
) -> str:
    """Traces a saved model on the sequences of a `.npy` file and writes, into `out`,
    a TensorBoard run of its gates and memory (with the "Gates" tab's explorer data)
    and `summary.md`; returns its path.

    Args:
        model_path: a `.keras` file.
        data_path: a `.npy` array of inputs, shaped like the model's input.
        out: the directory to write (a TensorBoard log directory).
        mask_value: steps whose every feature equals it are padding (as
            `keras.layers.Masking`); default: the model's own masking only.
        labels_path: a `.npy` array of targets: adds the ablation of each LSTM's
            forget gate and each GRU's update gate, per unit (the model must
            have been saved compiled with a loss).
        limit: at most this many sequences are used (the first ones).
    """
    if os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"`out` {out} is a file; expected a directory.")
    model = load_model(model_path)
    x = _load_array(data_path, "data")
    expected = tuple(model.inputs[0].shape) if len(model.inputs) == 1 else None
    if expected is None:
        raise ValueError("`model` has several inputs; kgates inspect reads models with one.")
    if x.ndim != len(expected) or any(
        want is not None and have != want for have, want in zip(x.shape[1:], expected[1:])
    ):
        raise ValueError(
            f"`data` {data_path} has shape {x.shape}; the model takes {expected} (None: any size)."
        )
    x = x[:limit]
    y = None
    if labels_path is not None:
        y = _load_array(labels_path, "labels")[:limit]
        if len(y) != len(x):
            raise ValueError(f"`labels` {labels_path} has {len(y)} rows, `data` {len(x)}.")
    mask = None
    if mask_value is not None:
        padded = x == mask_value if x.ndim == 2 else np.all(x == mask_value, axis=-1)
        mask = ~padded
    tracer = Tracer(model, compiled=False)  # raises when there is no recurrent layer
    traced, numbers = tracer(x, mask), tracer.summaries(x, mask)
    backwards = {p.name: p.layer.go_backwards for p in tracer.parts}
    pinned = {p.name: set(getattr(p.cell, "pin", ())) for p in tracer.parts}
    os.makedirs(out, exist_ok=True)
    writer = EventWriter(out)
    lines = [
        f"# {model.name}: inside its recurrent layers",
        "",
        f"Model `{model_path}`, {len(x)} sequences of `{data_path}` "
        f"(inputs {x.shape[1:]}{'' if mask is None else f', padding = {mask_value}'}). "
        f"Dashboards and the Gates tab: `kgates board {out}`; one HTML file: "
        f"`kgates explore {out} -o gates.html`.",
        "",
        "| layer | gate | mean | saturated (< 0.1 or > 0.9) |",
        "| --- | --- | ---: | ---: |",
    ]
    spans = {}
    for part, summary in numbers.items():
        stats = write_gate_summaries(writer, part, summary, 0)
        span = write_memory_summaries(writer, part, summary, 0)
        if span is not None:
            spans[part] = span
        for gate, values in stats.items():
            if isinstance(values, dict) and "left" in values:
                share = values["left"] + values["right"]
                lines.append(f"| {part} | {gate} | {values['mean']:.3f} | {share:.0%} |")
    draw(writer, numbers, {}, 0, pinned, backwards)
    writer.summary(record_summary(*explorer_record(traced, backwards, x)), 0)  # the Gates tab
    lines += ["", "## Memory", ""]
    for part, gates in traced.items():
        if not has_memory(gates):
            lines.append(f"- {part}: a SimpleRNN has no gates, so no memory to take apart.")
        elif part in spans:
            lines.append(
                f"- {part}: median memory span {spans[part]:.2f} steps (the mean age of what "
                "a unit's state holds, over units and real steps)."
            )
    if y is not None:
        lines += ["", "## Units that matter (ablation)", ""]
        for part, gates in traced.items():
            gate = next((g for g in HELD_GATE if g in gates and g not in pinned[part]), None)
            if gate is None:
                continue
            try:
                table = ablate(model, x, y, part, gate)
            except ValueError as error:
                lines.append(f"- {part}: no ablation ({error})")
                continue
            for unit, change in table.top(5):
                writer.scalar(f"ablation/{part}/{gate}/unit_{unit}", change, 0)
            lines += ["```", str(table), "```", ""]
    writer.close()
    path = os.path.join(out, "summary.md")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path
