import keras
import numpy as np
import pytest
from helpers import ATOL
from reference import gru_reference, npy, randomize

import kgates


@pytest.mark.parametrize("reset_after", [True, False])
def test_dropin_matches_keras_gru_forward_and_state(reset_after, rng):
    x = rng.normal(size=(8, 20, 5)).astype("float32")
    ref = keras.layers.GRU(16, reset_after=reset_after, return_sequences=True, return_state=True)
    ours = keras.layers.RNN(
        kgates.GRUCell(16, reset_after=reset_after), return_sequences=True, return_state=True
    )
    ref(x)
    ours(x)
    assert [w.shape for w in ours.weights] == [w.shape for w in ref.weights]
    randomize(ref, rng)
    ours.set_weights(ref.get_weights())
    for a, b in zip(ours(x), ref(x)):
        np.testing.assert_allclose(npy(a), npy(b), atol=ATOL)


@pytest.mark.parametrize("reset_after", [True, False])
def test_matches_keras_gru_after_training_steps(reset_after, rng):
    x = rng.normal(size=(16, 10, 4)).astype("float32")
    y = rng.normal(size=(16, 1)).astype("float32")

    def model(layer):
        inputs = keras.Input((10, 4))
        return keras.Model(inputs, keras.layers.Dense(1)(layer(inputs)))

    ref = model(keras.layers.GRU(8, reset_after=reset_after))
    ours = model(keras.layers.RNN(kgates.GRUCell(8, reset_after=reset_after)))
    ours.set_weights(ref.get_weights())
    for m in (ref, ours):
        m.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
        m.fit(x, y, epochs=3, batch_size=8, shuffle=False, verbose=0)
    for a, b in zip(ours.get_weights(), ref.get_weights()):
        np.testing.assert_allclose(a, b, atol=ATOL)


@pytest.mark.parametrize("reset_after", [True, False])
@pytest.mark.parametrize("pin", [None, {"z": 0.25}, {"r": 1.0}, {"z": 0.0, "r": 1.0}])
def test_matches_numpy_float64_reference(reset_after, pin, rng):
    x = rng.normal(size=(4, 9, 3)).astype("float32")
    layer = kgates.GatedRNN(
        kgates.GRUCell(5, reset_after=reset_after, pin=pin), return_sequences=True
    )
    layer(x)
    weights = randomize(layer, rng)
    got = layer(x)
    want = gru_reference(x, weights, 5, reset_after=reset_after, pin=pin)
    for name in ("h", "z", "r", "g"):
        np.testing.assert_allclose(npy(got[name]), want[name], atol=ATOL, err_msg=name)


@pytest.mark.parametrize("reset_after", [True, False])
def test_gru_with_r_1_and_z_0_is_a_simple_rnn(reset_after, rng):
    x = rng.normal(size=(4, 12, 3)).astype("float32")
    gru = keras.layers.RNN(kgates.GRUCell(6, reset_after=reset_after, pin={"r": 1.0, "z": 0.0}))
    gru(x)
    kernel, recurrent_kernel, bias = randomize(gru, rng).values()
    assert kernel.shape == (3, 6)  # only the candidate's weights remain
    simple = keras.layers.SimpleRNN(6)
    simple(x)
    simple_bias = bias.sum(axis=0) if reset_after else bias  # input + recurrent bias
    simple.set_weights([kernel, recurrent_kernel, simple_bias])
    np.testing.assert_allclose(npy(gru(x)), npy(simple(x)), atol=ATOL)


def test_gates_lie_in_their_ranges(rng):
    x = 3 * rng.normal(size=(6, 15, 4)).astype("float32")
    out = kgates.GatedRNN(kgates.GRUCell(8), return_sequences=True)(x)
    for gate in "zr":
        assert 0.0 <= npy(out[gate]).min() and npy(out[gate]).max() <= 1.0
    assert np.abs(npy(out["g"])).max() <= 1.0
    assert kgates.GRUCell(8).gate_names == ("z", "r", "g")
