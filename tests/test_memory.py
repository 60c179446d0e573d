"""`kgates.memory`: what the memory holds and from when, against a hand-worked
example and a float64 reference that carries each step's write forward through
the later gates (an O(T^2) table, unlike kgates's running products)."""

import keras
import numpy as np
import pytest
from helpers import ATOL, encoder_decoder, padded
from reference import gru_reference, lstm_reference, randomize

import kgates
from kgates import Memory


def reference_table(keep, write, valid):
    """[b, t, s, u]: what step s wrote that step t holds, carried forward step by step
    (padded steps write nothing and keep everything)."""
    batch, steps, units = keep.shape
    table = np.zeros((batch, steps, steps, units))
    for s in range(steps):
        carried = np.where(valid[:, s, None], write[:, s], 0.0)
        for t in range(s, steps):
            if t > s:
                carried = carried * np.where(valid[:, t, None], keep[:, t], 1.0)
            table[:, t, s] = carried
    return table


def reference_span(table, valid):
    """Mean age in real steps of what each state holds, weighted by |term|."""
    steps = table.shape[1]
    real_before = np.cumsum(valid, axis=1)  # real steps up to and including each step
    age = real_before[:, :, None] - real_before[:, None, :]  # [b, t, s]: real steps after s
    weights = np.abs(table)
    total = weights.sum(axis=2)
    aged = (weights * age[..., None]).sum(axis=2)
    assert age.shape[1] == steps
    return np.divide(aged, total, out=np.zeros_like(aged), where=total > 0)


def test_a_hand_worked_example_of_three_steps_and_two_units():
    keep = np.array([[[0.5, 1.0], [0.5, 0.0], [1.0, 0.5]]])  # exact 0 and 1 among them
    write = np.array([[[1.0, 2.0], [2.0, -1.0], [4.0, 1.0]]])
    m = Memory(keep, write)
    # unit 0: c = 1, 2.5, 6.5; unit 1: c = 2, -1, 0.5
    expected = [[[0.5, 0.0], [2.0, -0.5], [4.0, 1.0]]]
    np.testing.assert_allclose(m.contributions(t=2), expected, rtol=1e-12)
    np.testing.assert_allclose(m.contributions(t=-1).sum(axis=1), [[6.5, 0.5]], rtol=1e-12)
    np.testing.assert_allclose(m.contributions(t=0), [[[1.0, 2.0], [0, 0], [0, 0]]])
    # spans at t = 2: ages 2, 1, 0 weighted by |0.5|, |2|, |4| and by 0, |-0.5|, |1|
    np.testing.assert_allclose(m.span[0, 2], [3 / 6.5, 0.5 / 1.5], rtol=1e-12)
    np.testing.assert_allclose(m.span[0, 0], [0.0, 0.0])
    # attention at t = 2: |terms| per step summed over units: 0.5, 2.5, 5 of 8
    np.testing.assert_allclose(m.attention(t=2), [[0.0625, 0.3125, 0.625]], rtol=1e-12)
    with_initial = Memory(keep, write, initial_state=[[2.0, 3.0]])
    np.testing.assert_allclose(with_initial.initial(t=2), [[0.5, 0.0]])  # 2 * .5 * .5 * 1
    np.testing.assert_allclose(with_initial.initial(t=0), [[1.0, 3.0]])


def _model(layer, time=9, features=3):
    inputs = keras.Input((time, features))
    return keras.Model(inputs, layer(keras.layers.Masking()(inputs)))


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "GRU reset_after=False", "NP peephole"])
def test_memory_of_a_stock_layer_equals_the_float64_reference(rng, kind):
    x, mask = padded(rng)
    x[0, 2:4], mask[0, 2:4] = 0.0, False  # a gap inside a sequence: no age passes there
    units = 4
    if kind == "LSTM":
        layer = keras.layers.LSTM(units, return_sequences=True)
    elif kind == "NP peephole":
        layer = kgates.LSTM(units, peephole=True, return_sequences=True)
    else:
        layer = keras.layers.GRU(units, reset_after="False" not in kind, return_sequences=True)
    model = _model(layer)
    weights = randomize(layer, rng)
    m = kgates.memory(model, x)[layer.name]
    if "LSTM" in kind or "NP" in kind:
        ref = lstm_reference(x, weights, units, peephole="peephole" in kind, mask=mask)
        keep, write, state = ref["f"], ref["i"] * ref["g"], ref["c"]
    else:
        ref = gru_reference(x, weights, units, reset_after="False" not in kind, mask=mask)
        keep, write, state = ref["z"], (1 - ref["z"]) * ref["g"], ref["h"]
    table = reference_table(keep, write, mask)
    for t in range(x.shape[1]):
        np.testing.assert_allclose(m.contributions(t), table[:, t], atol=ATOL)
        # and they sum to the state the layer carried at every real step
        real = mask[:, t]
        np.testing.assert_allclose(
            m.contributions(t).sum(axis=1)[real] + m.initial(t)[real], state[real, t], atol=ATOL
        )
    span = reference_span(table, mask)
    np.testing.assert_allclose(m.span[mask], span[mask], atol=1e-4)
    assert m.span.mask[~mask].all()
    absolute = np.abs(table).sum(axis=3)  # [b, t, s]
    shares = absolute / np.maximum(absolute.sum(axis=2, keepdims=True), 1e-300)
    np.testing.assert_allclose(m.attention_map(sequence=1), shares[1], atol=1e-5)


