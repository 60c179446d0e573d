"""`kgates.intervene`: gates changed inside the recurrence of an unchanged model,
against a float64 recurrence that applies the same edit, and against models that
compute the edited network by construction (a pinned cell, the identity)."""

import keras
import numpy as np
import pytest
from helpers import ATOL, padded
from reference import randomize, sigmoid

import kgates
from kgates import Edit


def lstm_with_edits(x, w, units, edits, mask=None):
    """A float64 LSTM (Keras's layout i, f, g, o) whose values are replaced where
    `edits[name] = (value, where)` say, as each is computed; returns h (B, T, u)."""
    batch, steps, _ = x.shape
    kernel, recurrent, bias = (
        np.asarray(w[k], "float64") for k in ("kernel", "recurrent_kernel", "bias")
    )
    h, c = np.zeros((batch, units)), np.zeros((batch, units))
    out = np.zeros((batch, steps, units))

    def edited(name, t, current):
        if name not in edits:
            return current
        value, where = edits[name]
        return np.where(where[:, t], value[:, t], current)

    for t in range(steps):
        pre = x[:, t] @ kernel + h @ recurrent + bias
        i, f, g, o = (pre[:, k * units : (k + 1) * units] for k in range(4))
        i, f, g = edited("i", t, sigmoid(i)), edited("f", t, sigmoid(f)), edited("g", t, np.tanh(g))
        c_new = edited("c", t, f * c + i * g)
        o = edited("o", t, sigmoid(o))
        h_new = edited("h", t, o * np.tanh(c_new))
        real = np.ones((batch, 1), bool) if mask is None else mask[:, t, None]
        h, c = np.where(real, h_new, h), np.where(real, c_new, c)
        out[:, t] = np.where(real, h_new, 0.0)
    return out


def _lstm_model(units=4, time=9, features=3, head=True):
    inputs = keras.Input((time, features))
    masked = keras.layers.Masking()(inputs)
    h = keras.layers.LSTM(units, return_sequences=True, name="lstm")(masked)
    outputs = keras.layers.Dense(2, name="head")(h) if head else h
    return keras.Model(inputs, outputs)


def test_no_edit_gives_the_models_own_outputs(rng):
    x, _ = padded(rng)
    inputs = keras.Input((9, 3))
    h = keras.layers.GRU(4, return_sequences=True, name="gru")(keras.layers.Masking()(inputs))
    h = keras.layers.Bidirectional(keras.layers.LSTM(3), name="bi")(h)
    model = keras.Model(inputs, keras.layers.Dense(1)(h))
    for layer in model.layers:
        randomize(layer, rng)
    expected = keras.ops.convert_to_numpy(model(x))
    np.testing.assert_allclose(kgates.intervene(model, x, {}), expected, atol=ATOL)
    np.testing.assert_allclose(kgates.intervene(model, x, {"gru": {}}), expected, atol=ATOL)
    # an edit that sets h to h, and c from the same input: the identity again
    same = {"gru": {"h": Edit(source=x)}, "bi": {"c": Edit(source=x)}}
    np.testing.assert_allclose(kgates.intervene(model, x, same), expected, atol=ATOL)


@pytest.mark.parametrize(
    ("gate", "value", "units", "steps"),
    [
        ("f", 1.0, None, None),
        ("i", 0.0, [1, 3], slice(4, None)),
        ("g", -0.5, 2, [0, 5]),
        ("c", 3.0, None, 6),
        ("o", 0.25, slice(0, 2), None),
        ("h", 0.0, [0], slice(None, 3)),
    ],
)
def test_an_edit_equals_the_float64_recurrence_with_the_same_edit(rng, gate, value, units, steps):
    x, mask = padded(rng)
    model = _lstm_model()
    weights = randomize(model.get_layer("lstm"), rng)
    head = randomize(model.get_layer("head"), rng)
    got = kgates.intervene(model, x, {"lstm": {gate: Edit(value, units=units, steps=steps)}})
    where = np.zeros((4, 9, 4), bool)
    every = slice(None)
    where[:, every if steps is None else steps, every if units is None else units] = True
    h = lstm_with_edits(x, weights, 4, {gate: (np.full((4, 9, 4), value), where)}, mask)
    expected = h @ head["kernel"] + head["bias"]
    np.testing.assert_allclose(got[mask], expected[mask], atol=ATOL)
    unedited = kgates.intervene(model, x, {})
    assert np.abs(got - unedited)[mask].max() > 1e-3  # the edit changed something


