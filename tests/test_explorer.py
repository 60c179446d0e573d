"""The gate explorer's data and its select -> match search (the Gates tab, `kgates
explore`, `kgates.show`), on every backend. The browser and a real TensorBoard:
test_explorer_browser.py."""

import json
import os
import re

import keras
import numpy as np
import pytest
from helpers import encoder_decoder

import kgates
from kgates.cli import main
from kgates.inspect._explorer import explorer_record
from kgates.inspect._plugin import logdir_store, store_records

CHARS = "_abcd"


def brute_force_matches(values, valid, units, threshold, length, exclude):
    """Every maximal run of real steps where all `units` are >= threshold, found by
    trying every (sequence, start, end) and ranked as documented."""
    values = np.asarray(values, np.float64)
    n_seq, steps = values.shape[:2]

    def on(n, t):
        return bool(valid[n, t]) and all(values[n, t, u] >= threshold for u in units)

    runs = []
    for n in range(n_seq):
        for start in range(steps):
            for end in range(start, steps):
                inside = all(on(n, t) for t in range(start, end + 1))
                maximal = (start == 0 or not on(n, start - 1)) and (
                    end == steps - 1 or not on(n, end + 1)
                )
                if not (inside and maximal):
                    continue
                if n == exclude[0] and start <= exclude[2] and end >= exclude[1]:
                    continue
                lows = [
                    min(values[n, t, u] for u in units) - threshold for t in range(start, end + 1)
                ]
                margin = np.floor(sum(lows) / len(lows) * 1e6 + 0.5) / 1e6
                runs.append((abs(end - start + 1 - length), -margin, n, start, end))
    return [(n, s, e) for _, _, n, s, e in sorted(runs)]


def test_matches_by_hand():
    # one sequence, 2 units; unit 0 and 1 both >= 0.5 at steps 1-2 and 5; step 6 is padding
    values = np.array(
        [[[0.1, 0.9], [0.6, 0.7], [0.8, 0.5], [0.9, 0.2], [0.4, 0.9], [0.7, 0.75], [0.9, 0.9]]]
    )
    valid = np.array([[1, 1, 1, 1, 1, 1, 0]], bool)
    assert kgates.pattern_units(values, 0, 1, 2, 0.5).tolist() == [0, 1]
    assert kgates.pattern_units(values, 0, 1, 3, 0.5).tolist() == [0]
    found = kgates.find_matches(values, valid, [0, 1], 0.5, length=1)
    # runs 5..5 (length 1, margin min(.7,.75)-.5 = .2) then 1..2 (margin ((.6-.5)+(.5-.5))/2 = .05)
    assert [(m["start"], m["end"], m["margin"]) for m in found] == [(5, 5, 0.2), (1, 2, 0.05)]
    assert kgates.find_matches(values, valid, [0, 1], 0.5, 2, exclude=(0, 2, 2))[0]["start"] == 5
    assert kgates.find_matches(values, valid, [], 0.5, 2) == []


def test_matches_equal_a_brute_force_search(rng):
    values = rng.random((6, 25, 5)).astype(np.float16).astype(np.float64)
    values[:, :, :3] += np.sin(np.arange(25) / 3)[None, :, None] * 0.4
    valid = np.ones((6, 25), bool)
    valid[::2, 20:] = False
    for threshold, (n, start, end) in [(0.5, (1, 2, 4)), (0.3, (0, 0, 1)), (0.7, (3, 5, 5))]:
        units = kgates.pattern_units(values, n, start, end, threshold)
        assert units.tolist() == [
            u for u in range(5) if all(values[n, t, u] >= threshold for t in range(start, end + 1))
        ]
        got = kgates.find_matches(
            values, valid, units, threshold, end - start + 1, (n, start, end), limit=1000
        )
        expected = brute_force_matches(
            values, valid, units, threshold, end - start + 1, (n, start, end)
        )
        assert [(m["sequence"], m["start"], m["end"]) for m in got] == expected
        assert expected  # the case is not empty


