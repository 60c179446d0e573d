"""The hypermodel: which models a search over kgates cells builds, and its space."""

from __future__ import annotations

import math

import keras
import keras_tuner

from kgates.cells._equivalent import set_chrono_bias
from kgates.cells._layers import GRU, LSTM
from kgates.cells._variants import VARIANTS
from kgates.study._tasks import Task

CELLS = (*VARIANTS, "GRU")
FORGET_BIASES = ("zero", "one", "chrono")
# The search space; every entry can be narrowed (`GateHyperModel` arguments,
# `kgates tune` flags). Tuples of two floats are ranges; others are choices.
SPACE = {
    "units": (32, 64, 128),
    "layers": (1, 2),
    "learning_rate": (3e-4, 3e-2),
    "dropout": (0.0, 0.3),
    "forget_bias": FORGET_BIASES,
    "clipnorm": (0.0, 1.0, 10.0),
    "reset_after": (True, False),
}
RANGES = ("learning_rate", "dropout")


def _has_forget_weights(cell: str) -> bool:
    """Whether an LSTM variant owns a forget gate whose bias can be set."""
    return cell in VARIANTS and cell not in ("NFG", "CIFG")


def check_space(cells, space: dict) -> tuple[tuple[str, ...], dict]:
    """Validates cell codes and search-space entries; returns them normalised."""
    if isinstance(cells, str):
        cells = cells.split(",")
    cells = tuple(c.strip() for c in cells)
    for cell in cells:
        if cell not in CELLS:
            raise ValueError(f"unknown cell {cell!r} in `cells`; expected codes from {CELLS}.")
    if not cells or len(set(cells)) != len(cells):
        raise ValueError(f"`cells` must be distinct codes from {CELLS}, got {cells}.")
    unknown = sorted(set(space) - set(SPACE))
    if unknown:
        raise ValueError(f"unknown search-space entry {unknown[0]!r}; expected {sorted(SPACE)}.")
    out = dict(SPACE)
    for name, value in space.items():
        value = tuple(value) if isinstance(value, (tuple, list)) else (value,)
        if not value:
            raise ValueError(f"`{name}` needs at least one value.")
        if name in RANGES:
            if len(value) > 2 or not all(isinstance(v, (int, float)) for v in value):
                raise ValueError(f"`{name}` must be a value or a (low, high) range, got {value}.")
            low, high = float(value[0]), float(value[-1])
            if not (math.isfinite(low) and math.isfinite(high)):
                raise ValueError(f"`{name}` must be finite, got {value}.")
            ok = 0 < low <= high if name == "learning_rate" else 0 <= low <= high < 1
            if not ok:
                bounds = "0 < low <= high" if name == "learning_rate" else "0 <= low <= high < 1"
                raise ValueError(f"`{name}` must satisfy {bounds}, got {value}.")
            value = (low, high)
        elif name == "forget_bias":
            if not set(value) <= set(FORGET_BIASES):
                raise ValueError(f"`forget_bias` values must be from {FORGET_BIASES}, got {value}.")
        elif name == "reset_after":
            if not all(isinstance(v, bool) for v in value):
                raise ValueError(f"`reset_after` values must be True or False, got {value}.")
        elif name in ("units", "layers"):
            if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value):
                raise ValueError(f"`{name}` values must be positive integers, got {value}.")
        elif name == "clipnorm":
            if not all(isinstance(v, (int, float)) and math.isfinite(v) and v >= 0 for v in value):
                raise ValueError(f"`clipnorm` values must be >= 0 (0: none), got {value}.")
            value = tuple(float(v) for v in value)
        out[name] = value if name in RANGES else tuple(dict.fromkeys(value))
    return cells, out


