"""Gradient flow over time: the norm of dL/dh_t and dL/dc_t for every step t.

The model is run once with a zero tensor added to each traced layer's output,
which gives dL/dy, the gradient that reaches the layer from above. Then the
layer's recurrence is unrolled step by step with an equivalent kgates cell
(same weights) and zero perturbations added to h_t and c_t; the gradient of
sum_t <dL/dy_t, h_t> with respect to those perturbations is dL/dh_t and dL/dc_t,
through every path, as backpropagation through time sees it.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from kgates.gates import GatedCellMixin
from kgates.gru import GRUCell
from kgates.lstm import LSTMCell
from kgates.trace import RecurrentPart, Tracer


def equivalent_cell(cell) -> GatedCellMixin:
    """A built kgates cell computing what `cell` computes, with its weights."""
    if isinstance(cell, GatedCellMixin):
        clone = type(cell).from_config({**cell.get_config(), "return_gates": False})
    elif isinstance(cell, keras.layers.LSTMCell):
        clone = LSTMCell.from_config(cell.get_config())
    elif isinstance(cell, keras.layers.GRUCell):
        clone = GRUCell.from_config(cell.get_config())
    elif isinstance(cell, keras.layers.SimpleRNNCell):
        # A GRU with r = 1 and z = 0 is a plain RNN with the candidate's weights.
        clone = GRUCell(
            cell.units,
            activation=cell.activation,
            use_bias=cell.use_bias,
            reset_after=False,
            pin={"z": 0.0, "r": 1.0},
        )
    else:
        raise TypeError(f"kgates: no kgates equivalent for cell {type(cell).__name__}.")
    clone.build((None, cell.kernel.shape[0]))
    clone.set_weights(cell.get_weights())
    return clone


def _gradients(fn, tensors: list) -> list:
    """d fn(tensors) / d tensors, with the backend's autodiff."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            tape.watch(tensors)
            value = fn(tensors)
        return tape.gradient(value, tensors)
    if backend == "jax":
        import jax

        return jax.grad(fn)(tensors)
    if backend == "torch":
        import torch

        tensors = [t.detach().requires_grad_(True) for t in tensors]
        return list(torch.autograd.grad(fn(tensors), tensors, allow_unused=True))
    raise NotImplementedError(f"kgates: gradient flow needs autodiff; backend {backend!r}.")


def _loss_fn(model: keras.Model, y):
    loss = getattr(model, "loss", None)
    if y is not None and loss is not None and not isinstance(loss, (list, dict)):
        loss = keras.losses.get(loss)
        return lambda pred: ops.mean(loss(y, pred))

    def surrogate(pred):  # no targets: the gradient of half the squared outputs
        leaves = keras.tree.flatten(pred)
        return sum(
            0.5 * ops.mean(ops.sum(ops.reshape(p, (p.shape[0], -1)) ** 2, -1)) for p in leaves
        )

    return surrogate


def _upstream_gradients(model, x, y, parts: list[RecurrentPart]) -> dict:
    """dL/d(output) of each part's layer, in the layer's own output layout."""
    shapes = {}
    box = {}
    originals = {p.name: p.layer.call for p in parts}

    def patch(part):
        original = originals[part.name]

        def call(*args, **kwargs):
            out = original(*args, **kwargs)
            first = out[0] if isinstance(out, (list, tuple)) else out
            h = first["h"] if isinstance(first, dict) else first
            shapes[part.name] = tuple(h.shape)
            delta = box.get(part.name)
            if delta is None:
                return out
            h = h + ops.cast(delta, h.dtype)
            if isinstance(first, dict):
                first = {**first, "h": h}
            else:
                first = h
            return [first, *out[1:]] if isinstance(out, (list, tuple)) else first

        part.layer.call = call

    loss_fn = _loss_fn(model, y)
    try:
        for part in parts:
            patch(part)
        model(x)  # records the output shapes
        names = [p.name for p in parts]
        zeros = [ops.zeros(shapes[n], "float32") for n in names]

        def loss(deltas):
            box.update(zip(names, deltas))
            return loss_fn(model(x))

        grads = _gradients(loss, zeros)
    finally:
        box.clear()
        for part in parts:
            del part.layer.call  # back to the class's method
    return dict(zip(names, grads))