@pytest.fixture
def model():
    inputs = keras.Input((12,))
    x = keras.layers.Embedding(5, 3, mask_zero=True)(inputs)
    x = keras.layers.LSTM(5, return_sequences=True, name="lstm")(x)
    x = keras.layers.Bidirectional(keras.layers.GRU(3, name="gru"), name="bi")(x)
    return keras.Model(inputs, keras.layers.Dense(1)(x))


def embedded(page):
    text = page.split('id="kgates-data">')[1].split("</script>")[0]
    return json.loads(text.replace("<\\/", "</"))


def tokens(x):
    return [[CHARS[i] for i in row] for row in x]


def test_a_record_is_the_trace_bounded_in_float16(model, rng):
    x = rng.integers(1, 5, (10, 12))
    x[1, 8:] = 0
    traced = kgates.trace(model, x)
    meta, arrays = explorer_record(
        traced, {"bi/backward": True}, x, tokens(x), sequences=4, steps=9, units=4
    )
    assert (meta["sequences"], meta["steps"]) == (4, 9)
    assert [layer["name"] for layer in meta["layers"]] == ["lstm", "bi/forward", "bi/backward"]
    lstm = meta["layers"][0]
    assert (lstm["units"], lstm["total_units"], lstm["memory"]) == (4, 5, "lstm")
    assert meta["layers"][2]["backwards"] and meta["layers"][1]["memory"] == "gru"
    real = ~np.ma.getmaskarray(traced["lstm"]["c"])[:4, :9, 0]
    assert arrays["valid"].tolist() == real.tolist()
    for key in ("i", "f", "g", "o", "c", "h"):
        stored = arrays[f"lstm/{key}"]
        assert stored.dtype == np.float16 and stored.shape == (4, 9, 4)
        expected = np.ma.filled(traced["lstm"][key][:4, :9, :4], 0.0)
        np.testing.assert_allclose(stored, expected, atol=1e-3, rtol=1e-3)
    assert meta["tokens"][1] == [CHARS[i] for i in x[1, :9]]
    real = arrays["lstm/f"][arrays["valid"].astype(bool)].astype(np.float64)
    np.testing.assert_allclose(
        np.array(lstm["quantiles"]["f"]),
        np.quantile(real, meta["quantile_levels"], axis=0).T,
        atol=1e-4,
    )
    assert "inputs" not in arrays  # tokens instead
    with pytest.raises(ValueError, match="`steps` must be an integer >= 1"):
        explorer_record(traced, steps=0)


def test_unit_quantiles_leave_out_non_finite_values_unit_by_unit(rng):
    # A diverged model: NaN and inf here and there, a unit with one finite value, a
    # unit with none; padded steps of the second sequence are left out too.
    values = rng.normal(size=(3, 20, 5)).astype("float32")
    values[0, :7, 0], values[2, 3, 0], values[1, 2, 1] = np.nan, np.inf, -np.inf
    values[..., 3] = np.nan
    values[0, 5, 3] = 0.25
    values[..., 4] = np.inf
    padded = np.zeros(values.shape, bool)
    padded[1, 12:] = True
    traced = {"rnn": {"h": np.ma.masked_array(values, mask=padded)}}
    meta, arrays = explorer_record(traced, sequences=3, steps=20, units=5)
    real = arrays["rnn/h"][arrays["valid"].astype(bool)].astype(np.float64)  # as stored
    got = meta["layers"][0]["quantiles"]["h"]
    for unit in range(5):
        column = real[:, unit][np.isfinite(real[:, unit])]
        if unit == 4:
            assert got[unit] == [None] * 5
            continue
        want = np.quantile(column, meta["quantile_levels"])
        np.testing.assert_allclose(got[unit], want, atol=1e-4, err_msg=f"unit {unit}")
    assert got[3] == [0.25] * 5


