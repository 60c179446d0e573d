"""Every gate of every recurrent layer of a model, as NumPy arrays.

Each traced layer gets a twin with its weights that returns h and every gate:
a `kgates.LSTM`/`GRU` with `return_gates` (`equivalent_layer`), for stock Keras
layers and cells too. The twin's path chooser recomputes the gates exactly
from a fused kernel's h where that is the faster forward pass,
and steps the kgates cell elsewhere.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from kgates.cells import _backend
from kgates.cells._equivalent import copy_weights, equivalent_layer
from kgates.cells._gates import split_gates
from kgates.inspect._summaries import PartSummaries, unflatten
from kgates.inspect._walk import ModelWalk, RecurrentPart, carried_state


class PartGates(keras.layers.Layer):
    """A recurrent part's h and gates, packed, in the input's time order.

    Holds the part's twin (`equivalent_layer`) and returns `"packed"`: h then the
    gates along the last axis, `(batch, time, units * (1 + gates))`, float32
    (one array per part to bring to the host, split there), and `"_valid"`:
    1 at real steps, 0 at padded ones (whose outputs are zeros).
    """

    def __init__(self, part: RecurrentPart, carry: bool = False, **kwargs):
        super().__init__(dtype="float32", **kwargs)
        layer = part.layer
        self.source, self.source_layer = layer.cell, layer
        self.rnn = equivalent_layer(
            layer,
            part.sequence_input.shape,
            return_sequences=True,
            return_gates=True,
            gate_path=getattr(layer, "gate_path", "auto"),
            stateful=carry,  # from the state of the stateful `layer` (`sync`)
        )
        self.backwards = layer.go_backwards
        self.state_only = isinstance(self.source, keras.layers.SimpleRNNCell)
        self.supports_masking = True

    def call(self, x, mask=None, initial_state=None):
        packed = ops.cast(self.rnn(x, initial_state=initial_state, mask=mask), "float32")
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

    def sync(self) -> None:
        """The source layer's weights (and, carrying its state, its state) into the
        twin, on the device."""
        copy_weights(self.source, self.rnn.cell)
        if self.rnn.stateful:
            for state, value in zip(self.rnn.states, self.source_layer.states):
                state.assign(ops.copy(value))

    def compute_output_spec(self, x, mask=None, initial_state=None):
        return {
            "packed": keras.KerasTensor((*x.shape[:2], self.rnn.cell.output_size), "float32"),
            "_valid": keras.KerasTensor(tuple(x.shape[:2]), "float32"),
        }

    @property
    def names(self) -> tuple:
        """The packed keys, in order: h, then the twin's gates."""
        return ("h", *self.rnn.cell.gate_names)

    @property
    def keys(self) -> tuple:
        """The keys a trace returns (a SimpleRNN's twin has gates it does not)."""
        return ("h",) if self.state_only else self.names

    def split(self, packed: np.ndarray) -> dict:
        """`{"h": ..., gate: ...}`: views of a packed NumPy array."""
        gates = split_gates(packed, self.rnn)
        return {"h": gates["h"]} if self.state_only else gates  # a SimpleRNN has no gates


