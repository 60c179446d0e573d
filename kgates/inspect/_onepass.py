"""Gradient flow from one pass through a `kgates.LSTM`/`GRU`'s own path.

The unrolled flow (`_gradflow`) steps the cell and perturbs h_t (and c_t) at
each step: on a GPU that is a few dozen small kernels a step, forward and back.
For a layer with Keras's options the same numbers come from one call of the
layer, run as a `kgates.LSTM`/`GRU` runs (Keras's fused kernel for h where the
device has one, then the gates recomputed in parallel), its backward, and
reverse scans. The layer reads [x_t, e_t] with its kernel extended:

- LSTM: by U, so that step t sees h_tm1 + e_t, and dL/de_t is all that h_tm1
  passes on through step t (its gates, so c_t and all after). Then
  dL/dh_t = (the loss's own gradient on h_t) + dL/de at the next step, and
  dL/dc_t = dL/dh_t * o_t * (1 - tanh(c_t)^2) + (the loss's own gradient on
  c_t) + f_next * dL/dc_next: without peepholes o_t and the next step's gates
  do not read c_t.
- GRU: by the identity, so that dL/de_t is the gradient on each gate's
  pre-activation at step t. h_tm1 reaches step t through them and through
  z_t * h_tm1, so dL/dh_tm1 = (its own) + [dz, dr, dg * r] U^T (reset_after; else
  [dz U_z^T, dr U_r^T, (dg U_g^T) * r]) + z_t * dL/dh_t, one reverse scan.

A padded step carries the states over and outputs zeros or, without
`zero_output_for_mask`, the carried output: the loss's gradients on a carried
output (and on the last output and final states) reach the last real step
before it, and the recurrences skip the padded steps. Everything runs in
processing order (a `go_backwards` layer's inputs flipped by the caller).
"""

from __future__ import annotations

import abc

import keras
from keras import ops

from kgates.cells._backend import compiled_gradient
from kgates.cells._equivalent import NOT_OPTIONS
from kgates.cells._gru import GRUCell
from kgates.cells._layers import GRU, LSTM
from kgates.cells._lstm import LSTMCell
from kgates.cells._recompute import linear_scan


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


class OnePass(abc.ABC):
    """dL/dh_t (and dL/dc_t) of one layer's cell (see the module's text).

    Args:
        cell: the layer's kgates cell (built), with Keras's options.
    """

    layer_type: type
    forward_width = 2  # how many units wide the forward values `_finish` reads are

    def __init__(self, cell):
        self.units = cell.units
        config = {k: v for k, v in cell.get_config().items() if k not in NOT_OPTIONS}
        config.pop("dtype", None)  # float32, as the unrolled flow
        config.update(dropout=0.0, recurrent_dropout=0.0)  # never trains (and so fused)
        self.layer = self.layer_type(
            **config, return_sequences=True, return_gates=True, dtype="float32"
        )
        self.extra = self._extra_rows(cell).shape[0]
        self.layer.build((None, None, cell.kernel.shape[0] + self.extra))
        self.grad = compiled_gradient(self._total, self.layer, then=self._finish)

    @abc.abstractmethod
    def _extra_rows(self, cell):
        """The kernel's rows that read e_t."""

    @abc.abstractmethod
    def _forward(self, packed):
        """The forward values `_finish` reads, from the packed output."""

    @abc.abstractmethod
    def _finish(self, grads, x, keep, direct, direct_c, pass_on, init) -> tuple:
        """The flow from dL/de and the forward values (and `_total`'s arguments)."""

    def copy_weights(self, cell) -> None:
        """The layer reads `cell`'s weights now (on the device)."""
        target = self.layer.cell
        kernel = ops.concatenate([cell.kernel, self._extra_rows(cell)], axis=0)
        pairs = [(target.kernel, kernel), (target.recurrent_kernel, cell.recurrent_kernel)]
        if cell.use_bias:
            pairs.append((target.bias, cell.bias))
        for variable, value in pairs:
            variable.assign(ops.copy(ops.cast(value, "float32")))

    def _total(self, deltas, x, keep, direct, direct_c, pass_on, init):
        """<what reaches each real step, packed output (and c)>, plus <q, forward
        values>: at q = 0 its gradient on q hands those values out of the pass."""
        e, q = deltas
        own = [direct] if direct_c is None else [direct, direct_c]
        if pass_on is not None:  # what reaches a real step: its own, and the padded steps'
            both = _reverse_scan(pass_on, ops.concatenate(own, axis=-1))
            own = [both[..., : direct.shape[-1]], both[..., direct.shape[-1] :]][: len(own)]
        packed = self.layer(ops.concatenate([x, e], axis=-1), mask=keep, initial_state=init)
        total = ops.sum(own[0] * packed[..., : direct.shape[-1]])
        if direct_c is not None:
            total = total + ops.sum(own[1] * packed[..., -self.units :])
        return total + ops.sum(q * self._forward(packed))

    def __call__(self, x, mask, upstream_seq, upstream_last, finals, init, zero_output) -> tuple:
        """`(dL/dh,)` or, for an LSTM, `(dL/dh, dL/dc)`: (batch, time, units) each, in
        processing order.

        Args:
            x: the layer's inputs (batch, time, features), float32.
            mask: (batch, time) float32 of 1s and 0s, or None.
            upstream_seq: the loss's gradient on the layer's output sequence (h,
                then any gates), zeros if it returns the last step only.
            upstream_last: its gradient on the last output, zeros if none.
            finals: its gradients on the final states.
            init: the states the layer starts from.
            zero_output: whether padded steps output zeros (else the carried output).
        """
        (batch, steps), u = x.shape[:2], self.units
        m = None if mask is None else mask[..., None]
        direct = upstream_seq if m is None or not zero_output else upstream_seq * m
        end_h = ops.pad(finals[0], [(0, 0), (0, upstream_last.shape[-1] - u)])
        direct = direct + _at_end(upstream_last + end_h, steps)
        direct_c = _at_end(finals[1], steps) if len(finals) > 1 else None
        pass_on = None if m is None else _next(1.0 - m)  # a padded step carries the states
        keep = None if mask is None else ops.cast(mask, "bool")
        zeros = [
            ops.zeros((batch, steps, self.extra), "float32"),
            ops.zeros((batch, steps, self.forward_width * u), "float32"),
        ]
        return self.grad(zeros, x, keep, direct, direct_c, pass_on, init)


