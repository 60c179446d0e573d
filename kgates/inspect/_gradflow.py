"""Gradient flow over time: the norm of dL/dh_t and dL/dc_t for every step t.

The model is run once with a zero tensor added to each traced layer's output,
which gives dL/dy, the gradient that reaches the layer from above. Then the
layer's recurrence is unrolled step by step with an equivalent kgates cell
(same weights) and zero perturbations added to h_t and c_t; the gradient of
sum_t <dL/dy_t, y_t> with respect to those perturbations is dL/dh_t and dL/dc_t,
through every path, as backpropagation through time sees it. y_t is the layer's
step output: h_t, followed by the gates when the layer returns them, so a loss on
the gates counts as well. On a GPU an LSTM or GRU with Keras's options takes one
pass of its layer instead, which gives the same numbers (`_onepass`).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from kgates.cells import _backend
from kgates.cells._equivalent import copy_weights, equivalent_cell
from kgates.cells._lstm import LSTMCell
from kgates.inspect._onepass import OnePass, one_pass_flow
from kgates.inspect._walk import KeptStates, ModelWalk, RecurrentPart

# A `kgates.LSTM`/`GRU` (or Keras's) with Keras's options can flow through one pass
# of its layer (`_onepass`): None chooses it on a GPU, where that pass is a fused
# kernel and unrolling the cell is T steps of small kernels; on a CPU unrolling
# is the faster (experiments/BENCHMARKS.md). True or False forces one way.
ONE_PASS: bool | None = None


def _loss_fn(model: keras.Model, with_targets: bool):
    loss = getattr(model, "loss", None)
    if with_targets and loss is not None and not isinstance(loss, (list, dict)):
        loss = keras.losses.get(loss)
        return lambda pred, y: ops.mean(loss(y, pred))

    def surrogate(pred, y=None):  # no targets: half the mean squared outputs
        return sum(
            0.5 * ops.mean(ops.sum(ops.reshape(p, (ops.shape(p)[0], -1)) ** 2, axis=-1))
            for p in keras.tree.flatten(pred)
        )

    return surrogate


class _Patched:
    """Adds a perturbation to every output of each traced layer while active: its
    output (each entry of a `GatedRNN`'s dict) and the final states it returns."""

    def __init__(self, parts: list[RecurrentPart]):
        self.parts = parts
        self.deltas = {}
        self.shapes = {}  # part name: the shapes of its outputs, output first
        self.pieces = {}  # part name: how many of those make its output (a dict's keys)

    def _call(self, part, original):
        def call(*args, **kwargs):
            out = original(*args, **kwargs)
            many = isinstance(out, (list, tuple))
            first, states = (out[0], list(out[1:])) if many else (out, [])
            keys = ("h", *part.cell.gate_names) if isinstance(first, dict) else ()
            values = [first[k] for k in keys] if keys else [first]
            values += states
            self.shapes[part.name] = [tuple(v.shape) for v in values]
            self.pieces[part.name] = pieces = len(keys) or 1
            deltas = self.deltas.get(part.name)
            if deltas is None:
                return out
            values = [v + ops.cast(d, v.dtype) for v, d in zip(values, deltas)]
            first = {**first, **dict(zip(keys, values))} if keys else values[0]
            return [first, *values[pieces:]] if many else first

        return call

    def __enter__(self):
        for part in self.parts:
            part.layer.call = self._call(part, part.layer.call)
        return self

    def __exit__(self, *exc):
        self.deltas.clear()
        for part in self.parts:
            del part.layer.call  # back to the class's method


def _flow_fn(cell, has_c: bool, zero_output: bool):
    """sum_t <dL/dy_t, y_t> of an unrolled cell, perturbed by (dh_t, dc_t). y_t is the
    step's output (h_t, followed by the gates for a `return_gates` cell, so that a
    loss on gates is counted too), and at a padded step zeros (`zero_output`) or the
    output carried over it, as the layer outputs."""
    units = cell.units

    def total(deltas, x, mask, upstream_seq, upstream_last, upstream_states, init):
        dh, dc = deltas
        xs = (
            ops.transpose(x, (1, 0, 2)),
            ops.transpose(mask)[..., None],
            dh,
            dc,
            ops.transpose(upstream_seq, (1, 0, 2)),
        )

        def step(carry, inputs):
            states, last = carry[:-1], carry[-1]
            x_t, m_t, dh_t, dc_t, g_t = inputs
            if has_c:  # dL/dc_t: c_t is perturbed before o_t and h_t see it
                out, new = cell.call(x_t, list(states), c_delta=dc_t)
            else:
                out, new = cell.call(x_t, list(states))
            new = list(new) if isinstance(new, (list, tuple)) else [new]
            new[0] = new[0] + dh_t
            if cell.return_gates:  # h (perturbed) and the gates, as the layer packs them
                out = ops.concatenate([new[0], out[:, units:]], axis=-1)
            else:
                out = new[0]
            new = [m_t * n + (1.0 - m_t) * s for n, s in zip(new, states)]
            last = m_t * out + (1.0 - m_t) * last  # the last real step's output
            y_t = m_t * out if zero_output else last
            # (TensorFlow's scan wants outputs shaped like the carry.)
            return [*new, last], [*(ops.zeros_like(s) for s in new), g_t * y_t]

        start = ops.zeros((ops.shape(x)[0], upstream_last.shape[-1]), x.dtype)
        final, contributions = ops.scan(step, [*init, start], xs)
        ends = sum(ops.sum(g * s) for g, s in zip(upstream_states, final[:-1]))  # return_state
        return ops.sum(contributions[-1]) + ops.sum(upstream_last * final[-1]) + ends

    return total


def _chunks(values: list, sizes: list[int]) -> list[list]:
    """`values` cut into consecutive runs of `sizes`."""
    ends = np.cumsum([0, *sizes])
    return [values[a:b] for a, b in zip(ends[:-1], ends[1:])]


def _state_sizes(cell) -> list[int]:
    sizes = cell.state_size
    return list(sizes) if isinstance(sizes, (list, tuple)) else [sizes]


class GradientFlow:
    """Measures gradient flow of a model's recurrent layers; reusable across calls.

    Compiles (tf.function, jax.jit) its two gradient computations on first use;
    each call reads the current weights. `kgates.gradient_flow` is the one-off form.

    Args:
        model: a functional or Sequential Keras model built on `keras.Input`.
        layers: optional name or names of the recurrent layers to measure.
        walk: the model's `ModelWalk`, when one exists already (e.g. a `Tracer`'s).

    Example:

    >>> flow = kgates.GradientFlow(model)
    >>> flow(x[:32], y[:32])["lstm"]["c"].shape
    (20,)
    """

    def __init__(self, model: keras.Model, layers=None, walk: ModelWalk | None = None):
        self.model = model
        self.walk = walk or ModelWalk(model, layers)
        self._upstream = {}
        # one patch for every call: torch runs the compiled loss anew each time, and
        # its deltas must reach the wrappers of the patch that is active
        self._patch = _Patched(self.walk.parts)
        self._cells = {}
        self._flows = {}

    def upstream(self, x, y=None) -> dict:
        """dL/d(output) of every traced layer: `(output, [state, ...])`, the output
        in the layer's packed layout (h, then any gates), then each returned state."""
        parts = self.walk.parts
        names = [p.name for p in parts]
        loss_fn = _loss_fn(self.model, y is not None)
        patch = self._patch
        with patch:
            key = y is not None
            if key not in self._upstream:
                with KeptStates(self.model):
                    self.model(x)  # records the output shapes
                shapes = dict(patch.shapes)
                sizes = [len(shapes[n]) for n in names]

                def loss(deltas, x, *y):
                    patch.deltas.update(zip(names, _chunks(deltas, sizes)))
                    return loss_fn(self.model(x), *y)

                self._upstream[key] = (_backend.compiled_gradient(loss, self.model), shapes, sizes)
            grad, shapes, sizes = self._upstream[key]
            zeros = [ops.zeros(shape, "float32") for n in names for shape in shapes[n]]
            with KeptStates(self.model):  # runs the model: stateful layers move on
                grads = grad(zeros, x) if y is None else grad(zeros, x, y)
        result = {}
        for n, chunk in zip(names, _chunks(list(grads), sizes)):
            pieces = patch.pieces[n]
            result[n] = (ops.concatenate(chunk[:pieces], axis=-1), chunk[pieces:])
        return result

    def part(self, part: RecurrentPart, x, mask, upstream, init=None) -> dict:
        """Mean over samples of ||dL/dh_t|| (and ||dL/dc_t||), in input time order;
        `upstream` as `GradientFlow.upstream` gives it, `init` the states the layer
        starts from (default zeros)."""
        cell = self._cells.get(part.name)
        if cell is None:
            cell = self._cells[part.name] = equivalent_cell(part.cell)
        has_c = isinstance(cell, LSTMCell)
        upstream, upstream_states = upstream
        upstream = ops.cast(upstream, "float32")
        zero_output = getattr(part.layer, "zero_output_for_mask", False)
        if part.name not in self._flows:
            one_pass = _backend.device_of(x) == "gpu" if ONE_PASS is None else ONE_PASS
            flow = one_pass_flow(cell) if one_pass else None
            if flow is None:
                # a packed output (return_gates): the loss may reach the gates as well
                cell.return_gates = upstream.shape[-1] > cell.units
                stepped = _flow_fn(cell, has_c, zero_output)
                flow = _backend.compiled_gradient(stepped, cell)
            self._flows[part.name] = flow
        flow = self._flows[part.name]
        backwards = part.layer.go_backwards
        x = ops.cast(x, "float32")
        batch, steps = x.shape[0], x.shape[1]
        given = mask is not None
        mask = ops.cast(mask, "float32") if given else ops.ones((batch, steps), "float32")
        if backwards:
            x, mask = ops.flip(x, axis=1), ops.flip(mask, axis=1)
        width = upstream.shape[-1]
        if len(upstream.shape) == 3:
            upstream_seq, upstream_last = upstream, ops.zeros((batch, width), "float32")
        else:
            upstream_seq, upstream_last = ops.zeros((batch, steps, width), "float32"), upstream
        if init is None:
            init = [ops.zeros((batch, size), "float32") for size in _state_sizes(cell)]
        init = [ops.cast(s, "float32") for s in init]
        finals = [ops.cast(g, "float32") for g in upstream_states] or [
            ops.zeros_like(s) for s in init
        ]
        if isinstance(flow, OnePass):
            flow.copy_weights(part.cell)
            args = (mask if given else None, upstream_seq, upstream_last, finals, init)
            grads = [ops.swapaxes(g, 0, 1) for g in flow(x, *args, zero_output)]
        else:
            copy_weights(part.cell, cell)
            zeros = [ops.zeros((steps, batch, cell.units), "float32") for _ in range(2)]
            grads = flow(zeros, x, mask, upstream_seq, upstream_last, finals, init)
        # the mean over the real steps' samples, on the device: (time,) comes back
        valid = ops.transpose(mask) > 0.5  # (time, batch), as the gradients
        count = ops.maximum(ops.sum(ops.cast(valid, "float32"), axis=1), 1.0)
        result = {}
        for name, grad in zip(("h", "c") if has_c else ("h",), grads):
            norms = ops.where(valid, ops.norm(grad, axis=-1), 0.0)
            mean = ops.convert_to_numpy(ops.sum(norms, axis=1) / count).astype(np.float64)
            result[name] = mean[::-1] if backwards else mean
        return result

    def __call__(self, x, y=None, mask=None) -> dict:
        x = self.walk.check_inputs(x, "kgates.gradient_flow")
        batch = keras.tree.flatten(x)[0].shape[0]
        rows = [np.shape(v)[0] if np.ndim(v) else 0 for v in keras.tree.flatten(y)]
        if y is not None and any(r != batch for r in rows):
            raise ValueError(
                f"kgates.gradient_flow: argument `y` must have one target per input "
                f"sequence ({batch}), got {rows[0] if len(rows) == 1 else rows}."
            )
        mask = self.walk.check_mask(mask, x, "kgates.gradient_flow")
        inputs, mask = self.walk.layer_inputs(x, mask)
        upstream = self.upstream(x, y)
        starts = self.walk.initial_states(x)  # as the model
        flows = {}
        for part in self.walk.parts:
            xs = inputs[part.name]
            if mask is not None and mask.shape[1] != xs.shape[1]:
                raise ValueError(
                    f"kgates.gradient_flow: argument `mask` has {mask.shape[1]} steps, but "
                    f"layer {part.name!r} sees {xs.shape[1]}."
                )
            flows[part.name] = self.part(part, xs, mask, upstream[part.name], starts.get(part.name))
        return flows


def gradient_flow(model: keras.Model, x, y=None, mask=None, layers=None) -> dict:
    """Norms of dL/dh_t and dL/dc_t along time, for every recurrent layer.

    Args:
        model: a functional or Sequential Keras model built on `keras.Input`.
        x: a batch of inputs.
        y: optional targets. With targets and a compiled single loss, L is the
            model's loss; otherwise L is half the mean squared norm of the
            model's outputs.
        mask: optional `(batch, time)` mask (default: the model's own mask).
        layers: optional layer name(s) to keep.

    Returns:
        `{layer_name: {"h": (time,), "c": (time,)}}`: the mean over samples of
        `||dL/dh_t||` and, for LSTMs, `||dL/dc_t||`, in the input's time order;
        padded steps are left out of the mean. A stateful layer starts from the
        state it carries (for a batch of its size), and keeps it.

    Example:

    >>> flow = kgates.gradient_flow(model, x[:32], y[:32])
    >>> flow["lstm"]["c"].shape
    (20,)
    """
    return GradientFlow(model, layers=layers)(x, y, mask)


def reach(norms: np.ndarray, ratio: float = 0.01) -> int:
    """How many steps back from the last the gradient stays alive: the unbroken run of
    steps, ending at the last, at each of which the norm is >= `ratio` of the largest
    it has been at the steps after it (so a gradient that grows going back reaches
    all the way). A rise past a gap does not count; 0 if the last step has none."""
    back = np.nan_to_num(np.asarray(norms, np.float64))[::-1]
    peaks = np.maximum.accumulate(back)
    dead = np.flatnonzero((back < ratio * peaks) | (peaks <= 0.0))
    return int(dead[0]) if dead.size else len(back)
