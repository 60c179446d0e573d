"""kgates.TensorBoard: event files read back with TensorBoard's own reader."""

import copy
import json
import os
import re
import subprocess
import sys
import time
import urllib.request

import keras
import numpy as np
import pytest
from helpers import read_events

import kgates
from kgates.inspect._stats import saturation

STEPS, FEATURES = 10, 3


def _data(rng, n=32):
    x = rng.normal(size=(n, STEPS, FEATURES)).astype("float32")
    lengths = rng.integers(3, STEPS + 1, n)
    lengths[0] = STEPS
    mask = np.arange(STEPS)[None] < lengths[:, None]
    return x * mask[..., None], rng.normal(size=(n, 1)).astype("float32"), mask


def _model():
    inputs = keras.Input((STEPS, FEATURES))
    x = keras.layers.Masking(0.0)(inputs)
    x = keras.layers.LSTM(4, return_sequences=True, name="lstm")(x)
    x = keras.layers.GRU(3, name="gru")(x)
    model = keras.Model(inputs, keras.layers.Dense(1)(x))
    model.compile("adam", "mse")
    return model


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One training run with the callback, read by several tests."""
    logdir = tmp_path_factory.mktemp("run")
    x, y, mask = _data(np.random.default_rng(0))
    model = _model()
    callback = kgates.TensorBoard(str(logdir), probe=(x[:8], y[:8]))
    model.fit(x, y, epochs=2, batch_size=16, verbose=0, callbacks=[callback])
    return model, x[:8], mask[:8], read_events(str(logdir), "train"), logdir


def test_every_dashboard_tag_is_written(trained):
    events = trained[3]
    tags = events.Tags()
    expected_histograms = [f"gates/lstm/{g}" for g in "hifgoc"] + [f"gates/gru/{g}" for g in "hzrg"]
    assert set(expected_histograms) <= set(tags["histograms"])
    expected_scalars = (
        [f"saturation/lstm/{g}/{side}" for g in "ifo" for side in ("left", "right")]
        + [f"saturation/gru/{g}/{side}" for g in "zr" for side in ("left", "right")]
        + [f"gate_mean/lstm/{g}" for g in "hifgoc"]
        + ["forget_closed/lstm", "nonfinite/lstm", "nonfinite/gru"]
        + ["gradient_flow/lstm/reach_h", "gradient_flow/lstm/reach_c", "gradient_flow/gru/reach_h"]
    )
    assert set(expected_scalars) <= set(tags["scalars"])
    expected_images = [
        "cell_state/lstm",
        "cell_state/gru",
        "cell_trace/lstm",
        "saturation_scatter/lstm",
        "saturation_scatter/gru",
        "gradient_flow/lstm",
        "gradient_flow/gru",
        *(f"gate_heatmap/lstm/{g}" for g in "ifo"),
        *(f"gate_heatmap/gru/{g}" for g in "zr"),
    ]
    assert set(expected_images) <= set(tags["images"])
    assert [e.step for e in events.Histograms("gates/lstm/f")] == [0, 1]
    # Keras's own logs are still there (TensorFlow writes them as tensors).
    assert "epoch_loss" in tags["scalars"] + tags["tensors"]


def test_memory_spans_and_attention_of_each_layer(trained):
    model, probe, mask, events, _ = trained
    memories = kgates.memory(model, probe)
    for layer, units in (("lstm", 4), ("gru", 3)):
        histogram = events.Histograms(f"memory_span/{layer}")[-1].histogram_value
        assert histogram.num == mask.sum() * units  # every unit at every real step
        median = events.Scalars(f"memory_span_median/{layer}")[-1].value
        spans = memories[layer].span[mask]
        assert median == pytest.approx(float(np.median(spans.compressed())), rel=1e-5)
        image = events.Images(f"memory_attention/{layer}")[-1]
        assert image.encoded_image_string.startswith(b"\x89PNG")


def test_histogram_counts_leave_padded_steps_out(trained):
    _, _, mask, events, _ = trained
    for layer, units in (("lstm", 4), ("gru", 3)):
        for gate in ("h", "i", "c") if layer == "lstm" else ("h", "z"):
            histogram = events.Histograms(f"gates/{layer}/{gate}")[-1].histogram_value
            assert histogram.num == mask.sum() * units, (layer, gate)
            assert sum(histogram.bucket) == histogram.num


def test_saturation_equals_numpy_on_the_traced_gates(trained):
    model, probe, mask, events, _ = trained
    traced = kgates.trace(model, probe)  # the weights of the last logged epoch
    for layer, gates in (("lstm", "ifo"), ("gru", "zr")):
        for gate in gates:
            values = traced[layer][gate]
            assert values.count() == mask.sum() * values.shape[-1]
            left, right = saturation(values)
            data = values.compressed()
            assert left == pytest.approx(np.mean(data < 0.1), abs=1e-12)
            logged = {
                side: events.Scalars(f"saturation/{layer}/{gate}/{side}")[-1].value
                for side in ("left", "right")
            }
            # one activation flipping across 0.1 or 0.9 is the most float32 can move it
            assert logged["left"] == pytest.approx(left, abs=1.01 / data.size)
            assert logged["right"] == pytest.approx(right, abs=1.01 / data.size)


def test_gradient_reach_is_the_last_logged_epochs(trained):
    model, probe, _, events, _ = trained
    x, y = probe, _data(np.random.default_rng(0))[1][:8]  # the probe the callback got
    flows = kgates.gradient_flow(model, x, y)  # measured anew: the last epoch's weights
    for layer, states in (("lstm", "hc"), ("gru", "h")):
        for state in states:
            logged = events.Scalars(f"gradient_flow/{layer}/reach_{state}")
            assert [e.step for e in logged] == [0, 1]  # the measure is reused
            want = kgates.reach(flows[layer][state])
            assert want > 0 and logged[-1].value == want, (layer, state)


def test_images_are_pngs(trained):
    events = trained[3]
    image = events.Images("cell_state/lstm")[-1]
    assert image.encoded_image_string[:8] == b"\x89PNG\r\n\x1a\n"
    assert image.width > 100 and image.height > 50


@pytest.mark.parametrize(
    ("gate_freq", "epochs", "histograms", "images"),
    [(1, 3, [0, 1, 2], [0, 2]), (2, 4, [0, 2, 3], [0, 3])],
)
def test_the_last_epoch_trained_gets_images_and_pinned_gates_get_none(
    tmp_path, rng, gate_freq, epochs, histograms, images
):
    x, y, _ = _data(rng)
    inputs = keras.Input((STEPS, FEATURES))
    h = kgates.LSTM(4, variant="NFG", name="lstm")(inputs)  # f is pinned to 1
    model = keras.Model(inputs, keras.layers.Dense(1)(h))
    model.compile("adam", "mse")
    callback = kgates.TensorBoard(str(tmp_path), probe=x[:4], gate_freq=gate_freq, gradients=False)
    model.fit(x, y, epochs=epochs, verbose=0, callbacks=[callback])
    events = read_events(str(tmp_path), "train")
    assert [e.step for e in events.Histograms("gates/lstm/i")] == histograms
    assert [e.step for e in events.Images("cell_state/lstm")] == images
    assert {"gate_heatmap/lstm/i", "gate_heatmap/lstm/o"} <= set(events.Tags()["images"])
    assert "gate_heatmap/lstm/f" not in events.Tags()["images"]


def test_nonfinite_gates_are_counted_not_fatal(tmp_path, rng):
    x, y, _ = _data(rng)
    model = _model()
    callback = kgates.TensorBoard(str(tmp_path), probe=x[:4], gradients=False)
    callback.set_model(model)
    lstm = model.get_layer("lstm")
    kernel, recurrent, bias = lstm.get_weights()
    kernel[0, :] = np.nan
    lstm.set_weights([kernel, recurrent, bias])
    callback.log_gates(0)
    callback.on_train_end()
    events = read_events(str(tmp_path), "train")
    assert events.Scalars("nonfinite/lstm")[-1].value > 0
    assert "gates/lstm/i" in events.Tags()["histograms"]


def test_deepcopy_gives_an_independent_callback(tmp_path, rng):
    x, y, _ = _data(rng)
    # dashboards without images or gradients: the copy is what is checked
    callback = kgates.TensorBoard(str(tmp_path / "a"), probe=x[:4], image_freq=0, gradients=False)
    _model().fit(x, y, epochs=1, verbose=0, callbacks=[callback])
    clone = copy.deepcopy(callback)
    clone.log_dir = str(tmp_path / "b")  # as Keras Tuner does per trial
    _model().fit(x, y, epochs=1, verbose=0, callbacks=[clone])
    assert "gates/lstm/f" in read_events(str(tmp_path / "b"), "train").Tags()["histograms"]
    np.testing.assert_array_equal(clone.probe_x, callback.probe_x)


def test_large_probe_is_subsampled():
    callback = kgates.TensorBoard("unused", probe=np.zeros((1000, STEPS, FEATURES)), max_probe=50)
    assert callback.probe_x.shape == (50, STEPS, FEATURES)


@pytest.mark.parametrize(
    ("kwargs", "model", "match"),
    [
        ({"probe": np.zeros(STEPS)}, _model, r"`probe` must be a batch of sequences"),
        ({"probe": np.zeros((4, STEPS))}, _model, r"`probe` must match the model.s inputs"),
        ({"probe": np.zeros((4, STEPS, 5))}, _model, r"`probe` must match the model's inputs"),
        (
            {"probe": np.zeros((4, STEPS, FEATURES)), "layers": "nope"},
            _model,
            "no recurrent layer named",
        ),
        (
            {"probe": np.zeros((4, STEPS, FEATURES))},
            lambda: keras.Sequential([keras.Input((STEPS, FEATURES)), keras.layers.Dense(1)]),
            "no recurrent layer",
        ),
        ({}, _model, "argument `probe` is required"),
        ({"probe": np.zeros((4, STEPS, FEATURES)), "gate_freq": -1}, _model, "`gate_freq`"),
        (
            {"probe": np.zeros((4, STEPS, FEATURES)), "probe_mask": np.ones((4, STEPS - 1))},
            _model,
            r"`probe_mask` must be a \(batch, time\) array of shape \(4, 10\)",
        ),
        (
            {"probe": np.zeros((4, STEPS, FEATURES)), "probe_mask": np.ones(STEPS)},
            _model,
            "`probe_mask`",
        ),
    ],
)
def test_bad_input_fails_before_the_first_epoch(kwargs, model, match, tmp_path):
    epochs = []
    marker = keras.callbacks.LambdaCallback(on_epoch_begin=lambda e, logs: epochs.append(e))
    with pytest.raises(ValueError, match=match):
        callback = kgates.TensorBoard(str(tmp_path), **kwargs)
        m = model()
        m.compile("adam", "mse")
        m.fit(
            np.zeros((8, STEPS, FEATURES)),
            np.zeros((8, 1)),
            epochs=3,
            verbose=0,
            callbacks=[callback, marker],
        )
    assert epochs == []


def _run(args, env=None):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
    return subprocess.run(
        [sys.executable, *args], env=env, capture_output=True, text=True, timeout=600
    )


WITHOUT_TENSORFLOW = """
import sys
sys.modules["tensorflow"] = None  # importing it now fails, as if not installed
import keras, numpy as np, kgates
x = np.random.rand(32, 10, 3).astype("float32")
y = np.random.rand(32, 1).astype("float32")
model = keras.Sequential([keras.Input((10, 3)), keras.layers.LSTM(4), keras.layers.Dense(1)])
model.compile("adam", "mse")
board = kgates.TensorBoard(sys.argv[1], probe=(x[:8], y[:8]), update_freq=2)
model.fit(x, y, epochs=2, batch_size=8, verbose=0, callbacks=[board])
loaded = [k for k, v in sys.modules.items() if k.startswith("tensorflow") and v is not None]
print("tensorflow loaded:", bool(loaded))
"""


@pytest.mark.processes
def test_logging_works_without_tensorflow(tmp_path):
    # JAX in a process where importing TensorFlow fails, whatever this session's backend.
    done = _run(["-c", WITHOUT_TENSORFLOW, str(tmp_path)], {"KERAS_BACKEND": "jax"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "tensorflow loaded: False" in done.stdout
    tags = read_events(str(tmp_path), "train").Tags()
    assert {"gates/lstm/f", "gates/lstm/c"} <= set(tags["histograms"])
    assert "epoch_loss" in tags["scalars"]  # Keras's own logs, through kgates's writer
    # update_freq=2: every second of the 2 x 4 batches, as tf.summary.record_if has it
    steps = [e.step for e in read_events(str(tmp_path), "train").Scalars("batch_loss")]
    assert steps == [2, 4, 6, 8]
    assert "gradient_flow/lstm" in tags["images"]


@pytest.mark.processes
def test_board_serves_the_gate_tags_over_http(trained):
    board = subprocess.Popen(
        [sys.executable, "-m", "kgates_cli", "board", str(trained[4]), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    try:
        url = None
        deadline = time.time() + 120
        while url is None and time.time() < deadline:
            line = board.stdout.readline()
            found = re.search(r"at (http://127\.0\.0\.1:\d+/)", line)
            url = found.group(1) if found else None
            assert line or board.poll() is None, "kgates board exited"
        assert url, "kgates board printed no address"
        tags = {}
        while time.time() < deadline:  # TensorBoard loads event files in the background
            with urllib.request.urlopen(url + "data/plugin/histograms/tags", timeout=10) as r:
                tags = json.load(r)
            if "gates/lstm/f" in tags.get("train", {}):
                break
            time.sleep(1)
        assert "gates/lstm/f" in tags["train"]
        with urllib.request.urlopen(url + "data/plugin/images/tags", timeout=10) as r:
            assert "cell_state/lstm" in json.load(r)["train"]
    finally:
        board.terminate()
        board.wait(timeout=30)


def test_board_rejects_a_missing_directory(tmp_path, capsys):
    from kgates import cli

    assert cli.main(["board", str(tmp_path / "missing")]) == 2
    assert "no such directory" in capsys.readouterr().err
