import keras
import numpy as np
import pytest

import kgates


def test_unknown_variant():
    with pytest.raises(ValueError, match="variant.*'XYZ'.*NFG"):
        kgates.LSTMCell(4, variant="XYZ")


@pytest.mark.parametrize(
    ("cls", "pin", "error", "match"),
    [
        (kgates.LSTMCell, {"q": 1.0}, ValueError, "unknown gate 'q' in argument `pin`"),
        (kgates.LSTMCell, {"g": 1.0}, ValueError, "unknown gate 'g'"),
        (kgates.GRUCell, {"i": 1.0}, ValueError, r"unknown gate 'i'.*\('z', 'r'\)"),
        (kgates.LSTMCell, {"f": 1.5}, ValueError, r"pin\['f'\].*\[0, 1\]"),
        (kgates.GRUCell, {"z": -0.1}, ValueError, r"pin\['z'\].*\[0, 1\]"),
        (kgates.LSTMCell, {"f": float("nan")}, ValueError, r"pin\['f'\]"),
        (kgates.LSTMCell, {"f": "one"}, TypeError, r"pin\['f'\]` must be a number"),
        (kgates.LSTMCell, ["f"], TypeError, "argument `pin` must be a dict"),
    ],
)
def test_bad_pin(cls, pin, error, match):
    with pytest.raises(error, match=match):
        cls(4, pin=pin)


def test_coupled_with_pinned_input_or_forget_gate():
    for gate in "if":
        with pytest.raises(ValueError, match="coupled"):
            kgates.LSTMCell(4, coupled=True, pin={gate: 1.0})
    kgates.LSTMCell(4, coupled=True, pin={"o": 1.0})  # fine


@pytest.mark.parametrize("units", [0, -3, 2.5, "8", True])
@pytest.mark.parametrize("cls", [kgates.LSTMCell, kgates.GRUCell])
def test_units_must_be_positive_integer(cls, units):
    with pytest.raises(ValueError, match="`units` must be a positive integer"):
        cls(units)


@pytest.mark.parametrize("shape", [(4, 3), (2, 4, 5, 3)])
def test_input_rank_other_than_three(shape):
    x = np.zeros(shape, "float32")
    with pytest.raises(ValueError, match=r"\(batch, time, features\)"):
        keras.layers.RNN(kgates.LSTMCell(4))(x)
    with pytest.raises(ValueError, match=r"\(batch, time, features\)"):
        kgates.GatedRNN(kgates.GRUCell(4))(x)


def test_weights_of_the_wrong_shape():
    x = np.zeros((2, 3, 5), "float32")
    keras_lstm = keras.layers.LSTM(4)
    nfg = keras.layers.RNN(kgates.LSTMCell(4, pin={"f": 1.0}))
    keras_lstm(x)
    nfg(x)
    with pytest.raises(ValueError, match=r"shape"):
        nfg.set_weights(keras_lstm.get_weights())


def test_gated_rnn_needs_a_kgates_cell_and_zero_output_for_mask():
    with pytest.raises(TypeError, match="`cell` must be a kgates cell"):
        kgates.GatedRNN(keras.layers.LSTMCell(4))
    with pytest.raises(ValueError, match="zero_output_for_mask"):
        kgates.GatedRNN(kgates.LSTMCell(4), zero_output_for_mask=False)


def test_split_gates_checks_width_and_cell():
    cell = kgates.LSTMCell(4)
    with pytest.raises(ValueError, match="last dimension 24.*return_gates=True"):
        kgates.split_gates(np.zeros((2, 4)), cell)
    with pytest.raises(TypeError, match="kgates cell"):
        kgates.split_gates(np.zeros((2, 24)), keras.layers.LSTMCell(4))
