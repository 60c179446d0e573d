"""`keras.layers.Bidirectional` around `kgates.LSTM`/`GRU` with `return_gates=True`:
both directions' h and every gate, with and without masks, for either
`return_sequences`, against the float64 references, on every backend; and never
through Keras's fused two-direction kernel, which returns h alone."""

import keras
import numpy as np
import pytest
from helpers import ATOL, padded
from reference import gru_reference, lstm_reference, npy, randomize

import kgates

FAMILIES = [(kgates.LSTM, lstm_reference), (kgates.GRU, gru_reference)]


def _fused_kernel_that_returns_h_only(calls):
    """Stands in for the backend's fused two-direction kernel (a GPU's): it records
    the call and returns what the real one does, h alone (here: zeros)."""

    def kernel(sequences, *states, return_sequences=False, **kwargs):
        calls.append(True)
        batch, time = sequences.shape[:2]
        units = states[0].shape[-1]
        h = keras.ops.zeros((batch, time, units) if return_sequences else (batch, units))
        last = keras.ops.zeros((batch, units))
        n = len(states) // 2
        return (last, h, [last] * n), (last, h, [last] * n)

    return kernel


@pytest.fixture
def fused_kernel(monkeypatch):
    """Keras's Bidirectional calls `backend.bidirectional_lstm/gru` where its layer
    checks pass; on a CPU the backends raise NotImplementedError and it falls back.
    This makes every backend behave as on a GPU; the list holds the calls."""
    from keras.src import backend

    calls = []
    for name in ("bidirectional_lstm", "bidirectional_gru"):
        monkeypatch.setattr(backend, name, _fused_kernel_that_returns_h_only(calls), raising=False)
    return calls


@pytest.mark.parametrize("masked", [False, True], ids=["unmasked", "masked"])
@pytest.mark.parametrize("return_sequences", [True, False], ids=["sequences", "last"])
@pytest.mark.parametrize("gate_path", ["auto", "recompute"])
@pytest.mark.parametrize(("layer_cls", "reference"), FAMILIES, ids=["LSTM", "GRU"])
def test_both_directions_return_h_and_every_gate(
    layer_cls, reference, gate_path, return_sequences, masked, fused_kernel, rng
):
    x, mask = padded(rng, time=7, lengths=(None, 5, 1, 3))
    mask = mask if masked else None
    layer = layer_cls(3, return_sequences=return_sequences, return_gates=True, gate_path=gate_path)
    bidi = keras.layers.Bidirectional(layer)
    bidi(x, mask=mask)
    forward = randomize(bidi.forward_layer, rng)
    backward = randomize(bidi.backward_layer, rng)
    y = bidi(x, mask=mask)
    assert tuple(y.shape) == bidi.compute_output_shape(x.shape)
    got = kgates.split_gates(y, bidi)
    want_forward = reference(x, forward, 3, mask=mask)
    # Keras reverses the whole padded sequence for the backward layer, then flips
    # its outputs back into time order.
    back_mask = None if mask is None else mask[:, ::-1]
    want_backward = {
        k: v[:, ::-1] for k, v in reference(x[:, ::-1], backward, 3, mask=back_mask).items()
    }
    if not return_sequences:  # the last real step of each direction
        last = np.arange(7)[None] if mask is None else np.where(mask, np.arange(7)[None], -1)
        rows = np.arange(4)
        want_forward = {k: v[rows, last.max(axis=1)] for k, v in want_forward.items()}
        want_backward = {k: v[:, 0] for k, v in want_backward.items()}
    for direction, want in (("forward", want_forward), ("backward", want_backward)):
        assert set(got[direction]) == set(want)
        for name, value in want.items():
            np.testing.assert_allclose(
                npy(got[direction][name]), value, atol=ATOL, err_msg=f"{direction} {name}"
            )
    assert not fused_kernel


