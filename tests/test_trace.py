"""kgates.trace: gates of every recurrent layer, stock Keras layers included."""

import keras
import numpy as np
import pytest
from helpers import ATOL, encoder_decoder, padded, pairwise
from reference import gru_reference, lstm_reference, npy, randomize

import kgates
from kgates import Tracer


def _model(layer, time=9, features=3, masking=False):
    inputs = keras.Input((time, features))
    x = keras.layers.Masking(0.0)(inputs) if masking else inputs
    return keras.Model(inputs, keras.layers.Dense(1)(layer(x)))


def _kgates_gates(cell, weights, x, mask=None, go_backwards=False):
    """The same weights in a kgates cell, stepped: the path trace must agree with."""
    layer = kgates.GatedRNN(cell, return_sequences=True, go_backwards=go_backwards)
    layer(x, mask=mask)
    layer.set_weights(weights)
    out = {k: npy(v) for k, v in layer(x, mask=mask).items()}
    return {k: v[:, ::-1] for k, v in out.items()} if go_backwards else out


def _assert_equal(traced, want, mask=None):
    assert set(traced) == set(want)
    for name, value in want.items():
        got = np.ma.filled(traced[name], 0.0)
        if mask is not None:
            value = np.where(mask[..., None], value, 0.0)
        np.testing.assert_allclose(got, value, atol=ATOL, err_msg=name)


STOCK = {  # a stock layer (given go_backwards) and the kgates cell it equals
    "LSTM": (lambda back: keras.layers.LSTM(5, go_backwards=back), lambda: kgates.LSTMCell(5)),
    "GRU": (lambda back: keras.layers.GRU(5, go_backwards=back), lambda: kgates.GRUCell(5)),
    "GRU-v1": (
        lambda back: keras.layers.GRU(5, reset_after=False, go_backwards=back),
        lambda: kgates.GRUCell(5, reset_after=False),
    ),
    "RNN(LSTMCell)": (
        lambda back: keras.layers.RNN(keras.layers.LSTMCell(5), go_backwards=back),
        lambda: kgates.LSTMCell(5),
    ),
}


@pytest.mark.parametrize(("stock", "ours", "go_backwards", "masked"), pairwise(STOCK))
def test_stock_layers_equal_kgates_cells_with_the_same_weights(
    stock, ours, go_backwards, masked, rng
):
    x, mask = padded(rng)
    layer = stock(go_backwards)
    model = _model(layer, masking=masked)
    randomize(model, rng)
    traced = kgates.trace(model, x)[layer.name]
    want = _kgates_gates(ours(), layer.get_weights(), x, mask if masked else None, go_backwards)
    _assert_equal(traced, want, mask if masked else None)
    if masked:
        np.testing.assert_array_equal(
            np.ma.getmaskarray(traced["f" if "f" in traced else "z"])[..., 0], ~mask
        )
    else:
        assert not np.ma.getmaskarray(traced["h"]).any()


def test_stock_lstm_equals_numpy_float64_reference(rng):
    x, mask = padded(rng)
    layer = keras.layers.LSTM(6)
    model = _model(layer)
    randomize(model, rng)
    weights = dict(zip(["kernel", "recurrent_kernel", "bias"], layer.get_weights()))
    traced = kgates.trace(model, x, mask=mask)[layer.name]
    _assert_equal(traced, lstm_reference(x, weights, 6, mask=mask), mask)


@pytest.mark.parametrize("gate_path", ["recompute", "step"])
@pytest.mark.parametrize("family", ["lstm", "gru"])
def test_fused_layers_trace_on_their_gate_path(family, gate_path, rng):
    # The twin keeps a kgates layer's gate_path: on a CPU "auto" steps, so
    # this is where tracing recomputes from h here.
    x, mask = padded(rng)
    kind, reference = (
        (kgates.LSTM, lstm_reference) if family == "lstm" else (kgates.GRU, gru_reference)
    )
    layer = kind(6, gate_path=gate_path)
    model = _model(layer)
    weights = randomize(layer, rng)
    tracer = Tracer(model)
    assert tracer._gates[layer.name].rnn.gate_path == gate_path
    _assert_equal(tracer(x, mask=mask)[layer.name], reference(x, weights, 6, mask=mask), mask)


