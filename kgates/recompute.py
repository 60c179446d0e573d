"""Exact gates from a recurrent layer's inputs and outputs, for all steps at once.

An LSTM's or GRU's gates are a pure function of (x_t, h_tm1): given the whole h
sequence, every gate of every step comes out of one batched matmul, and the
LSTM's cell state out of a scan of the linear recurrence c_t = f_t * c_tm1 +
i_t * g_t (DESIGN.md §4). `kgates.LSTM`/`GRU` use it after a fused kernel.
"""

from __future__ import annotations

import keras
from keras import ops


def accelerator_available() -> bool:
    """Whether the Keras backend sees a GPU (where fused kernels run)."""
    backend = keras.backend.backend()
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            return bool(tf.config.list_logical_devices("GPU"))
        if backend == "jax":
            import jax

            return jax.default_backend() == "gpu"
        if backend == "torch":
            import torch

            return torch.cuda.is_available()
    except Exception:  # noqa: BLE001 - no device query: no accelerator
        return False
    return False


SCANS = ("associative", "doubling", "sequential")


def linear_scan(a, b, method: str | None = None):
    """s_t = a_t * s_tm1 + b_t along axis 1 of (B, T, ...) tensors, from s_0 = 0.

    `method`: "associative" (keras.ops.associative_scan: log2(T) elementwise
    passes over the whole sequence), "doubling" (the same number of passes
    written with shifted copies: each step composes with the one 1, 2, 4, ...
    steps back; needs a static T) or "sequential" (keras.ops.scan: T steps of
    one fused multiply-add). Default: the faster here (experiments/BENCHMARKS.md):
    sequential on torch (whose associative scan builds its intermediates on
    the CPU) and on TensorFlow without a GPU, associative elsewhere.
    """
    a, b = ops.convert_to_tensor(a), ops.convert_to_tensor(b)
    if method is None:
        backend = keras.backend.backend()
        sequential = backend == "torch" or (backend == "tensorflow" and not accelerator_available())
        method = "sequential" if sequential else "associative"
    if method not in SCANS:
        raise ValueError(f"linear_scan: `method` must be one of {SCANS}, got {method!r}.")
    if method == "associative":

        def combine(earlier, later):
            return earlier[0] * later[0], later[0] * earlier[1] + later[1]

        s = ops.associative_scan(combine, (a, b), axis=1)[1]
    elif method == "doubling":
        steps = b.shape[1]
        if steps is None:
            raise ValueError(
                "linear_scan: method='doubling' needs a static number of steps; "
                "use 'associative' or 'sequential' for a variable T."
            )
        # (a_t, b_t) maps s_{t-d} to s_t; composing with the map d steps back
        # (identity before the start) doubles d until it covers the sequence.
        d = 1
        while d < steps:
            b = a * ops.concatenate([ops.zeros_like(b[:, :d]), b[:, :-d]], axis=1) + b
            a = a * ops.concatenate([ops.ones_like(a[:, :d]), a[:, :-d]], axis=1)
            d *= 2
        s = b
    elif keras.backend.backend() == "torch":
        from kgates import torch_loops

        s = torch_loops.linear_scan(a, b)
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
