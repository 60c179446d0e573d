"""kgates.gradient_flow against finite differences of a NumPy float64 model."""

import keras
import numpy as np
import pytest
from helpers import encoder_decoder
from reference import randomize, sigmoid

import kgates
from kgates import reach


def _numpy_loss(kind, weights, x, y, perturb=None):
    """MSE of Dense(RNN(x)) in float64; `perturb` = (state, t, sample, unit, eps)."""
    kernel, recurrent, bias, dense_w, dense_b = (np.float64(w) for w in weights)
    batch, steps, _ = x.shape
    units = recurrent.shape[0]
    h, c = np.zeros((batch, units)), np.zeros((batch, units))

    def bump(state, name, t):
        if perturb and perturb[0] == name and perturb[1] == t:
            state = state.copy()
            state[perturb[2], perturb[3]] += perturb[4]
        return state

    for t in range(steps):
        z = x[:, t] @ kernel + h @ recurrent + bias
        if kind == "lstm":
            i, f, g, o = np.split(z, 4, axis=-1)
            c = bump(sigmoid(f) * c + sigmoid(i) * np.tanh(g), "c", t)
            h = sigmoid(o) * np.tanh(c)
        else:
            h = np.tanh(z)
        h = bump(h, "h", t)
    return np.mean((h @ dense_w + dense_b - y) ** 2)


def _finite_difference_norms(kind, weights, x, y, state, eps=1e-5):
    batch, steps, _ = x.shape
    units = weights[1].shape[0]
    norms = np.zeros((batch, steps))
    for t in range(steps):
        for b in range(batch):
            grad = [
                (
                    _numpy_loss(kind, weights, x, y, (state, t, b, u, eps))
                    - _numpy_loss(kind, weights, x, y, (state, t, b, u, -eps))
                )
                / (2 * eps)
                for u in range(units)
            ]
            norms[b, t] = np.linalg.norm(grad)
    return norms.mean(axis=0)