@pytest.mark.parametrize(
    ("ours", "theirs"), [(kgates.LSTM, keras.layers.LSTM), (kgates.GRU, keras.layers.GRU)]
)
def test_without_gates_the_fused_kernel_still_runs(ours, theirs, fused_kernel, rng):
    """The stand-in kernel is reached by Keras's layers and by kgates layers without
    gates: the test above would see it if a gated layer went that way."""
    x = rng.normal(size=(2, 5, 3)).astype("float32")
    for layer in (theirs(4), ours(4)):
        bidi = keras.layers.Bidirectional(layer)
        bidi(x)
        fused_kernel.clear()
        bidi(x)
        assert fused_kernel, type(layer)


def _fused_lstm_in_time_order(calls):
    """Stands in for a GPU's one-direction fused LSTM kernel (`backend.lstm`), with
    the order of Keras's JAX cuDNN path: a backward layer's h sequence comes back
    flipped into time order (Keras's stepped loop and torch's kernel return it in
    processing order). Computed by the float64 reference; unmasked calls only, as
    cuDNN there."""

    def kernel(inputs, h0, c0, mask, kernel, recurrent_kernel, bias, *args, **kwargs):
        if mask is not None:  # Keras then falls back to its stepped loop
            raise NotImplementedError
        backwards = kwargs.get("go_backwards", False)
        calls.append(backwards)
        x = npy(inputs)[:, ::-1] if backwards else npy(inputs)
        weights = {
            "kernel": npy(kernel),
            "recurrent_kernel": npy(recurrent_kernel),
            "bias": npy(bias),
        }
        ref = lstm_reference(x, weights, h0.shape[-1], initial=(npy(h0), npy(c0)))
        h, c = ref["h"].astype("float32"), ref["c"][:, -1].astype("float32")
        seq = h[:, ::-1] if backwards else h
        out = seq if kwargs.get("return_sequences") else h[:, -1:]
        last, out, c = (keras.ops.convert_to_tensor(v) for v in (h[:, -1], out, c))
        return last, out, [last, c]

    return kernel


@pytest.mark.parametrize("return_sequences", [True, False], ids=["sequences", "last"])
def test_gates_do_not_depend_on_the_order_a_fused_kernel_returns_backward_h_in(
    return_sequences, fused_kernel, monkeypatch, rng
):
    """On JAX's GPU, Keras's cuDNN LSTM returns a backward layer's h in time order;
    the recomputation read it as processing order, and the backward direction's
    gates were off by up to 3.8 (measured on an H200). Each direction's h now comes
    from a forward run over inputs flipped by kgates, whatever the kernel's order."""
    from keras.src import backend

    from kgates.cells import _backend

    calls = []
    monkeypatch.setattr(backend, "lstm", _fused_lstm_in_time_order(calls))
    monkeypatch.setattr(_backend, "has_own_loop", lambda *args: False)  # torch too
    x = rng.normal(size=(4, 7, 5)).astype("float32")
    # gate_path="recompute": the GPU's path, on any device
    layer = kgates.LSTM(
        3, return_sequences=return_sequences, return_gates=True, gate_path="recompute"
    )
    bidi = keras.layers.Bidirectional(layer)
    bidi(x)
    forward, backward = randomize(bidi.forward_layer, rng), randomize(bidi.backward_layer, rng)
    calls.clear()
    got = kgates.split_gates(bidi(x), bidi)
    assert calls == [False, False]  # both directions' h came from the stand-in
    want = {
        "forward": lstm_reference(x, forward, 3),
        "backward": {k: v[:, ::-1] for k, v in lstm_reference(x[:, ::-1], backward, 3).items()},
    }
    for direction, gates in want.items():
        for name, value in gates.items():
            value = value if return_sequences else value[:, -1 if direction == "forward" else 0]
            np.testing.assert_allclose(
                npy(got[direction][name]), value, atol=ATOL, err_msg=f"{direction} {name}"
            )
