"""Ablation: how much the loss changes when one unit's gate is held at a value
(its mean, 0, 1) inside the recurrence; causal evidence that a unit matters."""

from __future__ import annotations

import dataclasses
import time

import keras
import numpy as np
from keras import ops

from kgates.inspect._intervene import Edit, intervene
from kgates.inspect._trace import trace

ROWS_PER_CALL = 4096  # copies of the batch run in one model call, at most


@dataclasses.dataclass
class Ablation:
    """What holding one gate of each unit does to the loss.

    Attributes:
        layer, gate: what was held.
        held: the names of the values it was held at (`"mean"`, `"0"`, `"1"`, ...).
        baseline: the model's loss on the batch, nothing held.
        units: `(units,)` unit indices.
        means: `(units,)` the gate's mean over the batch's real steps.
        losses: `(units, len(held))` the loss with the unit's gate held at each value.
        seconds: how long the ablation took.
    """

    layer: str
    gate: str
    held: tuple
    baseline: float
    units: np.ndarray
    means: np.ndarray
    losses: np.ndarray
    seconds: float

    @property
    def changes(self) -> np.ndarray:
        """`(units, len(held))`: loss with the gate held minus the baseline."""
        return self.losses - self.baseline

    def top(self, k: int = 5, at: str | None = None) -> list[tuple[int, float]]:
        """The `k` units whose loss rises most when held (at `at`, default the first
        held value): `[(unit, change), ...]`."""
        column = self.held.index(at) if at is not None else 0
        order = np.argsort(-self.changes[:, column])[:k]
        return [(int(self.units[u]), float(self.changes[u, column])) for u in order]

    def __str__(self) -> str:
        lines = [
            f"{self.layer}/{self.gate}: loss {self.baseline:.4g} with nothing held; "
            f"{len(self.units)} units in {self.seconds:.1f} s",
            f"{'unit':>6}{'mean':>9}" + "".join(f"{'at ' + h:>12}" for h in self.held),
        ]
        for row in np.argsort(-self.changes.max(axis=1)):
            changes = "".join(f"{c:>+12.4g}" for c in self.changes[row])
            lines.append(f"{self.units[row]:>6}{self.means[row]:>9.3f}{changes}")
        return "\n".join(lines)


def _per_example_loss(model: keras.Model, loss, y, predictions) -> np.ndarray:
    loss = loss if loss is not None else getattr(model, "loss", None)
    if loss is None or isinstance(loss, (list, dict)):
        raise ValueError(
            "kgates.ablate: the model has no single compiled loss; pass `loss` (e.g. "
            '"mse" or a keras.losses.Loss).'
        )
    loss = keras.losses.get(loss) if isinstance(loss, str) else loss
    function = loss.call if isinstance(loss, keras.losses.Loss) else loss
    values = ops.convert_to_numpy(function(ops.convert_to_tensor(y), predictions))
    values = np.asarray(values, "float64")
    return values.reshape(values.shape[0], -1).mean(axis=1)


def ablate(
    model: keras.Model,
    x,
    y,
    layer: str,
    gate: str,
    held=("mean", 0.0, 1.0),
    units=None,
    loss=None,
) -> Ablation:
    """The loss change when each unit's `gate` is held at each value of `held`, at
    every step, inside the recurrence (see `kgates.intervene`).

    The edits of many units run in one model call: the batch is repeated once per
    unit, each copy with its own unit held.

    Args:
        model: a functional or Sequential Keras model built on `keras.Input`.
        x, y: a batch of inputs and its targets.
        layer: the recurrent layer (a Bidirectional's `"name/forward"` ...).
        gate: the gate (or `c`, `h`).
        held: values to hold the gate at; `"mean"` is the unit's own mean over
            the batch's real steps. Default: `("mean", 0.0, 1.0)`.
        units: the units to ablate (a list). Default: all.
        loss: the loss; default: the model's compiled loss.

    Returns:
        An `Ablation` (`print` it for a table; `.top(5)` for the units that matter most).
    """
    start = time.perf_counter()
    x = keras.tree.map_structure(np.asarray, x)  # one input, or a list or dict of them
    y = np.asarray(y)
    batch = len(keras.tree.flatten(x)[0])
    if y.ndim == 0 or len(y) != batch:
        raise ValueError(
            f"kgates.ablate: argument `y` must have one target per input sequence "
            f"({batch}), got shape {y.shape}."
        )
    gates = trace(model, x, layers=[layer.split("/")[0]])
    if layer not in gates:
        raise ValueError(f"kgates.ablate: `layer` must be one of {sorted(gates)}, got {layer!r}.")
    if gate not in gates[layer] and gate != "h":
        raise ValueError(
            f"kgates.ablate: layer {layer!r} has no gate {gate!r}; it has "
            f"{', '.join(gates[layer])}."
        )
    traced = gates[layer][gate]
    count = traced.shape[-1]
    units = np.arange(count) if units is None else np.asarray(units).reshape(-1)
    if units.dtype.kind not in "iu" or not units.size or units.min() < 0 or units.max() >= count:
        raise ValueError(
            f"kgates.ablate: argument `units` must be a list of unit indices in "
            f"[0, {count}) for layer {layer!r}, got {units.tolist()}."
        )
    means = np.asarray(traced.mean(axis=(0, 1)), "float64")[units]
    held = tuple(held)
    for value in held:
        if not (value == "mean" if isinstance(value, str) else np.isscalar(value)):
            raise ValueError(f'kgates.ablate: `held` takes numbers and "mean", got {value!r}.')
    names = tuple("mean" if isinstance(v, str) and v == "mean" else f"{v:g}" for v in held)
    baseline = _per_example_loss(model, loss, y, intervene(model, x, {})).mean()
    losses = np.zeros((len(units), len(held)))
    per_call = max(1, ROWS_PER_CALL // batch)
    for column, value in enumerate(held):
        for first in range(0, len(units), per_call):
            chunk = units[first : first + per_call]
            values = np.ma.masked_all((len(chunk), batch, 1, count))
            for k, unit in enumerate(chunk):
                values[k, :, :, unit] = means[first + k] if names[column] == "mean" else value
            values = values.reshape(len(chunk) * batch, 1, count)
            copies = len(chunk)
            repeated = keras.tree.map_structure(lambda v, n=copies: np.concatenate([v] * n), x)
            outputs = intervene(model, repeated, {layer: {gate: Edit(values)}})
            per_example = _per_example_loss(model, loss, np.concatenate([y] * copies), outputs)
            losses[first : first + len(chunk), column] = per_example.reshape(
                len(chunk), batch
            ).mean(axis=1)
    return Ablation(
        layer, gate, names, float(baseline), units, means, losses, time.perf_counter() - start
    )