@pytest.mark.parametrize(
    ("kind", "layer"),
    [("lstm", lambda: keras.layers.LSTM(4)), ("simple", lambda: keras.layers.SimpleRNN(4))],
)
def test_gradient_norms_equal_finite_differences(kind, layer, rng):
    x = rng.normal(size=(3, 6, 2)).astype("float32")
    y = rng.normal(size=(3, 1)).astype("float32")
    rnn = layer()
    model = keras.Sequential([keras.Input((6, 2)), rnn, keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    measure = kgates.GradientFlow(model)
    measure(x, y)  # as the callback does: measured once, then again on new weights
    randomize(model, rng, scale=0.7)
    weights = model.get_weights()
    flow = measure(x, y)[rnn.name]
    for state in ("h", "c") if kind == "lstm" else ("h",):
        want = _finite_difference_norms(kind, weights, np.float64(x), np.float64(y), state)
        np.testing.assert_allclose(flow[state], want, rtol=1e-4, atol=1e-8, err_msg=state)


def test_simple_rnn_gradient_vanishes_faster_than_the_lstm_cell_state(rng):
    # One random task, two models; the LSTM's additive path c_t = f c_tm1 + ...
    # carries the gradient further back than the SimpleRNN's repeated tanh.
    steps = 50
    x = rng.normal(size=(32, steps, 4)).astype("float32")
    y = rng.normal(size=(32, 1)).astype("float32")
    flows = {}
    for name, layer in [("simple", keras.layers.SimpleRNN(32)), ("lstm", keras.layers.LSTM(32))]:
        keras.utils.set_random_seed(1)
        model = keras.Sequential([keras.Input((steps, 4)), layer, keras.layers.Dense(1)])
        model.compile("sgd", "mse")
        flows[name] = kgates.gradient_flow(model, x, y)[layer.name]
    simple = flows["simple"]["h"] / flows["simple"]["h"][-1]
    cell = flows["lstm"]["c"] / flows["lstm"]["c"][-1]
    advantage = [cell[-1 - d] / simple[-1 - d] for d in (10, 20, 30, 40)]
    assert all(a > 1 for a in advantage), advantage
    assert advantage == sorted(advantage), advantage  # the gap widens with distance
    assert reach(flows["lstm"]["c"]) > reach(flows["simple"]["h"])


def test_no_forget_gate_keeps_the_cell_gradient(rng):
    # NFG (f = 1): c_t = c_tm1 + i g passes dL/dc_t back undiminished, so it
    # does not vanish with distance (other paths only add to it here).
    x = rng.normal(size=(8, 30, 3)).astype("float32")
    layer = keras.layers.RNN(kgates.LSTMCell(8, variant="NFG"))
    model = keras.Sequential([keras.Input((30, 3)), layer, keras.layers.Dense(1)])
    flow = kgates.gradient_flow(model, x)[layer.name]["c"]
    assert flow.min() >= 0.5 * flow[-1]
    assert flow[0] > flow[-1]


def test_padded_steps_are_left_out(rng):
    x = rng.normal(size=(3, 8, 2)).astype("float32")
    x[:, 6:] = 0.0  # every sequence ends after 6 steps
    layer = keras.layers.GRU(4)
    masking = keras.layers.Masking(0.0)
    model = keras.Sequential([keras.Input((8, 2)), masking, layer, keras.layers.Dense(1)])
    padded = kgates.gradient_flow(model, x)[layer.name]["h"]
    short = keras.Sequential([keras.Input((6, 2)), keras.layers.GRU(4), keras.layers.Dense(1)])
    short.set_weights(model.get_weights())
    np.testing.assert_array_equal(padded[6:], 0.0)
    want = kgates.gradient_flow(short, x[:, :6])[short.layers[0].name]["h"]
    np.testing.assert_allclose(padded[:6], want, rtol=1e-5)


def _sequence_loss(weights, x, mask, zero_output, bump=None, initial=None):
    """Half the mean squared norm of a masked LSTM's output sequence, in float64, from
    `initial` (h, c) or zeros; padded steps output zeros or carry h; `bump` =
    (t, sample, unit, eps) adds to h_t."""
    kernel, recurrent, bias = (np.float64(w) for w in weights)
    batch, steps, _ = x.shape
    h, c = np.zeros((2, batch, recurrent.shape[0])) if initial is None else initial
    total = 0.0
    for t in range(steps):
        i, f, g, o = np.split(x[:, t] @ kernel + h @ recurrent + bias, 4, axis=-1)
        c_new = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        h_new = sigmoid(o) * np.tanh(c_new)
        if bump and bump[0] == t:
            h_new[bump[1], bump[2]] += bump[3]
        keep = mask[:, t, None]
        h, c = np.where(keep, h_new, h), np.where(keep, c_new, c)
        total += np.sum((h * keep if zero_output else h) ** 2)
    return 0.5 * total / batch


@pytest.mark.parametrize("zero_output", [False, True])
def test_masked_sequences_against_finite_differences(zero_output, rng):
    # A layer that carries h over padded steps (Keras's default) passes the
    # gradient of those outputs back to the last real h; one that zeros them does not.
    x = rng.normal(size=(3, 6, 2)).astype("float32")
    mask = np.arange(6)[None] < np.array([[6], [3], [4]])
    x = x * mask[..., None]
    layer = keras.layers.LSTM(3, return_sequences=True, zero_output_for_mask=zero_output)
    model = keras.Sequential([keras.Input((6, 2)), keras.layers.Masking(0.0), layer])
    weights = list(randomize(layer, rng, scale=0.7).values())
    flow = kgates.gradient_flow(model, x)[layer.name]["h"]
    eps, want = 1e-5, np.zeros((3, 6))
    for t, b in np.ndindex(6, 3):
        grad = [
            _sequence_loss(weights, x, mask, zero_output, (t, b, u, eps))
            - _sequence_loss(weights, x, mask, zero_output, (t, b, u, -eps))
            for u in range(3)
        ]
        want[b, t] = np.linalg.norm(grad) / (2 * eps)
    want = (want * mask).sum(axis=0) / mask.sum(axis=0)
    np.testing.assert_allclose(flow, want, rtol=1e-4, atol=1e-8)


def test_a_stateful_layer_flows_from_its_state_and_keeps_it(rng):
    x = rng.normal(size=(3, 8, 2)).astype("float32")
    layer = keras.layers.LSTM(3, stateful=True, return_sequences=True)
    model = keras.Sequential([keras.Input((4, 2), batch_size=3), layer])
    weights = list(randomize(layer, rng, scale=0.7).values())
    model(x[:, :4])
    state = [np.float64(keras.ops.convert_to_numpy(s)) for s in layer.states]
    flow = kgates.gradient_flow(model, x[:, 4:])[layer.name]["h"]
    for before, now in zip(state, layer.states):
        np.testing.assert_array_equal(np.float64(keras.ops.convert_to_numpy(now)), before)
    eps, want, part, real = 1e-5, np.zeros((3, 4)), x[:, 4:], np.ones((3, 4), bool)
    for t, b in np.ndindex(4, 3):
        grad = [
            _sequence_loss(weights, part, real, False, (t, b, u, eps), state)
            - _sequence_loss(weights, part, real, False, (t, b, u, -eps), state)
            for u in range(3)
        ]
        want[b, t] = np.linalg.norm(grad) / (2 * eps)
    np.testing.assert_allclose(flow, want.mean(axis=0), rtol=1e-4, atol=1e-8)


def test_reach():
    assert reach(np.array([0.001, 0.02, 0.5, 1.0])) == 3
    # an unbroken run back from the last step: the rise past the gap does not count
    assert reach(np.array([0.5, 0.001, 0.5, 1.0])) == 2
    assert reach(np.array([0.5, 0.2, 1.0])) == 3
    assert reach(np.array([1.0, 0.5, 0.001])) == 3  # grows going back: alive throughout
    assert reach(np.array([1.0, 0.5, 0.0])) == 0  # no gradient at the last step
    assert reach(np.zeros(4)) == 0


def _packed_loss(weights, x, mask, sequences, bump=None):
    """Half the mean squared norm of a masked kgates.LSTM's packed output [h i f g o c]
    in float64: every step's (zeros at padded steps) or the last real step's;
    `bump` = (state, t, sample, unit, eps) adds to h_t or c_t."""
    kernel, recurrent, bias = (np.float64(w) for w in weights)
    batch, steps, _ = x.shape
    h, c = np.zeros((2, batch, recurrent.shape[0]))
    last, total = 0.0, 0.0
    for t in range(steps):
        i, f, g, o = np.split(x[:, t] @ kernel + h @ recurrent + bias, 4, axis=-1)
        i, f, g, o = sigmoid(i), sigmoid(f), np.tanh(g), sigmoid(o)
        c_new = f * c + i * g
        if bump and bump[:2] == ("c", t):
            c_new[bump[2], bump[3]] += bump[4]
        h_new = o * np.tanh(c_new)
        if bump and bump[:2] == ("h", t):
            h_new[bump[2], bump[3]] += bump[4]
        keep = mask[:, t, None]
        h, c = np.where(keep, h_new, h), np.where(keep, c_new, c)
        out = np.concatenate([h_new, i, f, g, o, c_new], axis=-1)
        last = np.where(keep, out, last)
        total += np.sum((out * keep) ** 2)
    return 0.5 * (total if sequences else np.sum(last**2)) / batch


@pytest.mark.parametrize("sequences", [True, False])
def test_a_loss_on_gate_outputs_reaches_h_and_c(sequences, rng):
    # The output of a return_gates layer packs h with the gates; a loss on the gates
    # reaches h_t and c_t through the next step's gates and c_t's own output.
    x = rng.normal(size=(2, 5, 2)).astype("float32")
    mask = np.arange(5)[None] < np.array([[5], [3]])
    x = x * mask[..., None]
    layer = kgates.LSTM(3, return_sequences=sequences, return_gates=True)
    model = keras.Sequential([keras.Input((5, 2)), keras.layers.Masking(0.0), layer])
    weights = list(randomize(layer, rng, scale=0.7).values())
    flow = kgates.gradient_flow(model, x)[layer.name]
    eps = 1e-5
    for state in ("h", "c"):
        want = np.zeros((2, 5))
        for t, b in np.ndindex(5, 2):
            grad = [
                _packed_loss(weights, np.float64(x), mask, sequences, (state, t, b, u, eps))
                - _packed_loss(weights, np.float64(x), mask, sequences, (state, t, b, u, -eps))
                for u in range(3)
            ]
            want[b, t] = np.linalg.norm(grad) / (2 * eps)
        want = (want * mask).sum(axis=0) / mask.sum(axis=0)
        np.testing.assert_allclose(flow[state], want, rtol=1e-4, atol=1e-8, err_msg=state)


def _seq2seq_loss(encoder, decoder, head, source, target, y, bump=None):
    """MSE of Dense(decoder(target) from the encoder's final states) in float64; `bump`
    = (layer, state, t, sample, unit, eps) adds to that layer's h_t or c_t."""
    h = c = np.zeros((source.shape[0], encoder[1].shape[0]))
    outputs = []
    for layer, x, weights in (("encoder", source, encoder), ("decoder", target, decoder)):
        kernel, recurrent, bias = (np.float64(w) for w in weights)
        for t in range(x.shape[1]):
            i, f, g, o = np.split(x[:, t] @ kernel + h @ recurrent + bias, 4, axis=-1)
            c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
            if bump and bump[:3] == (layer, "c", t):
                c = c.copy()
                c[bump[3], bump[4]] += bump[5]
            h = sigmoid(o) * np.tanh(c)
            if bump and bump[:3] == (layer, "h", t):
                h = h.copy()
                h[bump[3], bump[4]] += bump[5]
            if layer == "decoder":
                outputs.append(h @ np.float64(head[0]) + np.float64(head[1]))
    return np.mean((np.stack(outputs, axis=1) - y) ** 2)


def test_an_encoder_gets_the_gradient_its_final_states_pass_on(rng):
    # Keras's seq2seq: the encoder's sequence is unused, its returned states start the
    # decoder. The loss reaches the encoder only through them.
    model = encoder_decoder(units=3, steps=(4, 3), head=2)
    model.compile("sgd", "mse")
    source = rng.normal(size=(2, 4, 3))
    target = rng.normal(size=(2, 3, 2))
    y = rng.normal(size=(2, 3, 2))
    weights = [
        list(randomize(model.get_layer(n), rng, scale=0.7).values())
        for n in ("encoder", "decoder", "head")
    ]
    inputs = [source.astype("float32"), target.astype("float32")]
    flow = kgates.gradient_flow(model, inputs, y.astype("float32"))
    eps = 1e-5
    for layer, steps in (("encoder", 4), ("decoder", 3)):
        for state in ("h", "c"):
            want = np.zeros((2, steps))
            for t, b in np.ndindex(steps, 2):
                grad = [
                    _seq2seq_loss(*weights, source, target, y, (layer, state, t, b, u, eps))
                    - _seq2seq_loss(*weights, source, target, y, (layer, state, t, b, u, -eps))
                    for u in range(3)
                ]
                want[b, t] = np.linalg.norm(grad) / (2 * eps)
            np.testing.assert_allclose(
                flow[layer][state], want.mean(axis=0), rtol=1e-4, atol=1e-8, err_msg=layer + state
            )


def test_a_gated_rnns_dict_counts_as_the_packed_output(rng):
    # GatedRNN returns the packed output split by name: the same loss, the same flow.
    x = rng.normal(size=(3, 5, 2)).astype("float32")
    packed = kgates.LSTM(3, return_sequences=True, return_gates=True)
    split = kgates.GatedRNN(kgates.LSTMCell(3), return_sequences=True)
    flows = []
    for layer in (packed, split):
        model = keras.Sequential([keras.Input((5, 2)), layer])
        layer.set_weights(packed.get_weights())
        flows.append(kgates.gradient_flow(model, x)[layer.name])
    for state in ("h", "c"):
        np.testing.assert_allclose(flows[1][state], flows[0][state], rtol=1e-5, err_msg=state)
