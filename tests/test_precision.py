import keras
import numpy as np
import pytest
from reference import npy, randomize

import kgates


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
@pytest.mark.parametrize("cell_cls", [kgates.LSTMCell, kgates.GRUCell])
def test_mixed_precision(policy, cell_cls, rng):
    x = 2 * rng.normal(size=(4, 10, 3)).astype("float32")
    full = kgates.GatedRNN(cell_cls(8), return_sequences=True)
    full(x)
    weights = randomize(full, rng)
    want = {k: npy(v) for k, v in full(x).items()}

    keras.config.set_dtype_policy(policy)
    layer = kgates.GatedRNN(cell_cls(8), return_sequences=True)
    layer(x)
    layer.set_weights(list(weights.values()))
    got = layer(x)
    keras.config.set_dtype_policy("float32")

    half = "float16" if policy == "mixed_float16" else "bfloat16"
    assert all(w.dtype == "float32" for w in layer.weights)
    tolerance = 5e-3 if half == "float16" else 5e-2
    for name, value in got.items():
        assert keras.backend.standardize_dtype(value.dtype) == half, name
        value = npy(keras.ops.cast(value, "float32"))
        np.testing.assert_allclose(value, want[name], atol=tolerance, err_msg=name)
        if name not in ("h", "c", "g"):
            assert value.min() >= 0.0 and value.max() <= 1.0, name


def test_mixed_precision_variants_train(rng):
    keras.config.set_dtype_policy("mixed_float16")
    x = rng.normal(size=(16, 8, 3)).astype("float32")
    inputs = keras.Input((8, 3))
    out = kgates.GatedRNN(kgates.LSTMCell(8, variant="FGR"))(inputs)
    model = keras.Model(inputs, keras.layers.Dense(1, dtype="float32")(out["h"]))
    model.compile("adam", "mse")
    history = model.fit(x, np.ones((16, 1)), epochs=2, verbose=0)
    keras.config.set_dtype_policy("float32")
    assert np.isfinite(history.history["loss"]).all()
