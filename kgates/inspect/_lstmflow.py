"""An LSTM's gradient flow from one pass through `kgates.LSTM`'s own path.

The stepped flow (`_gradflow`) unrolls the cell and perturbs h_t and c_t at each
step: on a GPU that is a few dozen small kernels a step, forward and back. For
an LSTM with Keras's options (no peepholes, gate recurrence or pins; tanh on c)
the same numbers come from one call of the layer and three reverse scans:

1. An LSTM reads [x_t, e_t] with kernel [W; U], so that step t sees
   h_tm1 + e_t: at e = 0 it is the layer, and dL/de_t is all that h_tm1 passes on
   through step t (its gates, and so c_t and everything after). It runs as a
   `kgates.LSTM` does: Keras's fused kernel for h where the device has one, then
   the gates recomputed in parallel; its backward is the kernel's.
2. dL/dh_t = (the loss's own gradient on h_t) + dL/de at the next real step.
3. dL/dc_t = dL/dh_t * o_t * (1 - tanh(c_t)^2) + (the loss's own gradient on
   c_t) + f_next * dL/dc_next: o_t and the next step's gates do not read c_t.

A padded step carries the states over and outputs zeros or, without
`zero_output_for_mask`, the carried output: the loss's gradients on a carried
output (and on the last output and final states) reach the last real step
before it, and the recurrences above skip the padded steps. Everything runs in
processing order (a `go_backwards` layer's inputs flipped by the caller).
"""

from __future__ import annotations

import keras
from keras import ops

from kgates.cells._backend import compiled_gradient
from kgates.cells._equivalent import NOT_OPTIONS
from kgates.cells._layers import LSTM
from kgates.cells._lstm import LSTMCell
from kgates.cells._recompute import linear_scan


def fusable(cell) -> bool:
    """Whether `cell` (a kgates cell) has this flow: an LSTM with Keras's options."""
    return (
        isinstance(cell, LSTMCell)
        and cell.variant == "NP"
        and cell.output_activation is keras.activations.tanh
    )


def _next(v):
    """v_{t+1} at every t along axis 1; zeros at the last step."""
    return ops.concatenate([v[:, 1:], ops.zeros_like(v[:, :1])], axis=1)


def _reverse_scan(a_next, b):
    """v_t = b_t + a_next_t * v_{t+1} along axis 1, from zero after the last step."""
    return ops.flip(linear_scan(ops.flip(a_next, axis=1), ops.flip(b, axis=1)), axis=1)


def _at_end(upstream_end, steps: int):
    """(batch, width) placed at the last of `steps` steps, zeros before it."""
    before = ops.zeros((upstream_end.shape[0], steps - 1, upstream_end.shape[-1]), "float32")
    return ops.concatenate([before, upstream_end[:, None]], axis=1)


class LSTMFlow:
    """dL/dh_t and dL/dc_t of one LSTM layer's cell (see the module's text).

    Args:
        cell: the layer's kgates `LSTMCell` (built; `fusable`).
    """

    def __init__(self, cell: LSTMCell):
        units, features = cell.units, cell.kernel.shape[0]
        config = {k: v for k, v in cell.get_config().items() if k not in NOT_OPTIONS}
        config.pop("dtype", None)  # float32, as the stepped flow
        self.units = units
        self.layer = LSTM(**config, return_sequences=True, return_gates=True, dtype="float32")
        self.layer.build((None, None, features + units))
        self.grad = compiled_gradient(self._total, self.layer, then=self._finish)

    def copy_weights(self, cell: LSTMCell) -> None:
        """The layer reads `cell`'s weights now (on the device)."""
        kernel = ops.concatenate([cell.kernel, cell.recurrent_kernel], axis=0)
        target = self.layer.cell
        pairs = [(target.kernel, kernel), (target.recurrent_kernel, cell.recurrent_kernel)]
        if cell.use_bias:
            pairs.append((target.bias, cell.bias))
        for variable, value in pairs:
            variable.assign(ops.copy(ops.cast(value, "float32")))

    def _total(self, deltas, x, keep, direct, direct_c, pass_on, init):
        """<what reaches each real step, packed output and c>, plus <q, (f, o *
        tanh'(c))>: at q = 0 its gradient on q hands those forward values out."""
        e, q = deltas
        if pass_on is not None:  # what reaches a real step: its own, and the padded steps'
            both = _reverse_scan(pass_on, ops.concatenate([direct, direct_c], axis=-1))
            direct, direct_c = both[..., : direct.shape[-1]], both[..., direct.shape[-1] :]
        packed = self.layer(ops.concatenate([x, e], axis=-1), mask=keep, initial_state=init)
        u = self.units
        f, o, c = packed[..., 2 * u : 3 * u], packed[..., 4 * u : 5 * u], packed[..., 5 * u :]
        forward = ops.concatenate([f, o * (1.0 - ops.tanh(c) ** 2)], axis=-1)
        width = direct.shape[-1]
        return ops.sum(direct * packed[..., :width]) + ops.sum(direct_c * c) + ops.sum(q * forward)

    def _finish(self, grads, x, keep, direct, direct_c, pass_on, init):
        """(dL/dh, dL/dc) from dL/de and the forward values."""
        recurrent, forward = grads
        u = self.units
        f, o_tanh = forward[..., :u], forward[..., u:]
        dh = direct[..., :u] + _next(recurrent)
        if pass_on is not None:
            dh = _reverse_scan(pass_on, dh)
        own_c = direct_c + (direct[..., 5 * u :] if direct.shape[-1] > u else 0.0)
        f_next = _next(f) if pass_on is None else _next(f) + pass_on
        return dh, _reverse_scan(f_next, dh * o_tanh + own_c)  # o_tanh is 0 where padded

    def __call__(self, x, mask, upstream_seq, upstream_last, finals, init, zero_output):
        """`(dL/dh, dL/dc)`, each (batch, time, units), in processing order.

        Args:
            x: the layer's inputs (batch, time, features), float32.
            mask: (batch, time) float32 of 1s and 0s, or None.
            upstream_seq: the loss's gradient on the layer's output sequence (h,
                then any gates), zeros if it returns the last step only.
            upstream_last: its gradient on the last output, zeros if none.
            finals: its gradients on the final h and c.
            init: the states the layer starts from.
            zero_output: whether padded steps output zeros (else the carried output).
        """
        (batch, steps), u = x.shape[:2], self.units
        m = None if mask is None else mask[..., None]
        direct = upstream_seq if m is None or not zero_output else upstream_seq * m
        end_h = ops.pad(finals[0], [(0, 0), (0, upstream_last.shape[-1] - u)])
        direct = direct + _at_end(upstream_last + end_h, steps)
        direct_c = _at_end(finals[1], steps)
        pass_on = None if m is None else _next(1.0 - m)  # a padded step carries the states
        keep = None if mask is None else ops.cast(mask, "bool")
        zeros = [ops.zeros((batch, steps, u), "float32"), ops.zeros((batch, steps, 2 * u))]
        return self.grad(zeros, x, keep, direct, direct_c, pass_on, init)