class Tracer:
    """Traces the gates of a model's recurrent layers; reusable across calls.

    Built once per model: one Keras model that returns every gate of every
    traced layer, which Keras compiles (tf.function, jax.jit) on first use
    unless `compiled=False`. Each call copies the current weights in (on the
    device). `kgates.trace` is the one-off, uncompiled form (compiled on JAX,
    where a single eager call costs more than the compile).

    Args:
        model: a functional or Sequential Keras model built on `keras.Input`.
        layers: optional name or names of the recurrent layers to trace.
        compiled: let Keras compile the trace. Default: True. False runs it
            eagerly, which is faster for a call or two, except on JAX.

    Example:

    >>> tracer = kgates.Tracer(model)
    >>> tracer(x[:64])["lstm"]["f"].shape
    (64, 20, 8)
    """

    def __init__(self, model: keras.Model, layers=None, compiled: bool = True):
        self.walk = ModelWalk(model, layers)
        self.model = model
        self.compiled = compiled or _backend.compiles_one_off_calls()
        self.parts = self.walk.parts
        self._gates = {p.name: PartGates(p) for p in self.parts}
        # twins of stateful layers that start from their state, for a batch of its size
        self._carrying = {p.name: PartGates(p, carry=True) for p in self.parts if p.layer.stateful}
        self._summaries = {
            name: PartSummaries(g.names, g.keys, g.rnn.cell.units, g.backwards)
            for name, g in self._gates.items()
        }
        self._models = {}
        self._explicit_mask = False  # the model's own mask, passed as an input

    def _twins(self, carry: bool) -> dict:
        """The twin of every part; with `carry`, stateful layers' twins that start from
        their state."""
        return {n: (self._carrying.get(n) if carry else None) or g for n, g in self._gates.items()}

    def _gate_model(
        self, explicit_mask: bool, steps=None, summaries=False, carry=False
    ) -> keras.Model:
        key = (explicit_mask, steps, summaries, carry)
        if key not in self._models:
            inputs = self.walk.structure
            mask = None
            if explicit_mask:
                mask = keras.Input((steps,), dtype="bool", name="kgates_mask")
                inputs = [self.walk.structure, mask]
            outputs = {}
            for part in self.parts:
                x = part.sequence_input
                kwargs = {"initial_state": part.initial_state}  # as the model's
                if mask is not None and x.shape[1] in (None, steps):
                    kwargs["mask"] = mask
                traced = self._twins(carry)[part.name](x, **kwargs)
                if summaries:
                    traced = self._summaries[part.name](traced["packed"], traced["_valid"])
                for name, value in traced.items():
                    outputs[f"{part.name}/{name}"] = value
            self._models[key] = keras.Model(inputs, outputs, name="kgates_trace")
        return self._models[key]

    def __call__(self, x, mask=None) -> dict:
        out = self._run(x, mask, summaries=False)
        result = {}
        for part in self.parts:
            arrays = self._gates[part.name].split(np.asarray(out[f"{part.name}/packed"]))
            valid = np.asarray(out[f"{part.name}/_valid"]) > 0.5
            result[part.name] = _masked(arrays, None if valid.all() else valid)
        return result

    def summaries(self, x, mask=None) -> dict:
        """The dashboards' numbers of every traced part, computed on the device
        (`PartSummaries`): `{part: {key: {stat: value}, "nonfinite": n, "first":
        {key: (1, time, units)}}}`; only these cross to the host."""
        out = self._run(x, mask, summaries=True)
        return {
            p.name: unflatten(out, p.name, self._gates[p.name].names, self._gates[p.name].keys)
            for p in self.parts
        }

    def _run(self, x, mask, summaries: bool) -> dict:
        x = self.walk.check_inputs(x, "kgates.trace")
        batch = keras.tree.flatten(x)[0].shape[0]
        carry = any(carried_state(p.layer, batch) for p in self.parts)
        for twin in self._twins(carry).values():
            twin.sync()
        if mask is None and not self._explicit_mask:
            try:
                model, inputs = self._gate_model(False, summaries=summaries, carry=carry), x
            except ValueError:
                # Keras cannot re-trace some graphs (a model loaded from a .keras file
                # holds its mask ops twice under one name): take the mask from the
                # model's Masking or Embedding layer and pass it explicitly.
                if not self.walk.has_maskers:
                    raise
                self._explicit_mask = True
        if mask is None and self._explicit_mask:
            mask = ops.convert_to_numpy(self.walk.layer_inputs(x)[1])
        if mask is not None:
            mask = self.walk.check_mask(mask, x, "kgates.trace")
            model = self._gate_model(True, mask.shape[1], summaries, carry)
            inputs = [x, mask]
        if self.compiled:
            out = model.predict_on_batch(inputs)
        else:
            out = model(inputs)
        return {k: np.asarray(ops.convert_to_numpy(v)) for k, v in out.items()}


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
        `"{name}/forward"` and `"{name}/backward"`; a `SimpleRNN` only `"h"`. A
        layer starts from the states the model passes it (`initial_state=`, as
        an encoder's final states start a decoder); a stateful layer from the
        state it carries (and keeps it) where `x` has as many sequences as that
        state; others from zeros.

    Example:

    >>> model = keras.Sequential([keras.Input((20, 5)), keras.layers.LSTM(8)])
    >>> gates = kgates.trace(model, np.ones((4, 20, 5)))
    >>> gates["lstm"]["f"].shape
    (4, 20, 8)
    """
    return Tracer(model, layers, compiled=False)(x, mask)
