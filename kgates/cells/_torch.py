"""Recurrent loops in torch eager that cost linear time to train.

torch runs a recurrence as a Python loop, so each step pays its dispatch and
its autograd nodes. Indexing a sequence step by step (`x[t]`) also costs a
backward that zero-fills the whole sequence once per step, which makes a
training step quadratic in the number of steps; Keras's torch LSTM and GRU
kernels for a CPU do that (at B=64, T=300, units=128 their train step takes
20x as long as the loop below). Here a sequence is unbound once, each step
is a few fused ops, and the scan has a hand-written backward (the same
recurrence in reverse). Only imported on the torch backend, by `_backend`.
"""

from __future__ import annotations

import keras
import torch
from torch.autograd.function import once_differentiable

_TORCH_ACTIVATIONS = {keras.activations.sigmoid: torch.sigmoid, keras.activations.tanh: torch.tanh}


def _torch_activation(fn):
    return _TORCH_ACTIVATIONS.get(fn, fn)


def _scan_forward(a, b, s_t):
    steps = []
    for a_t, b_t in zip(torch.unbind(a, dim=1), torch.unbind(b, dim=1)):
        s_t = torch.addcmul(b_t, a_t, s_t)
        steps.append(s_t)
    return torch.stack(steps, dim=1)


class _LinearScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, b, s_0):
        s = _scan_forward(a, b, s_0)
        ctx.save_for_backward(a, s, s_0)
        return s

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        a, s, s_0 = ctx.saved_tensors
        # ds_t = grad_t + a_{t+1} * ds_{t+1}, from the last step back
        d_t, steps = None, []
        a_next = (*torch.unbind(a, dim=1)[1:], None)
        for g_t, a_t in zip(reversed(torch.unbind(grad, dim=1)), reversed(a_next)):
            d_t = g_t if a_t is None else torch.addcmul(g_t, a_t, d_t)
            steps.append(d_t)
        ds = torch.stack(steps[::-1], dim=1)
        da = ds_0 = None
        if ctx.needs_input_grad[0]:  # ds_t * s_tm1
            da = ds * torch.cat([s_0[:, None], s[:, :-1]], dim=1)
        if ctx.needs_input_grad[2]:
            ds_0 = a[:, 0] * ds[:, 0]
        return da, ds, ds_0


def linear_scan(a, b, initial=None, fused: bool = False):
    """s_t = a_t * s_tm1 + b_t along axis 1, from s_0 = `initial` (zeros if None): one
    `addcmul` a step each way, or with `fused` one Triton kernel each way (`_triton.py`)."""
    s_0 = torch.zeros_like(b[:, 0]) if initial is None else initial.to(b.dtype)
    if fused:
        from kgates.cells import _triton

        return _triton.linear_scan(a.to(b.dtype), b, s_0)
    return _LinearScan.apply(a.to(b.dtype), b, s_0)


def _prepare(cell, inputs, states, go_backwards: bool):
    """The cell's weights and activations in torch, and the projected inputs."""
    kernel = keras.ops.convert_to_tensor(cell.kernel)
    recurrent = keras.ops.convert_to_tensor(cell.recurrent_kernel)
    inputs = keras.ops.convert_to_tensor(inputs).to(kernel.dtype)
    states = [keras.ops.convert_to_tensor(s).to(kernel.dtype) for s in states]
    if go_backwards:
        inputs = torch.flip(inputs, dims=[1])
    act = _torch_activation(cell.activation)
    rec = _torch_activation(cell.recurrent_activation)
    return torch.matmul(inputs, kernel), states, recurrent, act, rec


def _finish(outputs, last, states, return_sequences: bool):
    outputs = torch.stack(outputs, dim=1) if return_sequences else last[:, None]
    return last, outputs, states


def lstm(inputs, states, cell, return_sequences: bool, go_backwards: bool):
    """`keras.layers.LSTM`'s loop for `cell`, in torch: a speed copy of
    `LSTMCell.project`, `write_gates` and `output_gate` for Keras's own LSTM
    (tests/test_fused.py holds it to Keras's layer).

    As Keras's torch `backend.lstm` without a mask: `states` is `[h, c]`;
    returns `(last_h, outputs, [h, c])`, outputs in processing order.
    """
    projected, (h, c), recurrent, act, rec = _prepare(cell, inputs, states, go_backwards)
    if cell.use_bias:
        projected = projected + keras.ops.convert_to_tensor(cell.bias)
    outputs = []
    for x_t in torch.unbind(projected, dim=1):
        z_i, z_f, z_g, z_o = torch.chunk(torch.addmm(x_t, h, recurrent), 4, dim=1)
        c = rec(z_f) * c + rec(z_i) * act(z_g)
        h = rec(z_o) * act(c)
        outputs.append(h)
    return _finish(outputs, h, [h, c], return_sequences)


def gru(inputs, states, cell, return_sequences: bool, go_backwards: bool):
    """`keras.layers.GRU`'s loop (reset_after=True) for `cell`, in torch: a speed
    copy of `GRUCell.project` and `step_gates` for Keras's own GRU.

    As Keras's torch `backend.gru` without a mask: `states` is `[h]`; returns
    `(last_h, outputs, [h])`.
    """
    projected, (h,), recurrent, act, rec = _prepare(cell, inputs, states, go_backwards)
    recurrent_bias = None
    if cell.use_bias:
        bias = keras.ops.convert_to_tensor(cell.bias)
        projected, recurrent_bias = projected + bias[0], bias[1]
    outputs = []
    for x_t in torch.unbind(projected, dim=1):
        if recurrent_bias is None:
            h_proj = torch.matmul(h, recurrent)
        else:
            h_proj = torch.addmm(recurrent_bias, h, recurrent)
        x_z, x_r, x_g = torch.chunk(x_t, 3, dim=1)
        h_z, h_r, h_g = torch.chunk(h_proj, 3, dim=1)
        z = rec(x_z + h_z)
        r = rec(x_r + h_r)
        g = act(x_g + r * h_g)
        h = z * h + (1.0 - z) * g
        outputs.append(h)
    return _finish(outputs, h, [h], return_sequences)