def test_every_forget_gate_held_open_is_the_lstm_with_f_pinned_to_one(rng):
    x = rng.normal(size=(3, 7, 2)).astype("float32")
    inputs = keras.Input((7, 2))
    model = keras.Model(inputs, keras.layers.LSTM(5, name="lstm")(inputs))
    w = randomize(model.get_layer("lstm"), rng)
    pinned = kgates.LSTM(5, pin={"f": 1.0}, peephole=False)
    pinned_model = keras.Model(inputs, pinned(inputs))
    keep = np.r_[0:5, 10:20]  # the i, g and o columns: f owns none when pinned
    pinned.set_weights([w["kernel"][:, keep], w["recurrent_kernel"][:, keep], w["bias"][keep]])
    expected = keras.ops.convert_to_numpy(pinned_model(x))
    np.testing.assert_allclose(
        kgates.intervene(model, x, {"lstm": {"f": 1.0}}), expected, atol=ATOL
    )


def test_a_stacked_model_sees_an_edit_of_its_first_layer_in_the_second(rng):
    x = rng.normal(size=(2, 6, 3)).astype("float32")
    inputs = keras.Input((6, 3))
    first = keras.layers.LSTM(4, return_sequences=True, name="first")(inputs)
    model = keras.Model(inputs, keras.layers.GRU(2, name="second")(first))
    for layer in model.layers[1:]:
        randomize(layer, rng)
    edit = {"first": {"h": Edit(0.0, steps=[2, 5])}}
    edited = kgates.intervene(model, x, edit)
    # the first layer alone, edited, then the second layer on what it gives
    first_alone = keras.Model(inputs, first)
    fed = kgates.intervene(first_alone, x, edit)
    np.testing.assert_allclose(fed[:, [2, 5]], 0.0)
    assert np.abs(fed - keras.ops.convert_to_numpy(first_alone(x)))[:, 3:5].min() > 0
    expected = keras.ops.convert_to_numpy(model.get_layer("second")(fed))
    np.testing.assert_allclose(edited, expected, atol=ATOL)


def test_a_bidirectional_layer_is_edited_by_half_or_whole(rng):
    x = rng.normal(size=(2, 5, 3)).astype("float32")
    inputs = keras.Input((5, 3))
    model = keras.Model(inputs, keras.layers.Bidirectional(keras.layers.GRU(2), name="bi")(inputs))
    randomize(model.get_layer("bi"), rng)
    own = kgates.intervene(model, x, {})
    forward = kgates.intervene(model, x, {"bi/forward": {"z": 1.0}})
    np.testing.assert_allclose(forward[:, :2], 0.0, atol=ATOL)  # z = 1 keeps h_0 = 0
    np.testing.assert_allclose(forward[:, 2:], own[:, 2:], atol=ATOL)
    both = kgates.intervene(model, x, {"bi": {"z": 1.0}})
    np.testing.assert_allclose(both, 0.0, atol=ATOL)


@pytest.mark.parametrize(
    ("edits", "match"),
    [
        ({"lstn": {"f": 1.0}}, r"named 'lstn'; the model's recurrent layers are \['lstm"),
        ({"lstm": {"z": 1.0}}, "layer 'lstm' has no gate 'z'; it has i, f, g, o, c, h"),
        ({"lstm": {"f": 1.5}}, r"lstm/f: gate 'f' takes values in \[0, 1\]; got"),
        ({"lstm": {"g": -2.0}}, r"gate 'g' takes values in \[-1, 1\]"),
        ({"lstm": {"c": np.nan}}, "gate 'c' takes finite values"),
        ({"lstm": {"i": Edit(0.0, units=[4])}}, r"`units` \[4\] is out of range \(the layer has 4"),
        ({"lstm": {"i": Edit(0.0, steps="all")}}, "`steps` must be an int, a list of ints"),
        ({"lstm": {"i": np.zeros((2, 2))}}, "must be a number or an array that broadcasts"),
        ({"lstm": 1.0}, r"edits\['lstm'\] must be a dict"),
    ],
)  # fmt: skip
def test_bad_edits_are_named(rng, edits, match):
    model = _lstm_model(head=False)
    with pytest.raises(ValueError, match=match):
        kgates.intervene(model, np.zeros((4, 9, 3), "float32"), edits)


def test_an_edit_takes_a_value_or_a_source():
    with pytest.raises(ValueError, match="exactly one of `value` and `source`"):
        Edit()


