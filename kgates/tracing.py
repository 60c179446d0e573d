"""Every gate of every recurrent layer of a model, as NumPy arrays.

kgates cells step their own gates. Stock Keras `LSTM`, `GRU` and `SimpleRNN`
layers (and `keras.layers.RNN` around their cells) are left as they are: their
gates are a pure function of (x_t, h_tm1), so given the layer's own h sequence
every gate of every step comes out of one batched matmul, and the LSTM's cell
state out of a scan of the linear recurrence c_t = f_t * c_tm1 + i_t * g_t
(DESIGN.md §4).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from kgates.gates import GatedCellMixin
from kgates.gru import GRUCell
from kgates.lstm import LSTMCell
from kgates.rnn import GatedRNN

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


SCANS = ("associative", "sequential")


def linear_scan(a, b, method: str | None = None):
    """s_t = a_t * s_tm1 + b_t along axis 1 of (B, T, ...) tensors, from s_0 = 0.

    `method`: "associative" (keras.ops.associative_scan: log2(T) elementwise
    passes over the whole sequence) or "sequential" (keras.ops.scan: T steps of
    one fused multiply-add). Default: the faster here (experiments/BENCHMARKS.md):
    sequential on torch (whose associative scan builds its intermediates on
    the CPU) and on TensorFlow without a GPU, associative elsewhere.
    """
    a, b = ops.convert_to_tensor(a), ops.convert_to_tensor(b)
    if method is None:
        from kgates.fused import accelerator_available

        backend = keras.backend.backend()
        sequential = backend == "torch" or (backend == "tensorflow" and not accelerator_available())
        method = "sequential" if sequential else "associative"
    if method not in SCANS:
        raise ValueError(f"linear_scan: `method` must be one of {SCANS}, got {method!r}.")
    if method == "associative":

        def combine(earlier, later):
            return earlier[0] * later[0], later[0] * earlier[1] + later[1]

        s = ops.associative_scan(combine, (a, b), axis=1)[1]
    elif keras.backend.backend() == "torch":
        # Eagerly, over unbound steps: one backward node for all the slices,
        # where indexing step by step would zero-fill the whole sequence per step.
        s_t, steps = ops.zeros_like(b[:, 0]), []
        for a_t, b_t in zip(ops.unstack(a, axis=1), ops.unstack(b, axis=1)):
            s_t = a_t * s_t + b_t
            steps.append(s_t)
        s = ops.stack(steps, axis=1)
    else:

        def step(s_tm1, ab):
            s_t = ab[0] * s_tm1 + ab[1]
            return s_t, s_t

        a_t, b_t = ops.swapaxes(a, 0, 1), ops.swapaxes(b, 0, 1)
        s = ops.swapaxes(ops.scan(step, ops.zeros_like(b_t[0]), (a_t, b_t))[1], 0, 1)
    return ops.reshape(s, ops.shape(b))  # TensorFlow graphs lose the static rank


def _previous(h, mask):
    """h_tm1 for every step: the last unmasked h before t (zeros at the start)."""
    if mask is not None:
        m = ops.cast(mask, h.dtype)[..., None]
        h = linear_scan(1.0 - m, m * h)
    return ops.concatenate([ops.zeros_like(h[:, :1]), h[:, :-1]], axis=1)


def _f32(v):
    return ops.cast(v, "float32")


def lstm_gates(cell, x, h, mask=None) -> dict:
    """Recomputes an LSTM's gates from its inputs `x` and outputs `h` (B, T, .)."""
    h_tm1 = _previous(h, mask)
    z = ops.matmul(x, _f32(cell.kernel)) + ops.matmul(h_tm1, _f32(cell.recurrent_kernel))
    if cell.use_bias:
        z = z + _f32(cell.bias)
    zi, zf, zg, zo = ops.split(z, 4, axis=-1)
    act, rec = cell.activation, cell.recurrent_activation
    i, f, g, o = rec(zi), rec(zf), act(zg), rec(zo)
    if mask is None:
        c = linear_scan(f, i * g)
    else:  # a masked step keeps c: c_t = 1 * c_tm1 + 0
        m = ops.cast(mask, "bool")[..., None]
        c = linear_scan(ops.where(m, f, 1.0), ops.where(m, i * g, 0.0))
    return {"i": i, "f": f, "g": g, "o": o, "c": c}