def test_a_pinned_forget_gate_keeps_every_write_whole(rng):
    layer = kgates.LSTM(3, variant="NFG", return_sequences=True)  # f pinned to 1
    model = _model(layer)
    randomize(layer, rng)
    x = rng.normal(size=(2, 9, 3)).astype("float32")
    m = kgates.memory(model, x)[layer.name]
    gates = kgates.trace(model, x)[layer.name]
    writes = np.asarray(gates["i"] * gates["g"], "float64")
    for t in (0, 4, 8):
        np.testing.assert_allclose(m.contributions(t)[:, : t + 1], writes[:, : t + 1], atol=ATOL)
        assert not m.contributions(t)[:, t + 1 :].any()


def test_a_backward_layer_remembers_the_steps_after_it(rng):
    inputs = keras.Input((7, 2))
    layer = keras.layers.Bidirectional(keras.layers.LSTM(3, return_sequences=True), name="bi")
    model = keras.Model(inputs, layer(inputs))
    x = rng.normal(size=(2, 7, 2)).astype("float32")
    memories = kgates.memory(model, x)
    gates = kgates.trace(model, x)
    assert set(memories) == {"bi/forward", "bi/backward"}
    backward = memories["bi/backward"]
    for t in (0, 3, 6):
        held = backward.contributions(t)
        assert not held[:, :t].any() and held[:, t:].any()
        np.testing.assert_allclose(held.sum(axis=1), gates["bi/backward"]["c"][:, t], atol=ATOL)
    assert backward.span[:, -1].max() == 0 and memories["bi/forward"].span[:, 0].max() == 0


def test_a_simple_rnn_has_no_memory_to_take_apart(rng):
    inputs = keras.Input((5, 2))
    simple = keras.layers.SimpleRNN(3, return_sequences=True, name="simple")(inputs)
    model = keras.Model(inputs, simple)
    x = rng.normal(size=(2, 5, 2)).astype("float32")
    with pytest.raises(ValueError, match="simple is a SimpleRNN: its state is not a sum"):
        kgates.memory(model, x)
    both = keras.Model(inputs, keras.layers.LSTM(3, name="lstm")(simple))
    with pytest.warns(UserWarning, match="left out"):
        assert set(kgates.memory(both, x)) == {"lstm"}


def test_a_step_out_of_range_is_named(rng):
    m = Memory(np.ones((1, 3, 2)), np.ones((1, 3, 2)))
    with pytest.raises(ValueError, match="`t` must be a step from -3 to 2, got 3"):
        m.contributions(3)


def test_a_stateful_layer_remembers_the_state_it_carries(rng):
    x = rng.normal(size=(2, 8, 3)).astype("float32")
    layer = keras.layers.LSTM(4, stateful=True, return_sequences=True, name="lstm")
    model = keras.Sequential([keras.Input((4, 3), batch_size=2), layer])
    weights = randomize(layer, rng)
    model(x[:, :4])
    memory = kgates.memory(model, x[:, 4:])["lstm"]
    c = lstm_reference(x, weights, 4)["c"]
    np.testing.assert_allclose(memory.initial_state, c[:, 3], atol=ATOL)
    for t in range(4):  # what the steps wrote and what is left of c_3 make c_t
        held = memory.contributions(t).sum(axis=1) + memory.initial(t)
        np.testing.assert_allclose(held, c[:, 4 + t], atol=ATOL)


def test_a_decoder_remembers_the_state_its_encoder_passes(rng):
    model = encoder_decoder()
    source = rng.normal(size=(2, 5, 3)).astype("float32")
    target = rng.normal(size=(2, 3, 2)).astype("float32")
    encoder = lstm_reference(source, randomize(model.get_layer("encoder"), rng), 4)
    start = (encoder["h"][:, -1], encoder["c"][:, -1])
    c = lstm_reference(target, randomize(model.get_layer("decoder"), rng), 4, initial=start)["c"]
    memory = kgates.memory(model, [source, target])["decoder"]
    np.testing.assert_allclose(memory.initial_state, start[1], atol=ATOL)
    for t in range(3):  # what the decoder wrote and what is left of the encoder's c
        held = memory.contributions(t).sum(axis=1) + memory.initial(t)
        np.testing.assert_allclose(held, c[:, t], atol=ATOL)


@pytest.mark.parametrize("backwards", [False, True], ids=["forwards", "backwards"])
def test_attention_map_is_every_steps_attention(backwards, rng):
    """The one-pass map against `attention(t)` row by row (each from running products
    back from t): padded steps, an initial state, a gate exactly 0, either direction."""
    keep = rng.random((3, 11, 4))
    keep[1, 4, 2] = 0.0
    write = rng.normal(size=(3, 11, 4))
    valid = np.ones((3, 11), bool)
    valid[1, 8:] = False
    valid[2, :3] = False
    m = Memory(keep, write, valid=valid, backwards=backwards, initial_state=rng.normal(size=(3, 4)))
    for sequence in range(3):
        want = np.stack([m.attention(t)[sequence] for t in range(11)])
        np.testing.assert_allclose(m.attention_map(sequence), want, rtol=1e-12, atol=1e-15)