def test_the_callback_writes_records_every_explorer_freq_dashboards_and_at_the_end(
    model, rng, tmp_path
):
    x = rng.integers(1, 5, (16, 12))
    model.compile("adam", "mse")
    annotations = {"is_b": x == 2}
    callback = kgates.TensorBoard(
        str(tmp_path),
        probe=x,
        probe_text=lambda row: [CHARS[i] for i in row],
        annotations=annotations,
        explorer_freq=2,
        image_freq=0,
        gradients=False,
    )
    model.fit(x, np.zeros((16, 1)), epochs=4, verbose=0, callbacks=[callback])
    records = store_records(logdir_store(str(tmp_path)))
    assert list(records) == ["train"] and sorted(records["train"]) == [0, 2, 3]
    meta, arrays = records["train"][3]
    traced = kgates.trace(model, x)  # the model after the last epoch
    np.testing.assert_allclose(
        arrays["bi/backward/h"], np.ma.filled(traced["bi/backward"]["h"], 0), atol=2e-3
    )
    assert meta["tokens"][0] == [CHARS[i] for i in x[0]]
    expected = kgates.find_units(model, x, annotations).top("is_b", 10)
    assert [(r["layer"], r["key"], r["unit"]) for r in meta["units_table"]] == [
        (r["layer"], r["key"], r["unit"]) for r in expected
    ]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"explorer_freq": -1}, "`explorer_freq` must be an integer >= 0"),
        ({"explorer_steps": 0}, "`explorer_steps` must be an integer >= 1"),
        ({"annotations": [1]}, "`annotations` must be a dict"),
        ({"annotations": {"a": np.zeros((3, 12))}}, r"`annotations\['a'\]` must be"),
        ({"probe_text": lambda row: ["a"] * 5}, "`probe_text` must give one token per step"),
        ({"probe_text": [["a"] * 12] * 3}, "one list of tokens per probe sequence \\(8\\)"),
    ],
)
def test_bad_explorer_arguments_are_named(kwargs, match, tmp_path):
    with pytest.raises(ValueError, match=match):
        kgates.TensorBoard(str(tmp_path), probe=np.ones((8, 12), int), **kwargs)
    assert not os.listdir(tmp_path)


def test_show_is_one_offline_page_with_the_record(model, rng, tmp_path):
    x = rng.random((6, 12)) * 4 + 1
    x = x.astype(int)
    explorer = kgates.show(model, x, text=lambda row: [CHARS[i] for i in row])
    page = explorer.html
    # no network: no script, style or font from elsewhere
    assert not re.search(r"""(src|href)=["']?https?:""", page)
    assert "import " not in page.split('<script type="module">')[1].split("mount(")[0][:50]
    data = embedded(page)
    meta = data["records"]["kgates.show\n0"]["meta"]
    assert meta["tokens"][2] == [CHARS[i] for i in x[2]]
    assert explorer._repr_html_().startswith("<iframe srcdoc=")
    assert os.path.getsize(explorer.save(str(tmp_path / "g.html"))) == len(page.encode())
    with pytest.raises(ValueError, match="kgates.show: `text` must give one token per step"):
        kgates.show(model, x, text=lambda row: ["a"])


def test_kgates_explore_writes_one_file_and_refuses_bad_arguments(model, rng, tmp_path, capsys):
    x = rng.integers(1, 5, (8, 12))
    model.compile("adam", "mse")
    callback = kgates.TensorBoard(str(tmp_path / "run"), probe=x, image_freq=0, gradients=False)
    model.fit(x, np.zeros((8, 1)), epochs=1, verbose=0, callbacks=[callback])
    empty = tmp_path / "empty"
    empty.mkdir()
    for argv, message in [
        (["explore", str(tmp_path / "nope"), "-o", str(tmp_path / "a.html")], "no such directory"),
        (["explore", str(tmp_path / "run"), "-o", str(empty)], "is a directory"),
        (["explore", str(tmp_path / "run"), "-o", str(tmp_path / "x" / "a.html")], "no such"),
        (["explore", str(empty), "-o", str(tmp_path / "a.html")], "no explorer data under"),
    ]:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("kgates explore: ") and message in err and err.count("\n") == 1
        assert not (tmp_path / "a.html").exists()
    assert main(["explore", str(tmp_path / "run"), "-o", str(tmp_path / "a.html")]) == 0
    page = (tmp_path / "a.html").read_text()
    data = embedded(page)
    assert list(data["runs"]) == ["train"] and data["runs"]["train"] == [0]


