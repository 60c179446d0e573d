"""The hypermodel: which models a search over kgates cells builds, and its space."""

from __future__ import annotations

import math

import keras
import keras_tuner

from kgates.cells._equivalent import set_chrono_bias
from kgates.cells._layers import GRU, LSTM
from kgates.cells._variants import VARIANTS
from kgates.study._choices import CELLS, check_space
from kgates.study._tasks import Task


@keras.saving.register_keras_serializable(package="kgates")
def key_nll(y_true, logits):
    """Bernoulli negative log-likelihood of every label, summed over the last axis
    (nats per step, the usual score of polyphonic music models; the music task's loss)."""
    nll = keras.ops.binary_crossentropy(y_true, logits, from_logits=True)
    return keras.ops.sum(nll, axis=-1)


def _has_forget_weights(cell: str) -> bool:
    """Whether an LSTM variant owns a forget gate whose bias can be set."""
    return cell in VARIANTS and cell not in ("NFG", "CIFG")


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
