"""`kgates.ablate`: the batched per-unit edits give the losses of one edit at a
time (each loss worked in NumPy from `kgates.intervene`'s outputs)."""

import keras
import numpy as np
import pytest
from helpers import padded
from reference import randomize

import kgates
from kgates import Edit
from kgates.inspect import _ablate


def _model(rng):
    inputs = keras.Input((9, 3))
    h = keras.layers.LSTM(5, return_sequences=True, name="lstm")(keras.layers.Masking()(inputs))
    model = keras.Model(inputs, keras.layers.Dense(1, name="head")(h))
    for layer in model.layers[2:]:
        randomize(layer, rng)
    model.compile(loss="mse")
    return model


def test_each_units_loss_is_that_of_its_own_edit(rng, monkeypatch):
    monkeypatch.setattr(_ablate, "ROWS_PER_CALL", 8)  # two units per call: chunks of 2, 2, 1
    x, mask = padded(rng)
    y = rng.normal(size=(4, 9, 1)).astype("float32")
    model = _model(rng)
    table = kgates.ablate(model, x, y, layer="lstm", gate="f", held=("mean", 0.0))
    f = kgates.trace(model, x)["lstm"]["f"]
    means = np.array([f[..., u][mask].mean() for u in range(5)])
    np.testing.assert_allclose(table.means, means, rtol=1e-6)

    def loss(outputs):  # Keras's mse: per step, then averaged
        return float(np.mean((outputs - y) ** 2))

    assert table.baseline == pytest.approx(loss(keras.ops.convert_to_numpy(model(x))), rel=1e-5)
    for unit in range(5):
        for column, value in enumerate((means[unit], 0.0)):
            edited = kgates.intervene(model, x, {"lstm": {"f": Edit(value, units=[unit])}})
            assert table.losses[unit, column] == pytest.approx(loss(edited), rel=1e-5)
    assert table.changes.shape == (5, 2) and np.abs(table.changes).max() > 1e-4
    (first, change), *_ = table.top(5, at="0")
    assert change == pytest.approx(table.changes[:, 1].max())
    assert f"lstm/f: loss {table.baseline:.4g}" in str(table)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"layer": "lstn", "gate": "f"}, "no recurrent layer named"),
        ({"layer": "lstm", "gate": "z"}, "has no gate 'z'; it has h, i, f, g, o, c"),
        ({"layer": "lstm", "gate": "f", "held": ("median",)}, 'takes numbers and "mean"'),
        ({"layer": "lstm", "gate": "f", "units": [5]}, r"`units` .* in \[0, 5\)"),
        ({"layer": "lstm", "gate": "f", "units": [0.5]}, "`units` must be a list of unit"),
        ({"layer": "lstm", "gate": "f", "y": np.ones((3, 9, 1))}, r"`y` .* \(2\), got"),
    ],
)
def test_bad_options_are_named(rng, options, match):
    model = _model(rng)
    x = np.ones((2, 9, 3), "float32")
    options = {"y": np.ones((2, 9, 1)), **options}
    with pytest.raises(ValueError, match=match):
        kgates.ablate(model, x, **options)


def test_a_model_with_two_inputs(rng):
    seq, side = keras.Input((6, 3)), keras.Input((2,))
    h = keras.layers.LSTM(3, name="lstm")(seq)
    model = keras.Model([seq, side], keras.layers.Concatenate()([h, side]))
    randomize(model.get_layer("lstm"), rng)
    model.compile(loss="mse")
    x = [rng.normal(size=(4, 6, 3)).astype("float32"), rng.normal(size=(4, 2)).astype("float32")]
    y = rng.normal(size=(4, 5)).astype("float32")
    table = kgates.ablate(model, x, y, layer="lstm", gate="i", held=(0.0,))
    for unit in range(3):
        edited = kgates.intervene(model, x, {"lstm": {"i": Edit(0.0, units=[unit])}})
        assert table.losses[unit, 0] == pytest.approx(np.mean((edited - y) ** 2), rel=1e-5)


def test_a_model_without_a_loss_needs_one(rng):
    inputs = keras.Input((4, 2))
    model = keras.Model(inputs, keras.layers.GRU(1, name="gru")(inputs))
    x, y = np.ones((2, 4, 2), "float32"), np.zeros((2, 1))
    with pytest.raises(ValueError, match="pass `loss`"):
        kgates.ablate(model, x, y, layer="gru", gate="z")
    table = kgates.ablate(model, x, y, layer="gru", gate="z", held=(1.0,), loss="mse")
    # z = 1 keeps the one unit's h at its initial zeros: the loss against zeros is 0
    np.testing.assert_allclose(table.losses, 0.0, atol=1e-12)
