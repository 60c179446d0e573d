"""The dashboards' numbers computed on the device (`Tracer.summaries`) against the
NumPy functions of the same traced gates: `gate_statistics`, `unit_saturation`,
`histogram_proto` and `Memory.span` (float64)."""

import keras
import numpy as np
import pytest
from helpers import padded
from reference import randomize

import kgates
from kgates.cells import _backend
from kgates.inspect._events import histogram_proto
from kgates.inspect._memory import Memory, has_memory
from kgates.inspect._stats import gate_statistics, unit_saturation
from kgates.inspect._summaries import PartSummaries, _median, histograms, order_statistics
from kgates.inspect._trace import Tracer


def _model(rng, steps=9):
    inputs = keras.Input((steps, 3))
    h = keras.layers.Masking(0.0)(inputs)
    h = keras.layers.Bidirectional(keras.layers.LSTM(5, return_sequences=True), name="bi")(h)
    h = kgates.GRU(4, return_sequences=True, go_backwards=True, name="gru")(h)
    h = keras.layers.RNN(kgates.LSTMCell(3, pin={"o": 1.0}), return_sequences=True, name="pinned")(
        h
    )
    h = keras.layers.SimpleRNN(2, name="simple")(h)
    model = keras.Model(inputs, h)
    randomize(model, rng, scale=1.0)
    return model


