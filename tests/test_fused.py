"""kgates.LSTM / kgates.GRU: Keras's fused layers plus exact gates."""

import keras
import numpy as np
import pytest
from helpers import ATOL, padded, pairwise
from reference import gru_reference, lstm_reference, npy, randomize

import kgates

LAYERS = [
    (kgates.LSTM, keras.layers.LSTM, {}),
    (kgates.GRU, keras.layers.GRU, {}),
    (kgates.GRU, keras.layers.GRU, {"reset_after": False}),
]
IDS = ["LSTM", "GRU", "GRU-v1"]


@pytest.mark.parametrize(("ours", "theirs", "kwargs"), LAYERS, ids=IDS)
def test_without_gates_it_is_the_keras_layer(ours, theirs, kwargs, rng):
    x, mask = padded(rng)
    ref = theirs(5, return_sequences=True, return_state=True, **kwargs)
    layer = ours(5, return_sequences=True, return_state=True, **kwargs)
    ref(x)
    layer(x)
    assert [w.path.split("/")[-1] for w in layer.weights] == [
        w.path.split("/")[-1] for w in ref.weights
    ]
    randomize(ref, rng)
    layer.set_weights(ref.get_weights())
    for a, b in zip(layer(x, mask=mask), ref(x, mask=mask)):
        np.testing.assert_allclose(npy(a), npy(b), atol=ATOL)


def _sgd_step(model, layer, x, targets) -> list:
    """The layer's weights after one SGD step of rate 1 (each moves by minus its gradient)."""
    model.compile(keras.optimizers.SGD(1.0), ["mse"] * len(targets))
    model.train_on_batch(x, targets)
    return layer.get_weights()


def _assert_same_step(before, want, got):
    for name, start, w, g in zip(("kernel", "recurrent", "bias"), before, want, got):
        assert np.abs(w - start).max() > 1e-3, name  # the step moved it
        np.testing.assert_allclose(g, w, atol=ATOL, err_msg=name)


@pytest.mark.parametrize(
    ("ours", "theirs", "kwargs", "go_backwards", "return_sequences"),
    pairwise(dict(zip(IDS, LAYERS))),
)
def test_unmasked_it_runs_and_trains_as_the_keras_layer(
    ours, theirs, kwargs, go_backwards, return_sequences, rng
):
    # Unmasked, kgates runs its own loop on torch without CUDA
    # (kgates/cells/_torch.py) and Keras's kernel elsewhere: the outputs, the
    # states and one SGD step with input dropout are those of Keras's layer.
    x = rng.normal(size=(4, 9, 3)).astype("float32")
    options = dict(
        return_sequences=return_sequences, return_state=True, go_backwards=go_backwards, **kwargs
    )
    inferred, trained, weights, targets = [], [], None, None
    for cls in (theirs, ours):
        inputs = keras.Input((9, 3))
        layer = cls(5, dropout=0.3, seed=7, **options)
        model = keras.Model(inputs, layer(inputs))
        if weights is None:
            weights = list(randomize(layer, rng).values())
            targets = [rng.normal(size=(4, *o.shape[1:])).astype("float32") for o in model.outputs]
        layer.set_weights(weights)
        inferred.append([npy(v) for v in model(x)])
        trained.append(_sgd_step(model, layer, x, targets))
    for want, got in zip(*inferred):
        np.testing.assert_allclose(got, want, atol=ATOL)
    _assert_same_step(weights, *trained)


# Every pair of the three options in each of its four combinations (a pairwise
# covering), plus the common masked, forward, full-sequence case.
OPTIONS = [
    (False, False, True),
    (False, True, False),
    (True, False, False),
    (True, True, True),
    (True, False, True),
]


