"""torch's c scan fused into one Triton kernel each way (kgates/cells/_triton.py),
against float64 loops and differences and through kgates.LSTM, on a CPU by
Triton's interpreter: the kernels' indexing and recurrences, not their GPU
compilation (experiments/gpu_checks.py checks that on a GPU)."""

import os

import keras
import numpy as np
import pytest
from helpers import ATOL, padded
from reference import lstm_reference, npy, randomize
from test_scan import _scan64

import kgates
from kgates.cells import _backend

pytestmark = pytest.mark.torch_only  # torch's own code: the torch session only (conftest.py)

if keras.backend.backend() == "torch":
    import torch

    # Without CUDA, Triton's interpreter: Triton reads the switch as it wraps the
    # kernels (importing them) and kgates as it picks the scan (in `fused` below).
    INTERPRET = {} if torch.cuda.is_available() else {"TRITON_INTERPRET": "1"}
    os.environ.update(INTERPRET)
    try:
        pytest.importorskip("triton", reason="Triton (a dev dependency): Linux only")
        from kgates.cells import _triton as triton_scan
    finally:
        for name in INTERPRET:
            del os.environ[name]


@pytest.fixture
def fused(monkeypatch):
    """`FUSED_SCAN` on, and the calls of the fused scan counted."""
    for name, value in INTERPRET.items():
        monkeypatch.setenv(name, value)
    calls = []
    scan = triton_scan.linear_scan
    monkeypatch.setattr(_backend, "FUSED_SCAN", True)
    monkeypatch.setattr(triton_scan, "linear_scan", lambda *a: calls.append(1) or scan(*a))
    return calls


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
@pytest.mark.parametrize("shape", [(3, 1, 5), (2, 40, 3), (2, 7, 2, 3), (3, 9, 130)])
def test_the_fused_scan_against_a_float64_loop(fused, shape, dtype, rng):
    # 130 units: a second block of 128, partly masked; (2, 3): trailing axes flattened.
    a = rng.uniform(0.0, 1.0, size=shape)
    b = rng.normal(size=shape)
    s0 = rng.normal(size=(shape[0], *shape[2:]))
    got = kgates.linear_scan(a.astype(dtype), b.astype(dtype), "sequential", initial=s0)
    assert fused == [1]
    assert str(got.dtype).endswith(dtype)
    # float16: a and b rounded to 11 bits before the scan (the reference takes them unrounded)
    atol = {"float16": 1e-2, "float32": 1e-5, "float64": 1e-12}[dtype]
    np.testing.assert_allclose(npy(got), _scan64(a, b, s0), atol=atol)


def test_the_fused_scan_broadcasts_a_to_b(fused, rng):
    # As a padding mask does (kgates.cells._recompute.previous_states): a is (B, T, 1).
    a = (rng.uniform(size=(3, 8, 1)) < 0.5).astype("float32")
    b = rng.normal(size=(3, 8, 4)).astype("float32")
    got = kgates.linear_scan(a, b, "sequential")
    assert fused == [1]
    np.testing.assert_allclose(npy(got), _scan64(np.broadcast_to(a, b.shape), b), atol=1e-6)


def test_the_fused_scan_gradients_against_float64_differences(fused, rng):
    a = rng.uniform(0.2, 1.0, size=(2, 12, 3))
    b = rng.normal(size=a.shape)
    s0 = rng.normal(size=(2, 3))
    w = rng.normal(size=a.shape)
    values = [torch.tensor(v, requires_grad=True) for v in (a, b, s0)]
    loss = torch.sum(torch.tensor(w) * kgates.linear_scan(*values[:2], "sequential", values[2]))
    got = torch.autograd.grad(loss, values)
    assert fused == [1]
    for name, x, g in zip(("a", "b", "initial"), (a, b, s0), got):
        d = np.zeros_like(x)
        for index in np.ndindex(x.shape):  # central differences of the float64 loop
            x[index] += 1e-6
            up = np.sum(w * _scan64(a, b, s0))
            x[index] -= 2e-6
            d[index] = (up - np.sum(w * _scan64(a, b, s0))) / 2e-6
            x[index] += 1e-6
        np.testing.assert_allclose(g.numpy(), d, atol=1e-6, err_msg=name)


def test_the_fused_scan_reads_a_strided_gradient(fused, rng):
    # The gradient of a sum is one value broadcast (stride 0): read as a whole tensor.
    a = torch.tensor(rng.uniform(0.0, 1.0, size=(2, 5, 3)), requires_grad=True)
    b = torch.tensor(rng.normal(size=(2, 5, 3)), requires_grad=True)
    torch.sum(kgates.linear_scan(a, b, "sequential")).backward()
    want = [torch.autograd.grad(torch.sum(_step_scan(a, b)), v)[0] for v in (a, b)]
    for name, got, w in zip("ab", (a.grad, b.grad), want):
        np.testing.assert_allclose(got.numpy(), w.numpy(), atol=1e-12, err_msg=name)


def _step_scan(a, b):
    s, out = torch.zeros_like(b[:, 0]), []
    for t in range(b.shape[1]):
        s = a[:, t] * s + b[:, t]
        out.append(s)
    return torch.stack(out, dim=1)


def test_a_gated_lstm_computes_c_by_the_fused_scan(fused, rng):
    # The recomputation of kgates.LSTM's gates takes it, with a padding mask and an
    # initial state; a training step through it moves the weights as the stepped scan.
    x, mask = padded(rng)
    initial = [rng.normal(size=(len(x), 5)).astype("float32") for _ in range(2)]
    layer = kgates.LSTM(5, return_sequences=True, return_gates=True, gate_path="recompute")
    layer(x)
    weights = randomize(layer, rng)
    fused.clear()
    got = kgates.split_gates(layer(x, mask=mask, initial_state=initial), layer)
    assert len(fused) == 2  # h_tm1 under the mask, and c
    want = lstm_reference(x, weights, 5, mask=mask, initial=initial)
    for name in want:
        np.testing.assert_allclose(npy(got[name]), want[name], atol=ATOL, err_msg=name)
    grads = {}
    for on in (True, False):
        _backend.FUSED_SCAN = on
        out = layer(x, mask=mask, initial_state=initial)
        loss = torch.sum(out * torch.linspace(-1.0, 1.0, out.shape[-1]))
        grads[on] = torch.autograd.grad(loss, [w.value for w in layer.trainable_weights])
    for name, g, w in zip(("kernel", "recurrent", "bias"), grads[True], grads[False]):
        np.testing.assert_allclose(g.numpy(), w.numpy(), atol=1e-5, err_msg=name)