def test_twins_recompute_where_a_fused_kernel_runs():
    inputs = keras.Input((9, 3))
    stock, cifg = keras.layers.LSTM(4, return_sequences=True), kgates.LSTM(4, variant="CIFG")
    tracer = Tracer(keras.Model(inputs, cifg(stock(inputs))))
    x = np.zeros((2, 9, 3), "float32")
    # A trace is a forward pass: recomputed where a fused kernel runs (a GPU;
    # torch's CPU kernel too), stepped elsewhere; a variant always steps.
    fused = kgates.accelerator_available() or keras.backend.backend() == "torch"
    assert tracer._gates[stock.name].rnn.chosen_path(x) == ("recompute" if fused else "step")
    assert tracer._gates[cifg.name].rnn.chosen_path(x) == "step"


def test_simple_rnn_reports_its_h(rng):
    x = rng.normal(size=(3, 7, 2)).astype("float32")
    layer = keras.layers.SimpleRNN(4, return_sequences=True)
    inputs = keras.Input((7, 2))
    model = keras.Model(inputs, layer(inputs))
    randomize(model, rng)
    traced = kgates.trace(model, x)[layer.name]
    assert set(traced) == {"h"}
    np.testing.assert_allclose(traced["h"], npy(model(x)), atol=ATOL)
    kernel, recurrent, bias = layer.get_weights()
    # GRU with r = 1, z = 0 is the same RNN: an independent path to the same h.
    want = gru_reference(
        x,
        {"kernel": kernel, "recurrent_kernel": recurrent, "bias": bias},
        4,
        reset_after=False,
        pin={"z": 0.0, "r": 1.0},
    )
    np.testing.assert_allclose(traced["h"], want["h"], atol=ATOL)


@pytest.mark.parametrize("return_gates", [False, True])
@pytest.mark.parametrize("variant", ["NP", "CIFG", "FGR"])
def test_kgates_cells_with_or_without_return_gates(variant, return_gates, rng):
    x, mask = padded(rng)
    cell = kgates.LSTMCell(4, variant=variant, return_gates=return_gates)
    rnn = keras.layers.RNN(cell, return_sequences=True, zero_output_for_mask=True)
    inputs = keras.Input((9, 3))
    model = keras.Model(inputs, rnn(keras.layers.Masking(0.0)(inputs)))
    weights = randomize(model, rng)
    preset = kgates.VARIANTS[variant]
    want = lstm_reference(
        x,
        weights,
        4,
        mask=mask,
        peephole=preset.get("peephole", False),
        coupled=preset.get("coupled", False),
        gate_recurrence=preset.get("gate_recurrence", False),
    )
    _assert_equal(kgates.trace(model, x)[rnn.name], want, mask)


def test_bidirectional_and_stacked_layers(rng):
    x = rng.normal(size=(3, 8, 2)).astype("float32")
    inputs = keras.Input((8, 2))
    bidi = keras.layers.Bidirectional(keras.layers.LSTM(4, return_sequences=True), name="bidi")
    top = keras.layers.GRU(3, name="top")
    hidden = bidi(inputs)
    model = keras.Model(inputs, top(hidden))
    randomize(model, rng)
    traced = kgates.trace(model, x)
    assert set(traced) == {"bidi/forward", "bidi/backward", "top"}
    fw = bidi.forward_layer.get_weights()
    bw = bidi.backward_layer.get_weights()
    _assert_equal(traced["bidi/forward"], _kgates_gates(kgates.LSTMCell(4), fw, x))
    _assert_equal(
        traced["bidi/backward"], _kgates_gates(kgates.LSTMCell(4), bw, x, go_backwards=True)
    )
    # the top layer's input is the Bidirectional output: forward h, then backward h
    h = np.concatenate([traced[f"bidi/{d}"]["h"].filled() for d in ("forward", "backward")], -1)
    _assert_equal(traced["top"], _kgates_gates(kgates.GRUCell(3), top.get_weights(), h))