def _part_flow(part: RecurrentPart, x, mask, upstream) -> dict:
    cell = equivalent_cell(part.cell)
    backwards = part.layer.go_backwards
    units = cell.units
    if backwards:
        x = ops.flip(x, axis=1)
        mask = None if mask is None else ops.flip(mask, axis=1)
    x = ops.cast(x, "float32")
    steps = x.shape[1]
    has_c = isinstance(cell, LSTMCell)
    upstream = ops.cast(upstream, "float32")[..., :units]  # h of a packed output
    batch = x.shape[0]
    m = None if mask is None else ops.cast(mask, "float32")[..., None]
    zeros = [ops.zeros((batch, units), "float32") for _ in range(steps * (2 if has_c else 1))]

    def surrogate(deltas):
        states = [ops.zeros((batch, s), "float32") for s in _state_sizes(cell)]
        total = 0.0
        for t in range(steps):
            if has_c:  # dL/dc_t: c_t is perturbed before o_t and h_t see it
                _, new = cell.call(x[:, t], states, c_delta=deltas[steps + t])
            else:
                _, new = cell.call(x[:, t], states)
            new = list(new) if isinstance(new, (list, tuple)) else [new]
            new[0] = new[0] + deltas[t]
            if m is not None:
                new = [m[:, t] * n + (1.0 - m[:, t]) * s for n, s in zip(new, states)]
            states = new
            if len(upstream.shape) == 3:
                weight = upstream[:, t] if m is None else m[:, t] * upstream[:, t]
                total = total + ops.sum(weight * states[0])
        if len(upstream.shape) == 2:
            total = total + ops.sum(upstream * states[0])
        return total

    grads = _gradients(surrogate, zeros)
    norms = np.stack(
        [
            np.zeros(batch) if g is None else ops.convert_to_numpy(ops.norm(g, axis=-1))
            for g in grads
        ],
        axis=1,
    )
    valid = np.ones((batch, steps), bool) if mask is None else ops.convert_to_numpy(mask)
    valid = np.asarray(valid, bool)
    result = {}
    for k, name in enumerate(("h", "c") if has_c else ("h",)):
        per_sample = norms[:, k * steps : (k + 1) * steps]
        count = np.maximum(valid.sum(axis=0), 1)
        mean = np.where(valid, per_sample, 0.0).sum(axis=0) / count
        result[name] = mean[::-1] if backwards else mean
    return result


def _state_sizes(cell) -> list[int]:
    sizes = cell.state_size
    return list(sizes) if isinstance(sizes, (list, tuple)) else [sizes]


def gradient_flow(model: keras.Model, x, y=None, mask=None, layers=None, tracer=None) -> dict:
    """Norms of dL/dh_t and dL/dc_t along time, for every recurrent layer.

    Args:
        model: a functional or Sequential Keras model built on `keras.Input`.
        x: a batch of inputs.
        y: optional targets. With targets and a compiled single loss, L is the
            model's loss; otherwise L is half the mean squared norm of the
            model's outputs.
        mask: optional `(batch, time)` mask (default: the model's own mask).
        layers: optional layer name(s) to keep.
        tracer: optional `kgates.trace.Tracer` of the model, to reuse.

    Returns:
        `{layer_name: {"h": (time,), "c": (time,)}}`: the mean over samples of
        `||dL/dh_t||` and, for LSTMs, `||dL/dc_t||`, in the input's time order;
        padded steps are left out of the mean.
    """
    tracer = tracer or Tracer(model, layers)
    inputs, mask = tracer.layer_inputs(x, mask)
    upstream = _upstream_gradients(model, x, y, tracer.parts)
    flows = {}
    for part in tracer.parts:
        xs = inputs[part.name]
        part_mask = mask if mask is not None and mask.shape[1] == xs.shape[1] else None
        flows[part.name] = _part_flow(part, xs, part_mask, upstream[part.name])
    return flows


def reach(norms: np.ndarray, ratio: float = 0.01) -> int:
    """How many steps back from the last the gradient stays >= `ratio` of its peak."""
    norms = np.nan_to_num(np.asarray(norms, np.float64))
    peak = norms.max(initial=0.0)
    if peak <= 0.0:
        return 0
    alive = np.flatnonzero(norms >= ratio * peak)
    return int(len(norms) - alive[0])
