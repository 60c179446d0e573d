"""Exact gates from a recurrent layer's inputs and outputs, for all steps at once.

An LSTM's or GRU's gates are a pure function of (x_t, h_tm1): given the whole h
sequence, every gate of every step comes out of the cell's own projection over
all B*T rows, and the LSTM's cell state out of a scan of the linear recurrence
c_t = f_t * c_tm1 + i_t * g_t. `kgates.LSTM`/`GRU` use it after a
fused kernel.
"""

from __future__ import annotations

from keras import ops

from kgates.cells import _backend
from kgates.cells._backend import SCAN_METHODS


def linear_scan(a, b, method: str | None = None, initial=None):
    """s_t = a_t * s_tm1 + b_t along axis 1 of (B, T, ...) tensors, from s_0.

    Args:
        a, b: tensors of the same shape `(batch, time, ...)`.
        method: "associative" (keras.ops.associative_scan: log2(T) elementwise
            passes over the whole sequence), "doubling" (the same number of
            passes written with shifted copies: each step composes with the
            one 1, 2, 4, ... steps back; needs a static T) or "sequential"
            (T steps of one fused multiply-add). Default: the faster on this
            backend and device (experiments/BENCHMARKS.md).
        initial: s_0, shaped `(batch, ...)`; zeros if None.

    Returns:
        `s`, shaped as `b`.
    """
    a, b = ops.convert_to_tensor(a), ops.convert_to_tensor(b)
    method = _backend.default_scan() if method is None else method
    if method not in SCAN_METHODS:
        raise ValueError(f"linear_scan: `method` must be one of {SCAN_METHODS}, got {method!r}.")
    if initial is not None:
        initial = ops.cast(initial, b.dtype)
        if method != "sequential":  # s_0 enters through the first step: b_1 += a_1 * s_0
            b = ops.concatenate([b[:, :1] + a[:, :1] * initial[:, None], b[:, 1:]], axis=1)
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
    else:
        s = _backend.native_sequential_scan(a, b, initial)
        if s is None:

            def step(s_tm1, ab):
                s_t = ab[0] * s_tm1 + ab[1]
                return s_t, s_t

            a_t, b_t = ops.swapaxes(a, 0, 1), ops.swapaxes(b, 0, 1)
            s_0 = ops.zeros_like(b_t[0]) if initial is None else initial
            s = ops.swapaxes(ops.scan(step, s_0, (a_t, b_t))[1], 0, 1)
    return ops.reshape(s, ops.shape(b))  # TensorFlow graphs lose the static rank


def previous_states(h, mask=None, h0=None):
    """h_tm1 for every step: the last unmasked h before t (`h0`, or zeros, at the
    start)."""
    first = ops.zeros_like(h[:, :1]) if h0 is None else ops.cast(h0, h.dtype)[:, None]
    if mask is not None:
        m = ops.cast(mask, h.dtype)[..., None]
        h = linear_scan(1.0 - m, m * h, initial=h0)
    return ops.concatenate([first, h[:, :-1]], axis=1)


def lstm_gates(cell, x, h, mask=None, initial_state=None) -> dict:
    """An LSTM cell's gates recomputed from its inputs `x` and outputs `h` (B, T, .).

    The cell's own `project`, `write_gates` and `output_gate` run over all
    steps at once; c comes out of one scan. No peepholes or gate recurrence
    (the fused kernel's LSTM). `initial_state`: the layer's `[h0, c0]` (zeros if
    None).
    """
    h0, c0 = (None, None) if initial_state is None else initial_state
    z = cell.project(x, previous_states(h, mask, h0))
    i, f, g = cell.write_gates(z)
    if mask is None:
        c = linear_scan(f, i * g, initial=c0)
    else:  # a masked step keeps c: c_t = 1 * c_tm1 + 0
        m = ops.cast(mask, "bool")[..., None]
        c = linear_scan(ops.where(m, f, 1.0), ops.where(m, i * g, 0.0), initial=c0)
    return {"i": i, "f": f, "g": g, "o": cell.output_gate(z, c), "c": c}


def gru_gates(cell, x, h, mask=None, initial_state=None) -> dict:
    """A GRU cell's gates recomputed from its inputs `x` and outputs `h` (B, T, .);
    `initial_state`: the layer's `[h0]` (zeros if None)."""
    h_tm1 = previous_states(h, mask, None if initial_state is None else initial_state[0])
    z, r, g = cell.step_gates(*cell.project(x, h_tm1), h_tm1)
    return {"z": z, "r": r, "g": g}
