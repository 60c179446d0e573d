"""`kgates.find_units`: a unit planted to count bracket depth is ranked first, and
the scores are checked against SciPy's Pearson r and worked probe scores."""

import keras
import numpy as np
import pytest
from scipy import stats

import kgates


def _brackets(rng, batch=40, steps=30):
    """One-hot symbols: 0 '(', 1 ')', 2 other; depth never below 0."""
    symbols = np.full((batch, steps), 2)
    depth = np.zeros((batch, steps))
    for b in range(batch):
        level = 0
        for t in range(steps):
            choice = rng.choice(3, p=[0.3, 0.3, 0.4])
            if choice == 1 and level == 0:
                choice = 2
            level += {0: 1, 1: -1, 2: 0}[choice]
            symbols[b, t], depth[b, t] = choice, level
    return np.eye(3, dtype="float32")[symbols], depth


def _planted_model(rng, units=4):
    """An LSTM whose unit 0 adds 0.1 per '(' and takes 0.1 per ')' into c (f = i = 1)."""
    inputs = keras.Input((30, 3))
    layer = keras.layers.LSTM(units, return_sequences=True, name="lstm")
    model = keras.Model(inputs, layer(inputs))
    kernel = rng.normal(0, 0.5, (3, 4 * units)).astype("float32")
    recurrent = rng.normal(0, 0.5, (units, 4 * units)).astype("float32")
    bias = rng.normal(0, 0.5, 4 * units).astype("float32")
    i, f, g, o = (k * units for k in range(4))
    for start in (i, f, g, o):
        kernel[:, start], recurrent[:, start] = 0.0, 0.0
    bias[i] = bias[f] = bias[o] = 30.0  # gates at 1 (sigmoid(30) = 1 - 1e-13)
    bias[g] = 0.0
    kernel[:, g] = [np.arctanh(0.1), -np.arctanh(0.1), 0.0]  # g = +-0.1 exactly
    layer.set_weights([kernel, recurrent, bias])
    return model


def test_a_unit_planted_to_count_brackets_is_ranked_first(rng):
    x, depth = _brackets(rng)
    model = _planted_model(rng)
    inside = depth > 0
    units = kgates.find_units(model, x, {"depth": depth, "inside": inside})
    best = units.top("depth", k=1)[0]
    assert (best["layer"], best["key"], best["unit"]) == ("lstm", "c", 0)
    assert best["r"] == pytest.approx(1.0, abs=1e-5) and best["probe"] > 0.99
    # the scores of another unit, by SciPy and by a least-squares fit worked here
    c = np.asarray(kgates.trace(model, x)["lstm"]["c"])
    row = next(r for r in units.rows["depth"] if (r["key"], r["unit"]) == ("c", 2))
    assert row["r"] == pytest.approx(stats.pearsonr(c[..., 2].ravel(), depth.ravel())[0], abs=1e-6)
    assert units.kinds == {"depth": "number", "inside": "yes/no"}
    assert units.top("inside", k=1)[0]["unit"] == 0
    assert "depth (number; probe R^2, chance 0.000):" in str(units)


def test_the_probe_is_scored_on_sequences_it_was_not_fitted_on(rng):
    x, depth = _brackets(rng, batch=8)
    model = _planted_model(rng)
    units = kgates.find_units(model, x, {"depth": depth}, held_out=0.25, seed=3)
    # the same split, worked here: the first 2 of the seed's permutation are held out
    held = np.zeros(8, bool)
    held[np.random.default_rng(3).permutation(8)[:2]] = True
    c = np.asarray(kgates.trace(model, x)["lstm"]["c"])[..., 1]
    slope, intercept = np.polyfit(c[~held].ravel(), depth[~held].ravel(), 1)
    predicted = slope * c[held] + intercept
    r2 = (
        1 - ((depth[held] - predicted) ** 2).sum() / ((depth[held] - depth[held].mean()) ** 2).sum()
    )
    row = next(r for r in units.rows["depth"] if (r["key"], r["unit"]) == ("c", 1))
    assert row["probe"] == pytest.approx(r2, abs=1e-6)


@pytest.mark.parametrize(
    ("annotations", "match"),
    [
        ({"flat": np.ones((8, 30))}, "annotation 'flat' is constant over the real steps"),
        (
            {"short": np.ones((8, 29))},
            r"'short' must be a \(batch, time\) array of shape \(8, 30\)",
        ),
        ({}, "must be a non-empty dict"),
    ],
)
def test_bad_annotations_are_named(rng, annotations, match):
    x, _ = _brackets(rng, batch=8)
    with pytest.raises(ValueError, match=match):
        kgates.find_units(_planted_model(rng), x, annotations)


def test_each_direction_of_a_bidirectional_layer_is_ranked(rng):
    x, depth = _brackets(rng, batch=8)
    inputs = keras.Input((30, 3))
    layer = keras.layers.Bidirectional(keras.layers.GRU(2, return_sequences=True), name="bi")
    units = kgates.find_units(keras.Model(inputs, layer(inputs)), x, {"depth": depth})
    rows = units.rows["depth"]
    assert {row["layer"] for row in rows} == {"bi/forward", "bi/backward"}
    assert len(rows) == 2 * 2 * 4  # two directions, two units, h z r g each
