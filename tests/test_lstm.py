import keras
import numpy as np
import pytest
from helpers import ATOL
from reference import lstm_reference, npy, randomize

import kgates


def _x(rng, shape=(4, 7, 3)):
    return rng.normal(size=shape).astype("float32")


def test_dropin_matches_keras_lstm_forward_and_states(rng):
    x = _x(rng, (8, 20, 5))
    ref = keras.layers.LSTM(32, return_sequences=True, return_state=True)
    ours = keras.layers.RNN(kgates.LSTMCell(32), return_sequences=True, return_state=True)
    ref(x)
    ours(x)
    ours.set_weights(ref.get_weights())
    for a, b in zip(ours(x), ref(x)):
        np.testing.assert_allclose(npy(a), npy(b), atol=ATOL)


def test_weights_move_both_ways_with_the_same_names(rng):
    x = _x(rng)
    ours = keras.layers.RNN(kgates.LSTMCell(6))
    ref = keras.layers.RNN(keras.layers.LSTMCell(6))
    ours(x)
    ref(x)
    assert [w.path.split("/")[-1] for w in ours.weights] == ["kernel", "recurrent_kernel", "bias"]
    assert [w.shape for w in ours.weights] == [w.shape for w in ref.weights]
    randomize(ours, rng)
    ref.set_weights(ours.get_weights())
    np.testing.assert_allclose(npy(ref(x)), npy(ours(x)), atol=ATOL)