def gru_with_edits(x, w, units, edits, reset_after):
    """A float64 GRU (Keras's layout z, r, g) with values replaced as computed; h."""
    batch, steps, _ = x.shape
    kernel, recurrent = (
        np.asarray(w["kernel"], "float64"),
        np.asarray(w["recurrent_kernel"], "float64"),
    )
    bias = np.asarray(w["bias"], "float64")
    b_in, b_rec = (bias[0], bias[1]) if reset_after else (bias, np.zeros_like(bias))
    h, out = np.zeros((batch, units)), np.zeros((batch, steps, units))
    cols = [slice(k * units, (k + 1) * units) for k in range(3)]

    def edited(name, t, current):
        value, where = edits.get(name, (None, None))
        return current if value is None else np.where(where[:, t], value[:, t], current)

    for t in range(steps):
        xw = x[:, t] @ kernel + b_in
        hu = h @ recurrent + b_rec
        z = edited("z", t, sigmoid(xw[:, cols[0]] + hu[:, cols[0]]))
        r = edited("r", t, sigmoid(xw[:, cols[1]] + hu[:, cols[1]]))
        if reset_after:
            g = np.tanh(xw[:, cols[2]] + r * hu[:, cols[2]])
        else:
            g = np.tanh(xw[:, cols[2]] + (r * h) @ recurrent[:, cols[2]])
        g = edited("g", t, g)
        h = edited("h", t, z * h + (1 - z) * g)
        out[:, t] = h
    return out


@pytest.mark.parametrize("reset_after", [True, False])
@pytest.mark.parametrize("gate", ["z", "r", "g", "h"])
def test_a_gru_edit_equals_the_float64_recurrence_with_the_same_edit(rng, reset_after, gate):
    x = rng.normal(size=(3, 6, 2)).astype("float32")
    inputs = keras.Input((6, 2))
    layer = keras.layers.GRU(4, reset_after=reset_after, return_sequences=True, name="gru")
    model = keras.Model(inputs, layer(inputs))
    weights = randomize(layer, rng)
    value = {"z": 0.9, "r": 0.0, "g": 0.5, "h": -0.3}[gate]
    got = kgates.intervene(model, x, {"gru": {gate: Edit(value, units=[0, 2], steps=[1, 4])}})
    where = np.zeros((3, 6, 4), bool)
    where[:, [1, 4]] = np.isin(np.arange(4), [0, 2])
    expected = gru_with_edits(
        x, weights, 4, {gate: (np.full((3, 6, 4), value), where)}, reset_after
    )
    np.testing.assert_allclose(got, expected, atol=ATOL)


def _shut_input_gate(batch, steps, units, at_steps):
    """The edit i = 0 for unit 0 at `at_steps`, as (value, where) for the reference."""
    where = np.zeros((batch, steps, units), bool)
    where[:, at_steps, 0] = True
    return {"i": (np.zeros((batch, steps, units)), where)}


@pytest.mark.parametrize("second_input", [False, True])
def test_steps_count_in_the_layers_own_time_on_a_variable_time_axis(rng, second_input):
    # The LSTM sees the pooled sequence (4 steps of 8), and need not be on the
    # model's first input: steps=[1, 3] are its steps 1 and 3.
    x = rng.normal(size=(3, 8, 2)).astype("float32")
    side = keras.Input((2,))
    inputs = keras.Input((None, 2))
    pooled = keras.layers.AveragePooling1D(2)(inputs)
    layer = keras.layers.LSTM(4, return_sequences=True, name="lstm")
    model = keras.Model([side, inputs] if second_input else inputs, layer(pooled))
    feed = [np.zeros((3, 2), "float32"), x] if second_input else x
    weights = randomize(layer, rng)
    got = kgates.intervene(model, feed, {"lstm": {"i": Edit(0.0, units=[0], steps=[1, 3])}})
    fed = x.reshape(3, 4, 2, 2).mean(axis=2)
    expected = lstm_with_edits(fed, weights, 4, _shut_input_gate(3, 4, 4, [1, 3]))
    np.testing.assert_allclose(got, expected, atol=ATOL)


def test_a_stateful_layer_is_edited_from_its_state_and_keeps_it(rng):
    x = rng.normal(size=(2, 10, 3)).astype("float32")
    layer = keras.layers.LSTM(4, stateful=True, return_sequences=True, name="lstm")
    model = keras.Sequential([keras.Input((5, 3), batch_size=2), layer])
    weights = randomize(layer, rng)
    model(x[:, :5])  # the first chunk; the edit is in the second
    state = [keras.ops.convert_to_numpy(s) for s in layer.states]
    got = kgates.intervene(model, x[:, 5:], {"lstm": {"i": Edit(0.0, units=[0], steps=[2])}})
    expected = lstm_with_edits(x, weights, 4, _shut_input_gate(2, 10, 4, [7]))[:, 5:]
    np.testing.assert_allclose(got, expected, atol=ATOL)
    for before, now in zip(state, layer.states):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(now), before)
    unedited = kgates.intervene(model, x[:, 5:], {})
    full = lstm_with_edits(x, weights, 4, {})[:, 5:]
    np.testing.assert_allclose(unedited, full, atol=ATOL)
    for before, now in zip(state, layer.states):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(now), before)
