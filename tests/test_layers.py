"""GatedRNN, split_gates and the cells inside Keras's wrappers: masks,
Bidirectional, go_backwards, return_state, stacking, dropout."""

import keras
import numpy as np
import pytest
from helpers import ATOL, padded
from reference import gru_reference, lstm_reference, npy, randomize

import kgates


def _assert_gates(got, want):
    assert set(got) == set(want)
    for name in want:
        np.testing.assert_allclose(npy(got[name]), want[name], atol=ATOL, err_msg=name)


@pytest.mark.parametrize("cell_cls", [kgates.LSTMCell, kgates.GRUCell])
def test_masked_steps_carry_state_and_report_zero_gates(cell_cls, rng):
    x, mask = padded(rng, time=8, lengths=(None, 5, 1, 3))
    layer = kgates.GatedRNN(cell_cls(5), return_sequences=True, return_state=True)
    layer(x, mask=mask)
    weights = randomize(layer, rng)
    gates, *states = layer(x, mask=mask)
    reference = lstm_reference if cell_cls is kgates.LSTMCell else gru_reference
    want = reference(x, weights, 5, mask=mask)
    _assert_gates(gates, want)
    last = mask.sum(axis=1) - 1  # the final state is that of the last real step
    np.testing.assert_allclose(npy(states[0]), want["h"][np.arange(4), last], atol=ATOL)
    for name in gates:
        assert np.all(npy(gates[name])[~mask] == 0.0), name


def test_masking_layer_in_a_functional_model_and_plain_rnn(rng):
    x, mask = padded(rng, time=8, lengths=(None, 5, 1, 3))
    inputs = keras.Input((8, 3))
    masked = keras.layers.Masking(0.0)(inputs)
    cell = kgates.LSTMCell(4, return_gates=True)
    # with return_gates and masks, keras.layers.RNN needs zero_output_for_mask
    y = keras.layers.RNN(cell, return_sequences=True, zero_output_for_mask=True)(masked)
    model = keras.Model(inputs, y)
    weights = randomize(model, rng)
    got = kgates.split_gates(model(x), cell)
    _assert_gates(got, lstm_reference(x, weights, 4, mask=mask))


@pytest.mark.parametrize("return_sequences", [True, False])
def test_go_backwards_and_last_step(return_sequences, rng):
    x = rng.normal(size=(3, 6, 2)).astype("float32")
    layer = kgates.GatedRNN(
        kgates.LSTMCell(4, variant="CIFG"), return_sequences=return_sequences, go_backwards=True
    )
    layer(x)
    weights = randomize(layer, rng)
    want = lstm_reference(x[:, ::-1], weights, 4, peephole=True, coupled=True)
    if not return_sequences:
        want = {k: v[:, -1] for k, v in want.items()}
    _assert_gates(layer(x), want)


@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("kind", ["GatedRNN", "LSTM"])
def test_unrolled_and_masked(kind, go_backwards, rng):
    # Keras's unrolled loops zero padded outputs wrongly (TensorFlow, go_backwards)
    # or not at all (JAX); kgates carries them as Keras's layers do, then zeros them.
    if go_backwards and keras.backend.backend() == "torch":
        pytest.skip("Keras's torch loop fails unrolled with go_backwards and a mask")
    x, mask = padded(rng, time=6, lengths=(None, 4, 1, 5))
    order = slice(None, None, -1) if go_backwards else slice(None)  # processing order
    want, weights = None, None
    for return_sequences in (True, False):
        options = dict(return_sequences=return_sequences, go_backwards=go_backwards, unroll=True)
        if kind == "GatedRNN":
            layer = kgates.GatedRNN(kgates.LSTMCell(4), **options)
        else:
            layer = kgates.LSTM(4, return_gates=True, gate_path="step", **options)
        layer(x)
        if weights is None:
            weights = randomize(layer, rng)
            want = lstm_reference(x[:, order], weights, 4, mask=mask[:, order])
        layer.set_weights(list(weights.values()))
        got = layer(x, mask=mask)
        got = got if kind == "GatedRNN" else kgates.split_gates(got, layer)
        if return_sequences:
            _assert_gates(got, want)
        else:  # the last real step's
            last = 5 - np.argmax(mask[:, order][:, ::-1], axis=1)
            _assert_gates(got, {k: v[np.arange(4), last] for k, v in want.items()})


def test_bidirectional_with_mask(rng):
    x, mask = padded(rng, time=8, lengths=(None, 5, 1, 3))
    cell = kgates.GRUCell(3, return_gates=True)
    rnn = keras.layers.RNN(cell, return_sequences=True, zero_output_for_mask=True)
    bidi = keras.layers.Bidirectional(rnn)
    bidi(x, mask=mask)
    fw = randomize(bidi.forward_layer, rng)
    bw = randomize(bidi.backward_layer, rng)
    out = kgates.split_gates(bidi(x, mask=mask), bidi)
    _assert_gates(out["forward"], gru_reference(x, fw, 3, mask=mask))
    # Keras reverses the whole padded sequence for the backward layer, then
    # flips its outputs back into time order.
    back = gru_reference(x[:, ::-1], bw, 3, mask=mask[:, ::-1])
    _assert_gates(out["backward"], {k: v[:, ::-1] for k, v in back.items()})