def test_default_initial_weights_equal_keras_under_the_same_seed():
    # unit_forget_bias puts ones in the forget slice of the bias, as Keras.
    cell = kgates.LSTMCell(3)
    cell.build((None, 2))
    bias = npy(cell.bias)
    np.testing.assert_array_equal(bias, [0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    nfg = kgates.LSTMCell(3, variant="NFG")
    nfg.build((None, 2))
    assert npy(nfg.bias).tolist() == [0.0] * 9  # no forget gate, no ones


def test_a_seeded_random_bias_initializer_draws_as_keras_does():
    # Keras calls the initializer once for i and once for (c, o): a seeded
    # initializer called per gate would give o the biases of i.
    def initializer():
        return keras.initializers.RandomUniform(-1.0, 1.0, seed=5)

    ours = kgates.LSTMCell(4, bias_initializer=initializer())
    theirs = keras.layers.LSTMCell(4, bias_initializer=initializer())
    for cell in (ours, theirs):
        cell.build((None, 2))
    bias = npy(ours.bias)
    np.testing.assert_array_equal(bias, npy(theirs.bias))
    assert not np.array_equal(bias[:4], bias[12:])  # i and o differ
    np.testing.assert_array_equal(bias[4:8], np.ones(4))


def test_matches_keras_after_training_steps(rng):
    x = _x(rng, (16, 10, 4))
    y = rng.normal(size=(16, 1)).astype("float32")

    def model(cell_layer):
        inputs = keras.Input((10, 4))
        return keras.Model(inputs, keras.layers.Dense(1)(cell_layer(inputs)))

    ref = model(keras.layers.LSTM(8))
    ours = model(keras.layers.RNN(kgates.LSTMCell(8)))
    ours.set_weights(ref.get_weights())
    for m in (ref, ours):
        m.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
        m.fit(x, y, epochs=3, batch_size=8, shuffle=False, verbose=0)
    for a, b in zip(ours.get_weights(), ref.get_weights()):
        np.testing.assert_allclose(a, b, atol=ATOL)
    np.testing.assert_allclose(ours.predict(x, verbose=0), ref.predict(x, verbose=0), atol=ATOL)


@pytest.mark.parametrize("variant", list(kgates.VARIANTS))
def test_every_variant_matches_numpy_float64_reference(variant, rng):
    x = _x(rng)
    cell = kgates.LSTMCell(5, variant=variant)
    layer = kgates.GatedRNN(cell, return_sequences=True)
    layer(x)
    weights = randomize(layer, rng)
    got = layer(x)
    preset = kgates.VARIANTS[variant]
    want = lstm_reference(
        x,
        weights,
        5,
        peephole=preset.get("peephole", False),
        pin=preset.get("pin"),
        coupled=preset.get("coupled", False),
        input_linear="input_activation" in preset,
        output_linear="output_activation" in preset,
        gate_recurrence=preset.get("gate_recurrence", False),
    )
    assert set(got) == set(want)
    for name in want:
        np.testing.assert_allclose(npy(got[name]), want[name], atol=ATOL, err_msg=name)


def test_options_combine_by_hand_and_match_the_reference(rng):
    # NOG without peepholes and with a half-open pinned input gate.
    x = _x(rng)
    cell = kgates.LSTMCell(4, pin={"i": 0.5, "o": 1.0})
    layer = kgates.GatedRNN(cell, return_sequences=True)
    layer(x)
    weights = randomize(layer, rng)
    want = lstm_reference(x, weights, 4, pin={"i": 0.5, "o": 1.0})
    got = layer(x)
    for name in want:
        np.testing.assert_allclose(npy(got[name]), want[name], atol=ATOL, err_msg=name)
    assert cell.variant is None
    assert kgates.LSTMCell(4, peephole=True, pin={"f": 1.0}).variant == "NFG"


def test_forget_gate_and_cell_update_worked_by_hand():
    # 3 units, 3-dim input, integer weights; hard_sigmoid(z) = clip(z / 6 + 0.5, 0, 1)
    # is exact at z = -3, 0, 3, giving f = 0, 0.5, 1.
    units = 3
    cell = kgates.LSTMCell(
        units, recurrent_activation="hard_sigmoid", pin={"i": 1.0, "o": 1.0}, input_activation=None
    )
    layer = kgates.GatedRNN(cell, return_sequences=True)
    x = np.array([[[1, 0, 0], [0, 1, 0]]], "float32")  # one sample, two steps
    layer.build(x.shape)
    W_f = np.array([[-3, 0, 3], [0, 0, 0], [0, 0, 0]])  # step 1: z_f = (-3, 0, 3)
    W_g = np.array([[2, -4, 6], [1, 2, 3]])  # rows for x_0 and x_1
    W_g = np.array([W_g[0], W_g[1], [0, 0, 0]])
    kernel = np.concatenate([W_f, W_g], axis=1).astype("float32")  # weighted gates: f, g
    zeros = np.zeros((units, 2 * units), "float32")
    layer.set_weights([kernel, zeros, np.zeros(2 * units, "float32")])
    out = {k: npy(v) for k, v in layer(x).items()}
    # step 1: c_0 = 0, f = (0, .5, 1), g = (2, -4, 6), i = 1: c_1 = g
    np.testing.assert_array_equal(out["f"][0, 0], [0.0, 0.5, 1.0])
    np.testing.assert_array_equal(out["c"][0, 0], [2.0, -4.0, 6.0])
    # step 2: z_f = 0 -> f = 0.5 everywhere, g = (1, 2, 3): c_2 = 0.5 * c_1 + g
    np.testing.assert_array_equal(out["f"][0, 1], [0.5, 0.5, 0.5])
    np.testing.assert_array_equal(out["c"][0, 1], [2.0, 0.0, 6.0])
    # h = o * tanh(c) with o = 1; tanh itself is only exact to float32 rounding
    np.testing.assert_allclose(out["h"][0, 1], np.tanh([2.0, 0.0, 6.0]), rtol=1e-6)


@pytest.mark.parametrize("variant", list(kgates.VARIANTS))
def test_gate_properties(variant, rng):
    x = 3 * _x(rng, (6, 12, 3))
    layer = kgates.GatedRNN(kgates.LSTMCell(8, variant=variant), return_sequences=True)
    layer(x)
    randomize(layer, rng, scale=1.0)
    out = {k: npy(v) for k, v in layer(x).items()}
    for gate in "ifo":
        assert out[gate].min() >= 0.0 and out[gate].max() <= 1.0, gate
    if variant == "NFG":
        np.testing.assert_array_equal(out["f"], 1.0)
    if variant == "NIG":
        np.testing.assert_array_equal(out["i"], 1.0)
    if variant == "NOG":
        np.testing.assert_array_equal(out["o"], 1.0)
    if variant == "CIFG":
        np.testing.assert_allclose(out["f"], 1.0 - out["i"], atol=1e-7)
    if variant == "NOAF":
        np.testing.assert_allclose(out["h"], out["o"] * out["c"], atol=ATOL)
    else:
        np.testing.assert_allclose(out["h"], out["o"] * np.tanh(out["c"]), atol=ATOL)
    if variant != "NIAF":
        assert np.abs(out["g"]).max() <= 1.0


def test_pinned_gates_own_no_weights():
    def count(cell):
        keras.layers.RNN(cell)(np.zeros((1, 2, 3), "float32"))
        return cell.count_params()

    u, d = 4, 3
    full = 4 * (d * u + u * u + u)
    assert count(kgates.LSTMCell(u)) == full
    assert count(kgates.LSTMCell(u, pin={"f": 1.0})) == full * 3 // 4
    assert count(kgates.LSTMCell(u, variant="NFG")) == full * 3 // 4 + 2 * u
    assert count(kgates.LSTMCell(u, variant="CIFG")) == full * 3 // 4 + 2 * u
    assert count(kgates.LSTMCell(u, variant="FGR")) == full + 3 * u + (3 * u) ** 2


def test_fgr_carries_previous_gates_as_a_third_state(rng):
    x = _x(rng)
    layer = keras.layers.RNN(kgates.LSTMCell(4, variant="FGR"), return_state=True)
    h, state_h, c, gates = layer(x)
    assert gates.shape == (4, 12)
    np.testing.assert_allclose(npy(h), npy(state_h))


def test_variant_and_conflicting_option_is_an_error():
    with pytest.raises(ValueError, match="variant='NFG'.*pin"):
        kgates.LSTMCell(4, variant="NFG", pin={"i": 1.0})
    # an option a variant leaves at its default is fixed by it too: NP has no
    # peepholes, V is not coupled (that is CIFG)
    for variant, option in [("NP", {"peephole": True}), ("V", {"coupled": True})]:
        with pytest.raises(ValueError, match=f"variant='{variant}' sets `{next(iter(option))}`"):
            kgates.LSTMCell(4, variant=variant, **option)
    # the same value as the preset is fine, and the activations are free
    assert kgates.LSTMCell(4, variant="NFG", peephole=True).variant == "NFG"
    assert kgates.LSTMCell(4, variant="NP", peephole=False, coupled=False).variant == "NP"
    assert kgates.LSTMCell(4, variant="V", input_activation="relu").peephole


def test_variants_are_read_only():
    with pytest.raises(TypeError):
        kgates.VARIANTS["MINE"] = {"peephole": True}
    with pytest.raises(TypeError):
        kgates.VARIANTS["NFG"]["pin"]["f"] = 0.5
    assert kgates.LSTMCell(3, variant="NFG").pin == {"f": 1.0}