def _assert_histogram(got, values):
    want = histogram_proto(np.ma.compressed(values))
    assert float(got["num"]) == want.num
    for stat in ("min", "max", "sum", "sum_squares"):
        np.testing.assert_allclose(float(got[stat]), getattr(want, stat), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(got["counts"], np.array(want.bucket))


@pytest.mark.parametrize(
    ("compiled", "steps", "counting"),
    [
        (True, 9, None),
        (False, 9, None),
        (True, None, None),
        (True, 9, "spread"),
        (True, 9, "compare"),
    ],
    ids=["compiled", "eager", "variable-time", "spread", "compare"],
)
def test_device_summaries_equal_the_numpy_statistics_of_the_trace(
    compiled, steps, counting, rng, monkeypatch
):
    monkeypatch.setattr(_backend, "COUNTING", counting)
    model = _model(rng, steps)
    x, mask = padded(rng, batch=6, time=9, lengths=(None, 5, 1, 7, 9, 3))
    tracer = Tracer(model, compiled=compiled)
    if keras.backend.backend() == "jax":  # where one eager call costs more than a compile
        assert tracer.compiled
        if not compiled:
            return  # the same computation as the compiled case
    traced, summaries = tracer(x), tracer.summaries(x)
    assert set(summaries) == set(traced) == {"bi/forward", "bi/backward", "gru", "pinned", "simple"}
    for part, gates in traced.items():
        got, want = summaries[part], gate_statistics(gates)
        assert got["nonfinite"] == want["nonfinite"] == 0
        assert set(got["first"]) == set(gates)
        for key, values in gates.items():
            _assert_histogram(got[key], values)
            assert got[key]["num"].dtype == got[key]["counts"].dtype == np.int32  # exact counts
            np.testing.assert_allclose(
                float(got[key]["sum"] / got[key]["num"]), want[key]["mean"], rtol=1e-5
            )
            np.testing.assert_allclose(got["first"][key].filled(np.nan), values[:1].filled(np.nan))
            if "left" in want[key]:
                left, right = unit_saturation(values)
                np.testing.assert_allclose(float(got[key]["left"]), want[key]["left"], rtol=1e-6)
                np.testing.assert_allclose(float(got[key]["right"]), want[key]["right"], rtol=1e-6)
                np.testing.assert_allclose(got[key]["unit_left"], left, rtol=1e-6)
                np.testing.assert_allclose(got[key]["unit_right"], right, rtol=1e-6)
        if not has_memory(gates) or part == "simple":
            assert "span" not in got, part
            continue
        backwards = part in ("bi/backward", "gru")
        spans = Memory.from_gates(gates, backwards=backwards).span
        values = spans.compressed()
        resolution = (values.max() - values.min()) / 2**20  # of `order_statistics`
        np.testing.assert_allclose(
            float(got["span"]["median"]), np.median(values), atol=resolution + 1e-5
        )
        span = histogram_proto(spans.compressed())
        assert float(got["span"]["num"]) == span.num
        np.testing.assert_allclose(float(got["span"]["sum"]), span.sum, rtol=1e-5)
        np.testing.assert_allclose(
            got["span"]["counts"], np.array(span.bucket), atol=1
        )  # float32 edges
        assert got["span"]["counts"].sum() == span.num
    assert mask[2, 1] == 0 and summaries["gru"]["first"]["z"].mask.sum() == 0  # padding is traced


@pytest.mark.parametrize(
    "names", [("h", "i", "f", "g", "o", "c"), ("h", "z", "r", "g"), ("h",)], ids=str
)
def test_the_symbolic_summaries_are_those_computed(names, rng):
    # Keras builds the tracing model from `compute_output_spec` where the time
    # axis is variable: every number it promises, shaped as the call gives it.
    layer = PartSummaries(names, names, units=3, backwards=False)
    packed = rng.uniform(size=(2, 5, 3 * len(names))).astype("float32")
    got = layer.call(keras.ops.convert_to_tensor(packed), keras.ops.ones((2, 5)))
    spec = layer.compute_output_spec(
        keras.KerasTensor((None, None, 3 * len(names))), keras.KerasTensor((None, None))
    )
    assert set(spec) == set(got)
    for key, value in got.items():
        promised = tuple(5 if d is None else d for d in spec[key].shape)  # None: the time axis
        assert tuple(value.shape) == promised, key


def test_non_finite_gates_are_counted_and_left_out(rng):
    model = keras.Sequential(
        [keras.Input((6, 2)), kgates.LSTM(3, return_sequences=True, name="lstm")]
    )
    randomize(model, rng)
    kernel = model.layers[0].cell.kernel
    values = keras.ops.convert_to_numpy(kernel).copy()
    values[0, :] = (
        np.inf
    )  # input 0 drives every pre-activation to +-inf: g = tanh(inf) is finite, o * tanh(c) ...
    kernel.assign(values)
    x = rng.normal(size=(4, 6, 2)).astype("float32")
    x[0, 2, 0] = 0.0  # 0 * inf: NaN in every gate of one step
    tracer = Tracer(model)
    traced, got = tracer(x)["lstm"], tracer.summaries(x)["lstm"]
    want = gate_statistics(traced)
    assert want["nonfinite"] > 0
    assert got["nonfinite"] == want["nonfinite"]
    for key, values in traced.items():
        finite = np.ma.masked_invalid(values)
        _assert_histogram(got[key], finite)


@pytest.mark.parametrize("counting", [None, "compare"])
@pytest.mark.parametrize("kind", ["spread", "ties", "constant", "one"])
def test_order_statistics_and_medians_by_counting_equal_numpy(kind, counting, rng, monkeypatch):
    monkeypatch.setattr(_backend, "COUNTING", counting)  # 2 passes of 1024 buckets, or 4 of 32
    values = {
        "spread": rng.exponential(7.0, size=(5, 7, 3)),
        "ties": rng.integers(0, 4, size=(5, 7, 3)).astype(float),
        "constant": np.full((5, 7, 3), 2.5),
        "one": rng.normal(size=(5, 7, 3)),
    }[kind].astype("float32")
    weight = (rng.random((5, 7, 3)) < 0.6).astype("float32")
    if kind == "one":
        weight[:] = 0.0
        weight[1, 2, 0] = 1.0
    kept = np.sort(values[weight > 0])
    resolution = (kept.max() - kept.min()) / 2**20 + 1e-6
    for rank in sorted({0, len(kept) // 3, len(kept) - 1}):
        got = float(order_statistics(values, weight, [rank])[0])
        np.testing.assert_allclose(got, kept[rank], atol=resolution, err_msg=f"rank {rank}")
    np.testing.assert_allclose(float(_median(values, weight)), np.median(kept), atol=resolution)
    even = weight.copy()
    if kind != "one":  # an even count: the mean of the middle two
        even[
            np.argwhere(weight > 0)[0][0],
            np.argwhere(weight > 0)[0][1],
            np.argwhere(weight > 0)[0][2],
        ] = 0.0
        if (even > 0).sum() % 2:
            even[tuple(np.argwhere(even > 0)[0])] = 0.0
        np.testing.assert_allclose(
            float(_median(values, even)), np.median(values[even > 0]), atol=resolution
        )


@pytest.mark.parametrize("method", _backend.COUNTING_METHODS)
def test_bucket_counts_equal_numpy_bincount(method, rng):
    index = rng.integers(0, 13, size=(3, 1001))
    index[:, :5] = 12  # the last bucket, and some buckets left empty below
    on = rng.random((3, 1001)) < 0.7
    got = _backend.bucket_counts(
        keras.ops.convert_to_tensor(index.astype("int32")),
        keras.ops.convert_to_tensor(on),
        16,
        method,
    )
    want = [np.bincount(row[keep], minlength=16) for row, keep in zip(index, on)]
    assert keras.ops.convert_to_numpy(got).dtype == np.int32
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(got), want)


@pytest.mark.parametrize("method", _backend.COUNTING_METHODS)
def test_bucket_counts_stay_exact_past_float32s_integers(method):
    """Sums of ones in float32 stop at 2**24; a GPU probe's gate has 65 M entries."""
    n = 2**24 + 7
    index = keras.ops.concatenate(
        [keras.ops.ones((1, n - 3), "int32"), keras.ops.zeros((1, 3), "int32")], axis=1
    )
    on = keras.ops.ones((1, n), "bool")
    got = keras.ops.convert_to_numpy(_backend.bucket_counts(index, on, 2, method))
    np.testing.assert_array_equal(got, [[3, n - 3]])


@pytest.mark.parametrize("method", _backend.COUNTING_METHODS)
def test_histogram_counts_stay_exact_past_float32s_integers(method, monkeypatch):
    monkeypatch.setattr(_backend, "COUNTING", method)
    n = 2**24 + 7
    values = keras.ops.concatenate([keras.ops.ones((1, n - 3)), keras.ops.zeros((1, 3))], axis=1)
    got = histograms(values, keras.ops.ones((1, n)), bins=2)
    assert int(got["num"][0]) == n
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(got["counts"]), [[3, n - 3]])


def test_unknown_counting_is_named(monkeypatch):
    monkeypatch.setattr(_backend, "COUNTING", "sorted")
    with pytest.raises(ValueError, match="COUNTING must be one of"):
        _backend.counting()