def test_compiled_tracer_equals_one_off_trace_and_follows_new_weights(rng):
    x, mask = padded(rng)
    layer = keras.layers.LSTM(5)
    model = _model(layer, masking=True)
    tracer = Tracer(model)
    for _ in range(2):  # the second time with new weights
        randomize(model, rng)
        compiled = tracer(x)[layer.name]
        once = kgates.trace(model, x)[layer.name]
        for name in once:
            np.testing.assert_allclose(
                np.ma.filled(compiled[name], 0), np.ma.filled(once[name], 0), atol=ATOL
            )


def test_layers_argument_selects(rng):
    inputs = keras.Input((5, 2))
    a = keras.layers.LSTM(3, return_sequences=True, name="a")
    b = keras.layers.GRU(3, name="b")
    model = keras.Model(inputs, b(a(inputs)))
    assert set(kgates.trace(model, np.ones((2, 5, 2)), layers="b")) == {"b"}
    with pytest.raises(ValueError, match=r"no recurrent layer named \['c'\].*\['a', 'b'\]"):
        kgates.trace(model, np.ones((2, 5, 2)), layers=["c"])


def test_model_without_recurrent_layers():
    model = keras.Sequential([keras.Input((5, 2)), keras.layers.Dense(3)])
    with pytest.raises(ValueError, match="no recurrent layer"):
        kgates.trace(model, np.ones((2, 5, 2)))
    with pytest.raises(TypeError, match="keras.Model"):
        kgates.trace(keras.layers.LSTM(3), np.ones((2, 5, 2)))
    # one inside a sub-model: the error says where it is
    inner = keras.Sequential([keras.Input((5, 2)), keras.layers.LSTM(3)], name="encoder")
    inputs = keras.Input((5, 2))
    outer = keras.Model(inputs, keras.layers.Dense(1)(inner(inputs)))
    with pytest.raises(ValueError, match=r"\['encoder'\] are models holding recurrent layers"):
        kgates.trace(outer, np.ones((2, 5, 2)))
    assert kgates.trace(outer.get_layer("encoder"), np.ones((2, 5, 2)))


def test_an_explicit_mask_is_honoured_without_a_static_time_axis(rng):
    x, mask = padded(rng)
    layer = keras.layers.LSTM(6, return_sequences=True)
    model = keras.Sequential([keras.Input((None, 3)), layer])
    randomize(model, rng)
    weights = dict(zip(["kernel", "recurrent_kernel", "bias"], layer.get_weights()))
    for traced in (kgates.trace(model, x, mask=mask), Tracer(model)(x, mask=mask)):
        _assert_equal(traced[layer.name], lstm_reference(x, weights, 6, mask=mask), mask)
        assert np.array_equal(np.ma.getmaskarray(traced[layer.name]["f"])[..., 0], ~mask)


@pytest.mark.parametrize("shape", [(4,), (4, 8), (3, 9), (4, 9, 1)])
def test_a_mask_of_the_wrong_shape_is_an_error_naming_it(shape, rng):
    x, _ = padded(rng)
    for time in (9, None):
        model = keras.Sequential([keras.Input((time, 3)), keras.layers.LSTM(4)])
        with pytest.raises(ValueError, match=r"argument `mask` must be a \(batch, time\)"):
            kgates.trace(model, x, mask=np.ones(shape, bool))
        with pytest.raises(ValueError, match="argument `mask`"):
            kgates.gradient_flow(model, x, mask=np.ones(shape, bool))


