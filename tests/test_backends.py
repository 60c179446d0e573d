"""The same cells give the same numbers on every installed Keras backend."""

import importlib.util
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

BACKENDS = [b for b in ("tensorflow", "jax", "torch") if importlib.util.find_spec(b)]

# Runs in a fresh process per backend: builds each cell, sets weights drawn
# from a seeded NumPy generator, and prints every gate sequence.
SCRIPT = """
import json, sys
import numpy as np, keras, kgates
cells = {
    **{v: kgates.LSTMCell(4, variant=v) for v in kgates.VARIANTS},
    "GRU": kgates.GRUCell(4), "GRU-reset-before": kgates.GRUCell(4, reset_after=False),
}
rng = np.random.default_rng(7)
x = rng.normal(size=(3, 6, 2)).astype("float32")
mask = np.arange(6)[None] < np.array([[6], [4], [2]])
result = {}
for name, cell in cells.items():
    layer = kgates.GatedRNN(cell, return_sequences=True)
    layer(x, mask=mask)
    layer.set_weights([rng.normal(0, 0.5, w.shape).astype("float32") for w in layer.weights])
    out = layer(x, mask=mask)
    result[name] = {k: keras.ops.convert_to_numpy(v).tolist() for k, v in out.items()}
json.dump(result, sys.stdout)
"""


def _gates_on(backend):
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


@pytest.mark.processes
@pytest.mark.skipif(len(BACKENDS) < 2, reason="needs a second Keras backend installed")
def test_every_cell_agrees_with_the_other_backends():
    here = keras.backend.backend()
    others = [b for b in BACKENDS if b != here]
    reference = _gates_on(here)
    for backend in others:
        result = _gates_on(backend)
        for cell, gates in reference.items():
            for name, value in gates.items():
                np.testing.assert_allclose(
                    np.array(result[cell][name]),
                    np.array(value),
                    atol=1e-5,
                    err_msg=f"{cell} {name}: {here} vs {backend}",
                )
