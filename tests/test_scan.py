"""kgates.linear_scan, every method, against float64 loops and finite differences."""

import keras
import numpy as np
import pytest
from reference import npy

from kgates import SCAN_METHODS, linear_scan
from kgates.cells._backend import compiled_gradient


def _scan64(a, b, initial=None):
    """s_t = a_t * s_tm1 + b_t by a float64 loop, from `initial` (zeros if None)."""
    out = np.zeros_like(b)
    s = np.zeros_like(b[:, 0]) if initial is None else initial
    for t in range(b.shape[1]):
        s = a[:, t] * s + b[:, t]
        out[:, t] = s
    return out


@pytest.mark.parametrize("method", [*SCAN_METHODS, None])
@pytest.mark.parametrize("steps", [1, 40])
def test_linear_scan_against_a_float64_loop(method, steps, rng):
    a = rng.uniform(0.0, 1.0, size=(3, steps, 5))
    b = rng.normal(size=(3, steps, 5))
    got = npy(linear_scan(a.astype("float32"), b.astype("float32"), method))
    np.testing.assert_allclose(got, _scan64(a, b), atol=1e-5)


@pytest.mark.parametrize("method", [*SCAN_METHODS, None])
def test_linear_scan_from_an_initial_state(method, rng):
    a = rng.uniform(0.0, 1.0, size=(3, 7, 5))
    b = rng.normal(size=a.shape)
    s0 = rng.normal(size=(3, 5))
    got = npy(linear_scan(*(v.astype("float32") for v in (a, b)), method, initial=s0))
    np.testing.assert_allclose(got, _scan64(a, b, s0), atol=1e-5)


@pytest.mark.parametrize("method", [*SCAN_METHODS, None])
def test_linear_scan_gradients_against_float64_differences(method, rng):
    a = rng.uniform(0.2, 1.0, size=(2, 12, 3))
    b = rng.normal(size=a.shape)
    s0 = rng.normal(size=(2, 3))
    w = rng.normal(size=a.shape)

    def loss(a, b, s0):
        return np.sum(w * _scan64(a, b, s0))

    want = []
    for x in (a, b, s0):
        d = np.zeros_like(x)
        for index in np.ndindex(x.shape):
            x[index] += 1e-6
            up = loss(a, b, s0)
            x[index] -= 2e-6
            d[index] = (up - loss(a, b, s0)) / 2e-6
            x[index] += 1e-6
        want.append(d)
    w32 = keras.ops.convert_to_tensor(w.astype("float32"))
    grad = compiled_gradient(
        lambda v: keras.ops.sum(w32 * linear_scan(v[0], v[1], method, initial=v[2])),
        keras.layers.Identity(),
    )
    got = grad([keras.ops.convert_to_tensor(v.astype("float32")) for v in (a, b, s0)])
    for name, g, d in zip(("a", "b", "initial"), got, want):
        np.testing.assert_allclose(npy(g), d, atol=1e-4, err_msg=name)


def test_linear_scan_names_a_bad_method():
    with pytest.raises(ValueError, match="`method` must be one of"):
        linear_scan(np.ones((1, 2, 1)), np.ones((1, 2, 1)), "parallel")