def test_a_list_input_is_an_array_for_a_one_input_model_or_an_error_naming_x(rng):
    x, _ = padded(rng)
    layer = keras.layers.LSTM(4, return_sequences=True)
    model = keras.Sequential([keras.Input((9, 3)), layer])
    want = kgates.trace(model, x)[layer.name]["f"]
    for given in (x.tolist(), [x]):  # nested lists, or the one input in a list
        np.testing.assert_allclose(kgates.trace(model, given)[layer.name]["f"], want, atol=1e-6)
    for bad in ([[1.0, 2.0], [3.0]], x[0], [x, x]):  # ragged, one sequence, two inputs
        with pytest.raises(ValueError, match="argument `x`"):
            kgates.trace(model, bad)
        with pytest.raises(ValueError, match="argument `x`"):
            kgates.gradient_flow(model, bad)


def test_targets_for_another_batch_are_an_error_naming_y(rng):
    x, _ = padded(rng)
    model = keras.Sequential([keras.Input((9, 3)), keras.layers.LSTM(4), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    kgates.gradient_flow(model, x, np.zeros((len(x), 1)))  # the right rows pass
    with pytest.raises(ValueError, match=rf"argument `y` .* \({len(x)}\), got {len(x) + 1}"):
        kgates.gradient_flow(model, x, np.zeros((len(x) + 1, 1)))


def test_a_model_loaded_from_a_keras_file_traces_as_the_original(rng, tmp_path):
    # Keras rebuilds a loaded model's mask ops under one name twice, so a new graph
    # through them is refused; the trace then passes the model's own mask itself
    x, mask = padded(rng)
    inputs = keras.Input((9, 3))
    h = keras.layers.LSTM(4, return_sequences=True, name="lstm")(keras.layers.Masking()(inputs))
    model = keras.Model(inputs, keras.layers.GRU(2, name="gru")(h))
    model.save(tmp_path / "m.keras")
    expected = kgates.trace(model, x)
    keras.backend.clear_session()  # as in a new process, which loads the file
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    got = kgates.trace(loaded, x)
    for layer in ("lstm", "gru"):
        for gate, values in expected[layer].items():
            np.testing.assert_allclose(got[layer][gate], values, atol=ATOL)
            assert (np.ma.getmaskarray(got[layer][gate])[..., 0] == ~mask).all()


@pytest.mark.parametrize("compiled", [False, True])
def test_a_stateful_layer_is_traced_from_its_state_and_keeps_it(compiled, rng):
    x = rng.normal(size=(2, 8, 3)).astype("float32")
    layer = keras.layers.LSTM(4, stateful=True, return_sequences=True, name="lstm")
    model = keras.Sequential([keras.Input((4, 3), batch_size=2), layer])
    weights = randomize(layer, rng)
    model(x[:, :4])  # the first chunk; the trace is of the second
    state = [npy(s) for s in layer.states]
    tracer = Tracer(model, compiled=compiled)
    want = lstm_reference(x, weights, 4)
    for _ in range(2):  # a second call starts from the same state
        got = tracer(x[:, 4:])["lstm"]
        for name in want:
            np.testing.assert_allclose(got[name], want[name][:, 4:], atol=ATOL, err_msg=name)
    for before, now in zip(state, layer.states):
        np.testing.assert_array_equal(npy(now), before)
    # a batch of another size cannot take that state: it starts from zeros
    alone = lstm_reference(x[:1, 4:], weights, 4)
    np.testing.assert_allclose(tracer(x[:1, 4:])["lstm"]["c"], alone["c"], atol=ATOL)


@pytest.mark.parametrize("compiled", [False, True])
def test_a_decoder_is_traced_from_the_states_its_encoder_passes(compiled, rng):
    model = encoder_decoder()
    source = rng.normal(size=(2, 5, 3)).astype("float32")
    target = rng.normal(size=(2, 3, 2)).astype("float32")
    encoder = lstm_reference(source, randomize(model.get_layer("encoder"), rng), 4)
    start = (encoder["h"][:, -1], encoder["c"][:, -1])
    want = lstm_reference(target, randomize(model.get_layer("decoder"), rng), 4, initial=start)
    got = Tracer(model, compiled=compiled)([source, target])
    for name in want:
        np.testing.assert_allclose(got["encoder"][name], encoder[name], atol=ATOL, err_msg=name)
        np.testing.assert_allclose(got["decoder"][name], want[name], atol=ATOL, err_msg=name)
