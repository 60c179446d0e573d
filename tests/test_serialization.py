import keras
import numpy as np
import pytest
from reference import npy, randomize

import kgates

CELLS = [
    *[(kgates.LSTMCell, {"variant": v}) for v in kgates.VARIANTS],
    (kgates.LSTMCell, {"pin": {"i": 0.5}, "input_activation": "relu", "dropout": 0.2}),
    (kgates.LSTMCell, {"activation": "relu", "unit_forget_bias": False, "use_bias": False}),
    (kgates.GRUCell, {}),
    (kgates.GRUCell, {"reset_after": False, "pin": {"z": 0.0, "r": 1.0}}),
]
IDS = [f"{cls.__name__}-{kwargs}" for cls, kwargs in CELLS]


@pytest.mark.parametrize(("cell_cls", "kwargs"), CELLS, ids=IDS)
def test_config_round_trip(cell_cls, kwargs):
    cell = cell_cls(6, return_gates=True, **kwargs)
    clone = cell_cls.from_config(cell.get_config())
    assert clone.get_config() == cell.get_config()
    assert clone.gate_names == cell.gate_names
    assert getattr(clone, "variant", None) == getattr(cell, "variant", None)


def test_keras_file_round_trip_in_safe_mode(tmp_path, rng):
    # every configuration side by side in one model: one file, one load
    x = rng.normal(size=(3, 5, 4)).astype("float32")
    inputs = keras.Input((5, 4))
    outputs = {}
    for k, (cell_cls, kwargs) in enumerate(CELLS):
        gates = kgates.GatedRNN(cell_cls(6, **kwargs), return_sequences=True)(inputs)
        outputs[f"{k}/rnn"] = keras.layers.RNN(cell_cls(3, **kwargs))(gates["h"])  # drop-in too
        outputs.update({f"{k}/{name}": value for name, value in gates.items()})
    model = keras.Model(inputs, outputs)
    randomize(model, rng)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    want, got = model(x), loaded(x)
    assert set(got) == set(want)
    for name in want:
        k = int(name.split("/")[0])
        err_msg = f"{name}: {IDS[k]}"
        np.testing.assert_array_equal(npy(got[name]), npy(want[name]), err_msg=err_msg)


def test_registered_under_the_kgates_package():
    for cls in (kgates.LSTMCell, kgates.GRUCell, kgates.GatedRNN):
        assert keras.saving.get_registered_name(cls) == f"kgates>{cls.__name__}"