def test_stacked_gated_layers_equal_stacked_keras_lstms(rng):
    x = rng.normal(size=(4, 7, 3)).astype("float32")
    inputs = keras.Input((7, 3))
    first = kgates.GatedRNN(kgates.LSTMCell(5), return_sequences=True)(inputs)
    second = kgates.GatedRNN(kgates.LSTMCell(4), return_sequences=True)(first["h"])
    ours = keras.Model(inputs, {"first": first, "second": second})
    ref = keras.Sequential(
        [
            keras.Input((7, 3)),
            keras.layers.LSTM(5, return_sequences=True),
            keras.layers.LSTM(4, return_sequences=True),
        ]
    )
    randomize(ref, rng)
    ours.set_weights(ref.get_weights())
    out = ours(x)
    np.testing.assert_allclose(npy(out["second"]["h"]), npy(ref(x)), atol=ATOL)
    w1 = dict(zip(["kernel", "recurrent_kernel", "bias"], ref.get_weights()[:3]))
    _assert_gates(out["first"], lstm_reference(x, w1, 5))


def test_stacked_cells_without_gates_equal_keras_stacked_cells(rng):
    x = rng.normal(size=(4, 7, 3)).astype("float32")
    ours = keras.layers.RNN([kgates.LSTMCell(5), kgates.GRUCell(4)])
    ref = keras.layers.RNN([keras.layers.LSTMCell(5), keras.layers.GRUCell(4)])
    ours(x)
    ref(x)
    randomize(ref, rng)
    ours.set_weights(ref.get_weights())
    np.testing.assert_allclose(npy(ours(x)), npy(ref(x)), atol=ATOL)


def test_gated_rnn_in_a_functional_model_trains(rng):
    x = rng.normal(size=(32, 10, 3)).astype("float32")
    y = x.sum(axis=(1, 2))[:, None]
    inputs = keras.Input((10, 3))
    gates = kgates.GatedRNN(kgates.LSTMCell(8))(inputs)
    model = keras.Model(inputs, keras.layers.Dense(1)(gates["h"]))
    model.compile("adam", "mse")
    history = model.fit(x, y, epochs=3, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    probe = keras.Model(inputs, gates)
    assert set(probe(x)) == {"h", "i", "f", "g", "o", "c"}


@pytest.mark.parametrize("cell_cls", [kgates.LSTMCell, kgates.GRUCell])
def test_dropout_only_in_training(cell_cls, rng):
    x = rng.normal(size=(8, 6, 3)).astype("float32")
    plain = keras.layers.RNN(cell_cls(4))
    dropped = keras.layers.RNN(cell_cls(4, dropout=0.5, recurrent_dropout=0.5, seed=1))
    plain(x)
    dropped(x)
    dropped.set_weights(plain.get_weights())
    np.testing.assert_allclose(npy(dropped(x, training=False)), npy(plain(x)), atol=ATOL)
    assert np.abs(npy(dropped(x, training=True)) - npy(plain(x))).max() > 1e-3
    inputs = keras.Input((6, 3))
    model = keras.Model(inputs, keras.layers.Dense(1)(dropped(inputs)))
    model.compile("adam", "mse")
    model.fit(x, np.ones((8, 1)), epochs=1, verbose=0)


def test_tf_keras_rnn_accepts_kgates_cells(rng):
    if keras.backend.backend() != "tensorflow":
        pytest.skip("tf.keras exists only with the TensorFlow backend")
    import tensorflow as tf

    x = rng.normal(size=(2, 5, 3)).astype("float32")
    y = tf.keras.layers.RNN(kgates.LSTMCell(4), return_sequences=True)(x)
    assert tuple(y.shape) == (2, 5, 4)


@pytest.mark.parametrize(
    ("ours", "theirs"), [(kgates.LSTM, keras.layers.LSTM), (kgates.GRU, keras.layers.GRU)]
)
def test_integer_inputs_as_keras(ours, theirs):
    # Keras's bidirectional test feeds int64 sequences: ops promote them.
    x = np.array([[[101, 202], [303, 404]]])
    ref = theirs(2, return_state=True)
    want = [npy(v) for v in ref(x)]
    layer = ours(2, return_state=True)
    layer(x)
    layer.set_weights(ref.get_weights())
    for got, value in zip(layer(x), want):
        np.testing.assert_allclose(npy(got), value, atol=ATOL)
    bidirectional = keras.layers.Bidirectional(ours(2, return_state=True), merge_mode="concat")
    assert bidirectional(x)[0].shape == (1, 4)
