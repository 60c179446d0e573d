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


@pytest.mark.parametrize("units", [0, -3, 2.5, "8", True, np.float64(4.0)])
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


@pytest.mark.parametrize(
    ("make", "name"),
    [
        (lambda: kgates.LSTMCell(4, return_gates="no"), "return_gates"),
        (lambda: kgates.GRUCell(4, return_gates="no"), "return_gates"),
        (lambda: kgates.LSTMCell(4, peephole="no"), "peephole"),
        (lambda: kgates.LSTMCell(4, coupled=1), "coupled"),
        (lambda: kgates.GRUCell(4, reset_after="yes"), "reset_after"),
        (lambda: kgates.LSTM(4, return_gates="no"), "return_gates"),
    ],
)
def test_booleans_must_be_booleans(make, name):
    with pytest.raises(TypeError, match=f"`{name}` must be True or False"):
        make()


@pytest.mark.parametrize("rate", ["0.2", 1.5, -0.1, None])
@pytest.mark.parametrize("name", ["dropout", "recurrent_dropout"])
@pytest.mark.parametrize("cls", [kgates.LSTMCell, kgates.GRUCell, kgates.LSTM, kgates.GRU])
def test_dropout_rates_must_be_numbers_in_0_1(cls, name, rate):
    with pytest.raises(ValueError, match=f"`{name}` must be a number in \\[0, 1\\]"):
        cls(4, **{name: rate})


def test_numpy_scalars_are_numbers(rng):
    x = rng.normal(size=(2, 5, 3)).astype("float32")
    for cls in (kgates.LSTMCell, kgates.GRUCell):
        cell = cls(np.int64(4), dropout=np.float32(0.0))
        assert cell.units == 4 and type(cell.units) is int
    layer = keras.layers.RNN(kgates.LSTMCell(4, pin={"f": np.float32(1)}), return_sequences=True)
    assert layer.cell.pin == {"f": 1.0}
    assert layer(x).shape == (2, 5, 4)
    assert kgates.LSTM(np.int64(3))(x).shape == (2, 3)


def test_split_gates_names_a_list():
    cell = kgates.LSTMCell(4)
    with pytest.raises(TypeError, match="argument `y` must be one tensor"):
        kgates.split_gates([np.zeros((2, 24))], cell)


@pytest.mark.parametrize("cell", [keras.layers.LSTMCell(3), kgates.GRUCell(3)])
def test_an_unbuilt_cell_has_no_weights_to_copy(cell):
    with pytest.raises(ValueError, match="is not built, so it has no weights to copy"):
        kgates.equivalent_cell(cell)
    assert kgates.equivalent_cell(cell, build=False).units == 3