class LSTMPass(OnePass):
    """An LSTM's: e_t read with U, so that step t sees h_tm1 + e_t; gives dL/dh, dL/dc."""

    layer_type = LSTM

    def _extra_rows(self, cell):
        return cell.recurrent_kernel

    def _forward(self, packed):
        u = self.units
        f, o, c = packed[..., 2 * u : 3 * u], packed[..., 4 * u : 5 * u], packed[..., 5 * u :]
        return ops.concatenate([f, o * (1.0 - ops.tanh(c) ** 2)], axis=-1)

    def _finish(self, grads, x, keep, direct, direct_c, pass_on, init):
        recurrent, forward = grads
        u = self.units
        f, o_tanh = forward[..., :u], forward[..., u:]
        dh = direct[..., :u] + _next(recurrent)
        if pass_on is not None:
            dh = _reverse_scan(pass_on, dh)
        own_c = direct_c + (direct[..., 5 * u :] if direct.shape[-1] > u else 0.0)
        f_next = _next(f) if pass_on is None else _next(f) + pass_on
        return dh, _reverse_scan(f_next, dh * o_tanh + own_c)  # o_tanh is 0 where padded


class GRUPass(OnePass):
    """A GRU's: e_t read with the identity, each gate's pre-activation; gives dL/dh."""

    layer_type = GRU

    def _extra_rows(self, cell):
        return ops.eye(3 * cell.units)

    def _forward(self, packed):
        return packed[..., self.units : 3 * self.units]  # z, r

    def _finish(self, grads, x, keep, direct, direct_c, pass_on, init):
        pre, forward = grads  # dL/d(pre-activation) of z, r, g at each step
        u = self.units
        z, r = forward[..., :u], forward[..., u:]
        recurrent = self.layer.cell.recurrent_kernel  # float32, as the layer
        dz, dr, dg = pre[..., :u], pre[..., u : 2 * u], pre[..., 2 * u :]
        if self.layer.cell.reset_after:
            back = ops.matmul(ops.concatenate([dz, dr, dg * r], axis=-1), ops.transpose(recurrent))
        else:
            back = ops.matmul(
                ops.concatenate([dz, dr], axis=-1), ops.transpose(recurrent[:, : 2 * u])
            )
            back = back + ops.matmul(dg, ops.transpose(recurrent[:, 2 * u :])) * r
        z_next = _next(z) if pass_on is None else _next(z) + pass_on
        return (_reverse_scan(z_next, direct[..., :u] + _next(back)),)


def one_pass_flow(cell) -> OnePass | None:
    """The one-pass flow of a kgates `cell` (built), or None where its options are not
    Keras's (variants, pins, peepholes; an LSTM's c through anything but tanh)."""
    if isinstance(cell, LSTMCell):
        if cell.variant == "NP" and cell.output_activation is keras.activations.tanh:
            return LSTMPass(cell)
    elif isinstance(cell, GRUCell) and not cell.pin:
        return GRUPass(cell)
    return None