@pytest.mark.parametrize(("masked", "go_backwards", "return_sequences"), OPTIONS)
@pytest.mark.parametrize(("ours", "theirs", "kwargs"), LAYERS, ids=IDS)
def test_recomputed_gates_equal_the_stepped_cell(
    ours, theirs, kwargs, masked, go_backwards, return_sequences, rng
):
    x, mask = padded(rng)
    mask = mask if masked else None
    options = dict(return_sequences=return_sequences, go_backwards=go_backwards, **kwargs)
    out = {}
    weights = None
    for path in ("recompute", "step"):
        layer = ours(5, return_gates=True, gate_path=path, **options)
        layer(x)
        if weights is None:
            weights = list(randomize(layer, rng).values())
        layer.set_weights(weights)
        out[path] = npy(layer(x, mask=mask))
    np.testing.assert_allclose(out["recompute"], out["step"], atol=ATOL)
    # and the h part is Keras's own layer's output (which repeats the last h
    # at padded steps, where the packed output is zeros)
    ref = theirs(5, **options)
    ref(x)
    ref.set_weights(weights)
    h, want = out["recompute"][..., :5], npy(ref(x, mask=mask))
    if masked and return_sequences:
        keep = mask[:, ::-1] if go_backwards else mask
        h, want = h[keep], want[keep]
    np.testing.assert_allclose(h, want, atol=ATOL)


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize(("ours", "theirs", "kwargs"), LAYERS, ids=IDS)
def test_gradients_through_recomputed_gates_equal_the_stepped_cell(
    ours, theirs, kwargs, masked, rng
):
    # A loss on every gate (a saturation penalty, say) trains the same weights
    # whichever path gave the gates.
    x, _ = padded(rng)
    target = None
    trained, weights = {}, None
    for path in ("recompute", "step"):
        inputs = keras.Input((9, 3))
        y = keras.layers.Masking(0.0)(inputs) if masked else inputs
        layer = ours(5, return_sequences=True, return_gates=True, gate_path=path, **kwargs)
        model = keras.Model(inputs, layer(y))
        if weights is None:
            weights = list(randomize(layer, rng).values())
            target = rng.normal(size=model.output.shape[1:]).astype("float32")[None]
        layer.set_weights(weights)
        trained[path] = _sgd_step(model, layer, x, [np.repeat(target, len(x), axis=0)])
    _assert_same_step(weights, *trained.values())


@pytest.mark.parametrize("recurrent_dropout", [0.0, 0.3])
@pytest.mark.parametrize(("ours", "theirs", "kwargs"), LAYERS, ids=IDS)
def test_stepped_layers_draw_the_dropout_masks_of_the_cell(
    ours, theirs, kwargs, recurrent_dropout, rng
):
    # With the same seed, the stepped kgates layer (with and without gates)
    # draws the dropout masks of keras.layers.RNN around the same cell, and
    # those of Keras's layer (one mask per gate with recurrent dropout).
    x, mask = padded(rng)
    options = dict(dropout=0.4, recurrent_dropout=recurrent_dropout, seed=7, **kwargs)
    cell_cls = type(ours(5).cell)
    refs = [
        keras.layers.RNN(cell_cls(5, **options), return_sequences=True),
        theirs(5, return_sequences=True, **options),
    ]
    layers = [
        ours(5, return_sequences=True, use_cudnn=False, **options),
        ours(5, return_sequences=True, return_gates=True, gate_path="step", **options),
    ]
    for layer in refs + layers:
        layer(x)
    weights = list(randomize(refs[0], rng).values())
    want = None
    for layer in refs + layers:
        layer.set_weights(weights)
        got = npy(layer(x, mask=mask, training=True))[..., :5][mask]
        if want is None:
            want = got
            assert np.mean(got != npy(layer(x, mask=mask))[mask]) > 0.5  # dropout is on
        else:
            np.testing.assert_allclose(got, want, atol=ATOL, err_msg=layer.name)


def test_gates_against_the_float64_reference(rng):
    x, mask = padded(rng)
    layer = kgates.LSTM(6, return_sequences=True, return_gates=True, gate_path="recompute")
    layer(x)
    weights = randomize(layer, rng)
    got = kgates.split_gates(layer(x, mask=mask), layer)
    want = lstm_reference(x, weights, 6, mask=mask)
    for name in want:
        np.testing.assert_allclose(npy(got[name]), want[name], atol=ATOL, err_msg=name)


def test_options_the_fused_kernel_cannot_do_step_the_kgates_cell(rng):
    x, _ = padded(rng)
    layer = kgates.LSTM(4, return_sequences=True, return_gates=True, variant="NFG")
    assert layer.use_cudnn is False
    layer(x)
    weights = randomize(layer, rng)
    want = lstm_reference(x, weights, 4, peephole=True, pin={"f": 1.0})
    got = kgates.split_gates(layer(x), layer)
    for name in want:
        np.testing.assert_allclose(npy(got[name]), want[name], atol=ATOL, err_msg=name)
    with pytest.raises(ValueError, match="gate_path='recompute'"):
        kgates.LSTM(4, variant="CIFG", gate_path="recompute")
    with pytest.raises(ValueError, match="use_cudnn=True"):
        kgates.GRU(4, pin={"r": 1.0}, use_cudnn=True)
    with pytest.raises(ValueError, match="`gate_path`"):
        kgates.LSTM(4, gate_path="fast")


@pytest.mark.parametrize(
    "layer",
    [
        lambda: kgates.LSTM(4, return_sequences=True, return_gates=True),
        lambda: kgates.LSTM(4, return_sequences=True, variant="CIFG"),
        lambda: kgates.GRU(4, return_sequences=True, return_gates=True, reset_after=False),
    ],
)
def test_keras_file_round_trip(layer, tmp_path, rng):
    x, _ = padded(rng)
    inputs = keras.Input((9, 3))
    model = keras.Model(inputs, layer()(inputs))
    randomize(model, rng)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    np.testing.assert_array_equal(npy(loaded(x)), npy(model(x)))


