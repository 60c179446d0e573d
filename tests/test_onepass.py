"""Gradient flow from one pass of an LSTM's or GRU's layer against the flow of the
cell unrolled step by step (itself held to finite differences in test_gradflow.py)."""

import keras
import numpy as np
import pytest
from helpers import encoder_decoder

import kgates
import kgates.inspect._gradflow as gradflow
from kgates.inspect._onepass import OnePass


def _masked(layer, steps=7, features=3, head=2):
    inputs = keras.Input((steps, features))
    out = layer(keras.layers.Masking(0.0)(inputs))
    return keras.Model(inputs, keras.layers.Dense(head)(out))


def _with_states(layer_type, steps=7, features=3):
    inputs = keras.Input((steps, features))
    layer = layer_type(4, return_sequences=True, return_state=True, go_backwards=True)
    sequence, *states = layer(keras.layers.Masking(0.0)(inputs))
    ends = keras.layers.Dense(2)(keras.layers.Concatenate()(states) if states[1:] else states[0])
    return keras.Model(inputs, [keras.layers.Dense(2)(sequence), ends])


CASES = {
    # Keras's default carries the output over padded steps; the targets there
    # are not zero, so their gradients reach the last real step before them
    "carried outputs": lambda: _masked(keras.layers.LSTM(4, return_sequences=True)),
    "zero outputs, backwards": lambda: _masked(
        keras.layers.LSTM(4, return_sequences=True, zero_output_for_mask=True, go_backwards=True)
    ),
    "last output, dropout": lambda: _masked(
        keras.layers.LSTM(4, dropout=0.3, recurrent_dropout=0.3)
    ),
    "a loss on the gates": lambda: _masked(
        kgates.LSTM(4, return_sequences=True, return_gates=True, go_backwards=True)
    ),
    "final states, no targets": lambda: _with_states(keras.layers.LSTM),
    "GRU, carried outputs": lambda: _masked(keras.layers.GRU(4, return_sequences=True)),
    "GRU, reset before, backwards": lambda: _masked(
        keras.layers.GRU(4, return_sequences=True, reset_after=False, go_backwards=True)
    ),
    "GRU, a loss on the gates": lambda: _masked(
        kgates.GRU(4, return_sequences=True, return_gates=True)
    ),
    "GRU, final state, no targets": lambda: _with_states(keras.layers.GRU),
}


def _compare(model, inputs, y, monkeypatch):
    """Every part's flow in one pass and unrolled; the one-pass flows."""
    flows = {}
    for fused in (True, False):
        monkeypatch.setattr(gradflow, "ONE_PASS", fused)
        flow = kgates.GradientFlow(model)
        flows[fused] = flow(inputs, y)
        assert all(isinstance(f, OnePass) == fused for f in flow._flows.values())
    assert set(flows[True]) == set(flows[False]) and flows[True]
    for part, want in flows[False].items():
        for state in want:
            assert np.any(want[state] > 0), (part, state)
            np.testing.assert_allclose(
                flows[True][part][state], want[state], rtol=2e-4, atol=1e-7, err_msg=part + state
            )
    return flows[True]


@pytest.mark.parametrize("case", sorted(CASES))
def test_one_pass_equals_the_unrolled_cell(case, monkeypatch, rng):
    keras.utils.set_random_seed(3)
    model = CASES[case]()
    layer = next(lay for lay in model.layers if isinstance(lay, keras.layers.RNN))
    for weight in layer.weights:  # large enough that the gates do not sit at 0.5
        weight.assign(rng.normal(scale=0.6, size=weight.shape))
    x = rng.normal(size=(5, 7, 3)).astype("float32")
    lengths = np.array([7, 3, 5, 1, 6])
    x[np.arange(7)[None] >= lengths[:, None]] = 0.0
    x[2, 2] = 0.0  # a gap inside a sequence too
    y = None
    if len(model.outputs) == 1:
        model.compile("sgd", "mse")
        y = rng.normal(size=(5, *model.outputs[0].shape[1:])).astype("float32")
    _compare(model, x, y, monkeypatch)


@pytest.mark.parametrize("layer_type", [keras.layers.LSTM, keras.layers.GRU])
def test_bidirectional_parts_in_one_pass(layer_type, monkeypatch, rng):
    # Bidirectional sets zero_output_for_mask on the layers it wraps
    model = _masked(keras.layers.Bidirectional(layer_type(4, return_sequences=True)))
    model.compile("sgd", "mse")
    x = rng.normal(size=(4, 7, 3)).astype("float32")
    x[np.arange(7)[None] >= np.array([7, 2, 5, 4])[:, None]] = 0.0
    y = rng.normal(size=(4, 7, 2)).astype("float32")
    assert len(_compare(model, x, y, monkeypatch)) == 2


def test_a_decoder_starts_from_the_encoders_states_in_one_pass(monkeypatch, rng):
    model = encoder_decoder(units=4, steps=(6, 5), head=2)
    model.compile("sgd", "mse")
    for layer in model.layers:
        for weight in layer.weights:
            weight.assign(rng.normal(scale=0.6, size=weight.shape))
    inputs = [rng.normal(size=(3, 6, 3)).astype("float32"), rng.normal(size=(3, 5, 2))]
    inputs[1] = inputs[1].astype("float32")
    _compare(model, inputs, rng.normal(size=(3, 5, 2)).astype("float32"), monkeypatch)


def test_a_stateful_layer_flows_from_its_state_in_one_pass(monkeypatch, rng):
    layer = keras.layers.LSTM(4, return_sequences=True, stateful=True)
    model = keras.Sequential([keras.Input((7, 3), batch_size=3), layer, keras.layers.Dense(1)])
    x = rng.normal(size=(3, 7, 3)).astype("float32")
    model.predict_on_batch(x)  # the layer now carries a state
    _compare(model, x, None, monkeypatch)


@pytest.mark.parametrize(
    "layer",
    [
        lambda: kgates.LSTM(4, return_sequences=True, variant="NOAF"),
        lambda: kgates.LSTM(4, return_sequences=True, activation="relu"),
        lambda: keras.layers.SimpleRNN(4, return_sequences=True),  # a GRU with pins
    ],
)
def test_only_keras_options_take_one_pass(layer, monkeypatch, rng):
    monkeypatch.setattr(gradflow, "ONE_PASS", True)
    model = _masked(layer())
    flow = kgates.GradientFlow(model)
    flow(rng.normal(size=(2, 7, 3)).astype("float32"))
    assert not isinstance(flow._flows[model.layers[2].name], OnePass)


@pytest.mark.parametrize("layer_type", [keras.layers.LSTM, keras.layers.GRU])
def test_one_pass_reads_the_weights_of_each_call(layer_type, monkeypatch, rng):
    # the dashboards keep one GradientFlow for the whole training
    monkeypatch.setattr(gradflow, "ONE_PASS", True)
    model = _masked(layer_type(4, return_sequences=True))
    x = rng.normal(size=(3, 7, 3)).astype("float32")
    flow = kgates.GradientFlow(model)
    flow(x)
    for weight in model.layers[2].weights:
        weight.assign(rng.normal(scale=0.6, size=weight.shape))
    again = flow(x)[model.layers[2].name]
    fresh = kgates.GradientFlow(model)(x)[model.layers[2].name]
    for state in fresh:
        np.testing.assert_allclose(again[state], fresh[state], rtol=1e-5, err_msg=state)