class GateHyperModel(keras_tuner.HyperModel):
    """A Keras Tuner hypermodel over kgates cells for one task (`kgates.make_task`).

    The model is `[Embedding] -> recurrent layers -> head`; the recurrent
    layers are `kgates.LSTM` (Greff variant `cell`; NP runs Keras's fused
    kernel) or `kgates.GRU`. Hyperparameters: `cell`, `units`, `layers`,
    `learning_rate` (log scale), `dropout` (on each layer's inputs),
    `forget_bias` (`zero`, `one` = Keras's unit_forget_bias, `chrono`; LSTM
    cells with a forget gate only), `reset_after` (GRU only) and `clipnorm`
    of Adam (0: none).

    Args:
        task: the task (`kgates.make_task`).
        cells: cell codes to compare. Default: all (`CELLS`).
        seed: seed of the chrono initialisation. Default: 0.
        **space: narrow the search: a single value fixes an entry; a tuple
            lists the choices, or for `learning_rate` and `dropout` gives
            `(low, high)`. Defaults: `SPACE`.

    Example:

    >>> hypermodel = GateHyperModel(make_task("adding"), cells=("NP", "GRU"), units=64)
    """

    def __init__(self, task: Task, cells=CELLS, seed: int = 0, **space):
        super().__init__(name=f"kgates_{task.name}")
        self.task = task
        self.cells, self.space = check_space(cells, space)
        self.seed = seed

    def _choice(self, hp, name, values=None):
        values = self.space[name] if values is None else values
        if len(values) == 1:
            return hp.Fixed(name, values[0])
        return hp.Choice(name, list(values))

    def _range(self, hp, name, log=False):
        low, high = self.space[name]
        if low == high:
            return hp.Fixed(name, low)
        return hp.Float(name, low, high, sampling="log" if log else "linear")

    def build(self, hp) -> keras.Model:
        task = self.task
        cell = self._choice(hp, "cell", self.cells)
        units = self._choice(hp, "units")
        depth = self._choice(hp, "layers")
        learning_rate = self._range(hp, "learning_rate", log=True)
        dropout = self._range(hp, "dropout")
        clipnorm = self._choice(hp, "clipnorm")
        forget_cells = [c for c in self.cells if _has_forget_weights(c)]
        forget_bias = reset_after = None
        if forget_cells:
            with hp.conditional_scope("cell", forget_cells):
                if cell in forget_cells:
                    forget_bias = self._choice(hp, "forget_bias")
        if "GRU" in self.cells:
            with hp.conditional_scope("cell", ["GRU"]):
                if cell == "GRU":  # hp.Boolean: a Choice would store True as 1
                    values = self.space["reset_after"]
                    reset_after = (
                        hp.Fixed("reset_after", values[0])
                        if len(values) == 1
                        else hp.Boolean("reset_after", default=True)
                    )

        inputs = keras.Input(task.x_train.shape[1:], dtype=str(task.x_train.dtype), name="x")
        x = inputs
        if task.vocabulary:
            x = keras.layers.Embedding(task.vocabulary, 32, name="embedding")(x)
        recurrent = []
        for k in range(depth):
            options = {
                "return_sequences": task.sequence_output or k < depth - 1,
                "dropout": dropout,
                "name": f"{cell.lower()}_{k}",
            }
            if cell == "GRU":
                layer = GRU(units, reset_after=reset_after, **options)
            else:
                layer = LSTM(units, variant=cell, unit_forget_bias=forget_bias == "one", **options)
            x = layer(x)
            recurrent.append(layer)
        model = keras.Model(inputs, task.head(x), name=f"{cell.lower()}_{task.name}")
        if forget_bias == "chrono":
            for k, layer in enumerate(recurrent):
                set_chrono_bias(layer, task.timescale, self.seed + k)
        optimizer = keras.optimizers.Adam(learning_rate, clipnorm=clipnorm or None)
        model.compile(optimizer=optimizer, loss=task.loss(), metrics=task.metrics())
        return model

    def fit(self, hp, model, *args, **kwargs):
        history = model.fit(*args, **kwargs)
        losses = history.history.get("loss", [])
        if any(not math.isfinite(v) for v in losses):
            epoch = next(k for k, v in enumerate(losses) if not math.isfinite(v))
            raise keras_tuner.errors.FailedTrialError(
                f"diverged: the training loss was {losses[epoch]} at epoch {epoch + 1}."
            )
        return history