def test_the_sequence_need_not_be_the_models_first_input(rng, tmp_path):
    # A side input first: tokens, annotations and the drawn inputs are the sequence's.
    side, seq = keras.Input((2,)), keras.Input((7, 3))
    h = keras.layers.LSTM(4, name="lstm")(seq)
    model = keras.Model([side, seq], keras.layers.Concatenate()([h, side]))
    model.compile("adam", "mse")
    x = [rng.normal(size=(6, 2)), rng.normal(size=(6, 7, 3))]
    words = [[f"w{t}" for t in range(7)] for _ in range(6)]
    callback = kgates.TensorBoard(
        str(tmp_path),
        probe=x,
        probe_text=words,
        annotations={"late": np.tile(np.arange(7) > 3, (6, 1))},
        explorer_freq=1,
        image_freq=0,
        gradients=False,
    )
    model.fit(x, np.zeros((6, 6)), epochs=1, verbose=0, callbacks=[callback])
    meta, arrays = store_records(logdir_store(str(tmp_path)))["train"][0]
    assert meta["tokens"] == words
    assert meta["units_table"]
    callback = kgates.TensorBoard(str(tmp_path / "drawn"), probe=x, explorer_freq=1, image_freq=0)
    model.fit(x, np.zeros((6, 6)), epochs=1, verbose=0, callbacks=[callback])
    meta, arrays = store_records(logdir_store(str(tmp_path / "drawn")))["train"][0]
    assert meta["features"] == 3
    np.testing.assert_allclose(arrays["inputs"].astype(np.float64), x[1], atol=2e-3)
    shown = embedded(kgates.show(model, x).html)["records"]["kgates.show\n0"]["meta"]
    assert shown["features"] == 3


def test_an_encoder_decoder_shows_the_encoders_sequence_and_names_the_decoder(rng, tmp_path):
    # Two sequences of different lengths: the tab follows the first traced layer's.
    model = encoder_decoder(head=2)
    model.compile("adam", "mse")
    x = [rng.normal(size=(6, 5, 3)), rng.normal(size=(6, 3, 2))]
    callback = kgates.TensorBoard(
        str(tmp_path),
        probe=x,
        annotations={"late": np.tile(np.arange(5) > 2, (6, 1))},
        explorer_freq=1,
        image_freq=1,
    )
    model.fit(x, np.zeros((6, 3, 2)), epochs=1, verbose=0, callbacks=[callback])
    meta, arrays = store_records(logdir_store(str(tmp_path)))["train"][0]
    assert [layer["name"] for layer in meta["layers"]] == ["encoder"]
    assert meta["other_steps"] == ["decoder"] and meta["steps"] == 5
    assert {row["layer"] for row in meta["units_table"]} == {"encoder"}
    np.testing.assert_allclose(arrays["inputs"].astype(np.float64), x[0], atol=2e-3)
    with pytest.raises(ValueError, match="another time axis than 'encoder'; pass `layers=`"):
        kgates.find_units(model, x, {"late": np.tile(np.arange(5) > 2, (6, 1))})
    units = kgates.find_units(
        model, x, {"late": np.tile(np.arange(3) > 0, (6, 1))}, layers="decoder"
    )
    assert {row["layer"] for row in units.rows["late"]} == {"decoder"}