def test_trains_and_traces(rng):
    x, _ = padded(rng)
    model = keras.Sequential([keras.Input((9, 3)), kgates.LSTM(5), keras.layers.Dense(1)])
    model.compile("adam", "mse")
    model.fit(x, np.ones((4, 1)), epochs=1, verbose=0)
    assert set(kgates.trace(model, x)[model.layers[0].name]) == set("hifgoc")


def test_layers_hand_their_options_to_the_path_chooser():
    x = np.zeros((2, 5, 3), "float32")
    on_torch_cpu = keras.backend.backend() == "torch" and not kgates.accelerator_available()
    assert kgates.LSTM(4, return_gates=True, variant="NFG").chosen_path(x) == "step"
    assert kgates.GRU(4, return_gates=True, gate_path="step").chosen_path(x) == "step"
    assert kgates.LSTM(4, return_gates=True, gate_path="recompute").chosen_path(x) == "recompute"
    assert kgates.LSTM(4, use_cudnn=False).chosen_path(x) == "step"
    assert kgates.GRU(4).chosen_path(x) == ("torch loop" if on_torch_cpu else "keras")
    assert kgates.GRU(4, reset_after=False).chosen_path(x) == "keras"  # no torch loop for it
    assert kgates.LSTM(4, recurrent_dropout=0.1).chosen_path(x) == "keras"
    assert kgates.LSTM(4).chosen_path(x, mask=np.ones((2, 5), bool)) == "keras"


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="XLA: TensorFlow's jit_compile")
def test_xla_compiles_where_keras_layers_do(rng):
    for ours, theirs in [
        (kgates.LSTM(4), keras.layers.LSTM(4)),
        (kgates.GRU(4), keras.layers.GRU(4)),
    ]:
        assert ours.supports_jit == theirs.supports_jit
    x, y = rng.normal(size=(8, 5, 3)).astype("float32"), rng.normal(size=(8, 1))
    model = keras.Sequential([keras.Input((5, 3)), kgates.LSTM(4), keras.layers.Dense(1)])
    model.compile("sgd", "mse", jit_compile=True)
    model.fit(x, y, epochs=1, verbose=0)
    assert model.jit_compile is kgates.LSTM(4).supports_jit


REFERENCES = {"LSTM": (kgates.LSTM, lstm_reference, 2), "GRU": (kgates.GRU, gru_reference, 1)}


@pytest.mark.parametrize("path", ["recompute", "step"])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("family", REFERENCES)
def test_gates_start_from_the_initial_state(family, masked, path, rng):
    # Every gate and c, not only h, continue from `initial_state`, on both paths
    # (the recomputation once started its scans from zeros).
    layer_cls, reference, n_states = REFERENCES[family]
    x, mask = padded(rng)
    mask = mask if masked else None
    initial = [rng.normal(size=(len(x), 5)).astype("float32") for _ in range(n_states)]
    layer = layer_cls(5, return_sequences=True, return_gates=True, gate_path=path)
    layer(x)
    weights = randomize(layer, rng)
    got = kgates.split_gates(layer(x, mask=mask, initial_state=initial), layer)
    want = reference(x, weights, 5, mask=mask, initial=initial)
    for name in want:
        np.testing.assert_allclose(npy(got[name]), want[name], atol=ATOL, err_msg=name)


@pytest.mark.parametrize("path", ["recompute", "step"])
@pytest.mark.parametrize("family", REFERENCES)
def test_stateful_layers_carry_every_gate_across_calls(family, path, rng):
    layer_cls, reference, _ = REFERENCES[family]
    x, _ = padded(rng, lengths=(None,) * 4)
    layer = layer_cls(5, return_sequences=True, return_gates=True, gate_path=path, stateful=True)
    layer(x[:, :4])
    weights = randomize(layer, rng)
    layer.reset_state()
    halves = [kgates.split_gates(layer(part), layer) for part in (x[:, :4], x[:, 4:])]
    want = reference(x, weights, 5)
    for name in want:
        got = np.concatenate([npy(half[name]) for half in halves], axis=1)
        np.testing.assert_allclose(got, want[name], atol=ATOL, err_msg=name)


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="Keras keeps float64 on TensorFlow only (JAX and torch promote it to float32)",
)
def test_a_float64_layer_recomputes_its_gates_in_float64(rng):
    x, mask = padded(rng)
    x = x.astype("float64")
    layer = kgates.LSTM(
        5, return_sequences=True, return_gates=True, gate_path="recompute", dtype="float64"
    )
    layer(x)
    weights = randomize(layer, rng)
    got = kgates.split_gates(layer(x, mask=mask), layer)
    want = lstm_reference(x, weights, 5, mask=mask)
    for name in want:
        np.testing.assert_allclose(npy(got[name]), want[name], atol=1e-12, err_msg=name)
