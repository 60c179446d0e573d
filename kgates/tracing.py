"""Every gate of every recurrent layer of a model, as NumPy arrays.

Each traced layer gets a twin with its weights that returns h and every gate:
a `kgates.LSTM`/`GRU` with `return_gates`, for stock Keras layers and cells
too (whose gates are a pure function of (x_t, h_tm1): where a fused kernel
runs, the twin recomputes them exactly from its h, DESIGN.md §4; elsewhere it
steps the kgates cell, which costs less than a forward pass plus the
recomputation).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from kgates.fused import GRU, LSTM
from kgates.gates import GatedCellMixin, split_gates
from kgates.gru import GRUCell
from kgates.lstm import LSTMCell

STOCK_CELLS = (keras.layers.LSTMCell, keras.layers.GRUCell, keras.layers.SimpleRNNCell)


@dataclass
class RecurrentPart:
    """One traced recurrent layer (a Bidirectional wrapper has two)."""

    name: str
    layer: keras.layers.RNN
    wrapper: keras.layers.Layer  # the model's layer whose input feeds it

    @property
    def cell(self):
        return self.layer.cell


def _gate_names(cell) -> tuple[str, ...]:
    """The gates traced for `cell`: a stock cell reports those of its kgates twin."""
    if isinstance(cell, GatedCellMixin):
        return cell.gate_names
    if isinstance(cell, keras.layers.LSTMCell):
        return LSTMCell.gate_names
    if isinstance(cell, keras.layers.GRUCell):
        return GRUCell.gate_names
    return ()


def _supported(layer: keras.layers.RNN) -> bool:
    return isinstance(layer.cell, (GatedCellMixin, *STOCK_CELLS))


def recurrent_parts(model: keras.Model, names=None) -> list[RecurrentPart]:
    """The recurrent layers of `model` (top level) that kgates can trace.

    Args:
        model: a Keras model.
        names: optional layer names to keep (the wrapper's name for
            `Bidirectional`); an unknown name is an error.
    """
    parts = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.Bidirectional) and isinstance(
            layer.forward_layer, keras.layers.RNN
        ):
            candidates = [
                RecurrentPart(f"{layer.name}/forward", layer.forward_layer, layer),
                RecurrentPart(f"{layer.name}/backward", layer.backward_layer, layer),
            ]
        elif isinstance(layer, keras.layers.RNN):
            candidates = [RecurrentPart(layer.name, layer, layer)]
        else:
            continue
        for part in candidates:
            if _supported(part.layer):
                parts.append(part)
            else:
                warnings.warn(
                    f"kgates: layer {part.name!r} has a cell kgates cannot trace "
                    f"({type(part.cell).__name__}); it is left out.",
                    stacklevel=2,
                )
    if names is not None:
        names = [names] if isinstance(names, str) else list(names)
        known = {p.wrapper.name for p in parts} | {p.name for p in parts}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ValueError(
                f"kgates: no recurrent layer named {unknown} in model {model.name!r}; "
                f"its recurrent layers are {sorted(known)}."
            )
        parts = [p for p in parts if p.name in names or p.wrapper.name in names]
    if not parts:
        raise ValueError(
            f"kgates: model {model.name!r} has no recurrent layer to trace "
            "(keras.layers.LSTM, GRU, SimpleRNN, RNN with a kgates or Keras cell, "
            "or Bidirectional around one)."
        )
    return parts


def _twin(layer: keras.layers.RNN, input_shape) -> keras.layers.RNN:
    """A layer with `layer`'s weights that returns its h and gates at every step.

    LSTM and GRU cells (Keras's or kgates's) get a `kgates.LSTM`/`GRU` with
    `return_gates`, which recomputes the gates from a fused kernel's h where
    one runs (a GPU; on torch, whose CPU kernel is fused too, everywhere) and
    steps the kgates cell elsewhere; a SimpleRNN a copy returning its h
    sequence.
    """
    cell = layer.cell
    if isinstance(cell, (keras.layers.LSTMCell, keras.layers.GRUCell)):
        kind = LSTM if isinstance(cell, keras.layers.LSTMCell) else GRU
        config = cell.get_config()
        for key in ("name", "trainable", "return_gates", "implementation"):
            config.pop(key, None)
        gate_path = getattr(layer, "gate_path", "auto")
        twin = kind(
            **config,
            return_sequences=True,
            return_gates=True,
            go_backwards=layer.go_backwards,
            gate_path=gate_path,
        )
        if gate_path == "auto" and twin.fusable and keras.backend.backend() == "torch":
            # A trace is a forward pass: Keras's torch kernel (on a CPU too)
            # plus the recomputation beats stepping there (BENCHMARKS.md).
            twin.gate_path = "recompute"
    else:
        config = {**layer.get_config(), "return_sequences": True, "return_state": False}
        config["stateful"] = False
        twin = type(layer).from_config(config)
    twin.build(tuple(input_shape))
    return twin


def _sequence_input(part: RecurrentPart):
    """The symbolic sequence fed to a part (a layer given a mask lists it too)."""
    value = part.wrapper.input
    return value[0] if isinstance(value, (list, tuple)) else value


class PartGates(keras.layers.Layer):
    """A recurrent part's h and gates, packed, in the input's time order.

    Holds the part's twin (see `_twin`) and returns `"packed"`: h then the
    gates along the last axis, `(batch, time, units * (1 + gates))`, float32
    (one array per part to bring to the host, split there), and `"_valid"`:
    1 at real steps, 0 at padded ones (whose outputs are zeros).
    """

    def __init__(self, part: RecurrentPart, input_shape, **kwargs):
        super().__init__(dtype="float32", **kwargs)
        self.rnn = _twin(part.layer, input_shape)
        self.backwards = part.layer.go_backwards
        self.supports_masking = True

    def call(self, x, mask=None):
        packed = ops.cast(self.rnn(x, mask=mask), "float32")
        if self.backwards:  # the twin's outputs are in processing order
            packed = ops.flip(packed, axis=1)
        if mask is None:
            valid = ops.ones(ops.shape(x)[:2], "float32")
        else:
            valid = ops.cast(mask, "float32")
            packed = packed * valid[..., None]
        return {"packed": packed, "_valid": valid}

    def compute_mask(self, x, mask=None):
        return None

    def compute_output_spec(self, x, mask=None):
        return {
            "packed": keras.KerasTensor((*x.shape[:2], self.rnn.cell.output_size), "float32"),
            "_valid": keras.KerasTensor(tuple(x.shape[:2]), "float32"),
        }

    def split(self, packed: np.ndarray) -> dict:
        """`{"h": ..., gate: ...}`: views of a packed NumPy array."""
        if isinstance(self.rnn.cell, GatedCellMixin):
            return split_gates(packed, self.rnn)
        return {"h": packed}  # a SimpleRNN's h


class Tracer:
    """Traces the gates of a model's recurrent layers; reusable across calls.

    Built once per model: one Keras model that returns every gate of every
    traced layer, which Keras compiles (tf.function, jax.jit) on first use
    unless `compiled=False`. Each call copies the current weights in.
    `kgates.trace` is the one-off, uncompiled form.
    """

    def __init__(self, model: keras.Model, layers=None, compiled: bool = True):
        if not isinstance(model, keras.Model):
            raise TypeError(f"kgates.trace: `model` must be a keras.Model, got {model!r}.")
        self.model = model
        self.compiled = compiled
        self.parts = recurrent_parts(model, layers)
        try:
            inputs = model.inputs
        except (AttributeError, ValueError):
            inputs = None
        if not inputs:
            raise ValueError(
                f"kgates.trace: model {model.name!r} has no symbolic inputs. Build it "
                "with keras.Input (functional or Sequential API) before tracing."
            )
        try:  # keep the structure of the model's inputs (a dict, a list...)
            self._structure = model.input
        except (AttributeError, ValueError):  # a Sequential model
            self._structure = inputs[0] if len(inputs) == 1 else inputs
        self._gates = {p.name: PartGates(p, _sequence_input(p).shape) for p in self.parts}
        self._maskers = [
            layer
            for layer in model.layers
            if isinstance(layer, keras.layers.Masking)
            or (isinstance(layer, keras.layers.Embedding) and layer.mask_zero)
        ]
        self._models = {}

    def _gate_model(self, explicit_mask: bool, steps=None) -> keras.Model:
        key = (explicit_mask, steps)
        if key not in self._models:
            inputs = self._structure
            mask = None
            if explicit_mask:
                mask = keras.Input((steps,), dtype="bool", name="kgates_mask")
                inputs = [self._structure, mask]
            outputs = {}
            for part in self.parts:
                x = _sequence_input(part)
                kwargs = {}
                if mask is not None and x.shape[1] == steps:
                    kwargs["mask"] = mask
                for name, value in self._gates[part.name](x, **kwargs).items():
                    outputs[f"{part.name}/{name}"] = value
            self._models[key] = keras.Model(inputs, outputs, name="kgates_trace")
        return self._models[key]

    def __call__(self, x, mask=None) -> dict:
        for part in self.parts:
            self._gates[part.name].rnn.set_weights(part.layer.get_weights())
        if mask is None:
            model, inputs = self._gate_model(False), x
        else:
            mask = np.asarray(ops.convert_to_numpy(mask), bool)
            model, inputs = self._gate_model(True, mask.shape[1]), [x, mask]
        if self.compiled:
            out = model.predict_on_batch(inputs)
        else:
            out = {k: ops.convert_to_numpy(v) for k, v in model(inputs).items()}
        result = {}
        for part in self.parts:
            arrays = self._gates[part.name].split(np.asarray(out[f"{part.name}/packed"]))
            valid = np.asarray(out[f"{part.name}/_valid"]) > 0.5
            result[part.name] = _masked(arrays, None if valid.all() else valid)
        return result

    def layer_inputs(self, x, mask=None):
        """The input sequence of every part, and the (B, T) mask (or None)."""
        if "features" not in self._models:
            wrappers = list(dict.fromkeys(p.wrapper for p in self.parts))
            outputs = [_sequence_input(RecurrentPart("", w, w)) for w in wrappers]
            outputs += [m.input for m in self._maskers]
            self._models["features"] = (wrappers, keras.Model(self._structure, outputs))
        wrappers, features = self._models["features"]
        values = features(x)
        values = values if isinstance(values, (list, tuple)) else [values]
        by_wrapper = dict(zip(wrappers, values[: len(wrappers)]))
        if mask is None:
            for layer, value in zip(self._maskers, values[len(wrappers) :]):
                mask = layer.compute_mask(value)
                if mask is not None:
                    break
        if mask is not None:
            mask = ops.convert_to_tensor(ops.convert_to_numpy(mask).astype(bool))
        return {p.name: by_wrapper[p.wrapper] for p in self.parts}, mask


def _masked(arrays: dict, mask) -> dict:
    """NumPy masked arrays: padded steps are masked, never data."""
    if mask is None:
        return {k: np.ma.masked_array(v) for k, v in arrays.items()}
    padded = np.broadcast_to(~mask.astype(bool)[..., None], next(iter(arrays.values())).shape)
    return {
        k: np.ma.masked_array(np.where(padded, v.dtype.type(0), v), mask=padded)
        for k, v in arrays.items()
    }


def trace(model: keras.Model, x, mask=None, layers=None) -> dict:
    """Every gate sequence of every recurrent layer of `model`.

    Works on models built with kgates cells (with or without `return_gates`)
    and on stock `keras.layers.LSTM`, `GRU` and `SimpleRNN` layers, whose gates
    are recomputed exactly from their weights, inputs and outputs.

    Args:
        model: a functional or Sequential Keras model built on `keras.Input`.
        x: a batch of model inputs.
        mask: optional `(batch, time)` boolean mask of real (True) and padded
            (False) steps. Default: the mask of the model's `Masking` or
            `Embedding(mask_zero=True)` layer, if it has one.
        layers: optional name or names of the layers to trace. Default: all.

    Returns:
        `{layer_name: {"h": ..., gate: ...}}` of NumPy masked arrays `(batch,
        time, units)` in the input's time order (also for `go_backwards`);
        padded steps are masked. A `Bidirectional` layer gives
        `"{name}/forward"` and `"{name}/backward"`; a `SimpleRNN` only `"h"`.

    Example:

    >>> model = keras.Sequential([keras.Input((20, 5)), keras.layers.LSTM(8)])
    >>> gates = kgates.trace(model, np.ones((4, 20, 5)))
    >>> gates["lstm"]["f"].shape
    (4, 20, 8)
    """
    return Tracer(model, layers, compiled=False)(x, mask)