def gru_gates(cell, x, h, mask=None) -> dict:
    """Recomputes a GRU's gates from its inputs `x` and outputs `h` (B, T, .)."""
    units = cell.units
    h_tm1 = _previous(h, mask)
    kernel, recurrent = _f32(cell.kernel), _f32(cell.recurrent_kernel)
    xw = ops.matmul(x, kernel)
    if cell.use_bias:
        xw = xw + _f32(cell.bias[0] if cell.reset_after else cell.bias)
    xz, xr, xg = ops.split(xw, 3, axis=-1)
    if cell.reset_after:
        hu = ops.matmul(h_tm1, recurrent)
        if cell.use_bias:
            hu = hu + _f32(cell.bias[1])
        hz, hr, hg = ops.split(hu, 3, axis=-1)
    else:
        hz, hr = ops.split(ops.matmul(h_tm1, recurrent[:, : 2 * units]), 2, axis=-1)
    z = cell.recurrent_activation(xz + hz)
    r = cell.recurrent_activation(xr + hr)
    if cell.reset_after:
        g = cell.activation(xg + r * hg)
    else:
        g = cell.activation(xg + ops.matmul(r * h_tm1, recurrent[:, 2 * units :]))
    return {"z": z, "r": r, "g": g}


def _h_sequence_layer(layer: keras.layers.RNN, input_shape) -> keras.layers.RNN:
    """A copy of `layer` that returns its whole h sequence (and nothing else)."""
    if isinstance(layer.cell, GatedCellMixin):
        cell_config = {**layer.cell.get_config(), "return_gates": True}
        clone = GatedRNN(
            type(layer.cell).from_config(cell_config),
            return_sequences=True,
            go_backwards=layer.go_backwards,
        )
    else:
        config = {**layer.get_config(), "return_sequences": True, "return_state": False}
        config["stateful"] = False
        clone = type(layer).from_config(config)
    clone.build(tuple(input_shape))
    return clone


def _sequence_input(part: RecurrentPart):
    """The symbolic sequence fed to a part (a layer given a mask lists it too)."""
    value = part.wrapper.input
    return value[0] if isinstance(value, (list, tuple)) else value


class PartGates(keras.layers.Layer):
    """A recurrent part's h and gates, in the input's time order, as a Keras layer.

    Holds a copy of the part's layer that returns the whole h sequence (a
    `GatedRNN` for kgates cells) and recomputes the gates of stock cells from
    it. Also returns `"_valid"`: 1 at real steps, 0 at padded ones (whose
    gates are zeros).
    """

    def __init__(self, part: RecurrentPart, input_shape, **kwargs):
        super().__init__(dtype="float32", **kwargs)
        self.rnn = _h_sequence_layer(part.layer, input_shape)
        self.backwards = part.layer.go_backwards
        self.supports_masking = True

    def call(self, x, mask=None):
        out = self.rnn(x, mask=mask)
        m = None if mask is None else (ops.flip(mask, axis=1) if self.backwards else mask)
        if isinstance(out, dict):  # a kgates cell stepped its own gates
            gates = out
        else:
            xs = _f32(ops.flip(x, axis=1) if self.backwards else x)
            cell = self.rnn.cell
            h = _f32(out)
            if isinstance(cell, keras.layers.LSTMCell):
                gates = {"h": h, **lstm_gates(cell, xs, h, m)}
            elif isinstance(cell, keras.layers.GRUCell):
                gates = {"h": h, **gru_gates(cell, xs, h, m)}
            else:
                gates = {"h": h}
        gates = {k: _f32(v) for k, v in gates.items()}
        if self.backwards:
            gates = {k: ops.flip(v, axis=1) for k, v in gates.items()}
        if mask is None:
            valid = ops.ones(ops.shape(x)[:2], "float32")
        else:
            valid = ops.cast(mask, "float32")
            gates = {k: v * valid[..., None] for k, v in gates.items()}
        return {**gates, "_valid": valid}

    def compute_mask(self, x, mask=None):
        return None

    def compute_output_spec(self, x, mask=None):
        cell = self.rnn.cell
        names = ("h", *_gate_names(cell))
        spec = {n: keras.KerasTensor((*x.shape[:2], cell.units), "float32") for n in names}
        return {**spec, "_valid": keras.KerasTensor(tuple(x.shape[:2]), "float32")}


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
            prefix = f"{part.name}/"
            arrays = {
                k[len(prefix) :]: np.asarray(v) for k, v in out.items() if k.startswith(prefix)
            }
            valid = arrays.pop("_valid") > 0.5
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
