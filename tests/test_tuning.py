import json
import os
import types

import keras
import keras_tuner
import numpy as np
import pytest
from helpers import read_events
from scipy import stats
from tensorboard.plugins.hparams import plugin_data_pb2
from tensorboard.util import tensor_util

import kgates
from kgates.study import _choices, _directory, _search
from kgates.study import _report as report

TINY = {"samples": 64, "length": 8}
UNITS = 400  # enough draws for a test of their distribution


def _hp(values: dict) -> keras_tuner.HyperParameters:
    hp = keras_tuner.HyperParameters()
    for name, value in values.items():
        hp.Fixed(name, value)
    return hp


@pytest.mark.parametrize(
    "make",
    [
        lambda: keras.layers.RNN(kgates.LSTMCell(UNITS)),
        lambda: keras.layers.RNN(kgates.LSTMCell(UNITS, variant="NIG")),
        lambda: keras.layers.RNN(kgates.LSTMCell(UNITS, variant="V")),
        lambda: keras.layers.LSTM(UNITS),  # Keras's own layer
    ],
)
def test_chrono_bias_against_its_definition(make):
    layer = make()
    layer(np.zeros((1, 3, 2), "float32"))
    cell = layer.cell
    before = keras.ops.convert_to_numpy(cell.bias).copy()
    kgates.set_chrono_bias(layer, timescale=50, seed=3)
    bias = keras.ops.convert_to_numpy(cell.bias)
    gates = list(getattr(cell, "weighted_gates", "ifgo"))
    f = bias[gates.index("f") * UNITS : (gates.index("f") + 1) * UNITS]
    # b_f = log(u), u ~ U(1, T - 1): exp(b_f) is uniform on [1, 49].
    assert stats.kstest(np.exp(f), stats.uniform(1.0, 48.0).cdf).pvalue > 0.01
    assert np.all(f >= 0.0) and np.all(f <= np.log(49.0) + 1e-6)
    if "i" in gates:
        i = bias[gates.index("i") * UNITS : (gates.index("i") + 1) * UNITS]
        np.testing.assert_allclose(i, -f, rtol=1e-6)
    for gate in set(gates) - {"i", "f"}:  # the other gates keep their bias
        k = gates.index(gate)
        np.testing.assert_array_equal(
            bias[k * UNITS : (k + 1) * UNITS], before[k * UNITS : (k + 1) * UNITS]
        )


def test_chrono_bias_refuses_cells_without_a_forget_gate():
    layer = keras.layers.RNN(kgates.LSTMCell(4, variant="NFG"))
    layer(np.zeros((1, 3, 2), "float32"))
    with pytest.raises(ValueError, match="no forget gate"):
        kgates.set_chrono_bias(layer, timescale=50)
    with pytest.raises(ValueError, match="built LSTM"):
        kgates.set_chrono_bias(keras.layers.RNN(kgates.LSTMCell(4)), timescale=50)
    with pytest.raises(ValueError, match="`timescale`"):
        built = keras.layers.LSTM(4)
        built(np.zeros((1, 3, 2), "float32"))
        kgates.set_chrono_bias(built, timescale=0)


@pytest.mark.parametrize(
    ("values", "layer_type", "check"),
    [
        ({"cell": "NP", "forget_bias": "one"}, kgates.LSTM, "unit_forget_bias"),
        ({"cell": "NP", "forget_bias": "zero"}, kgates.LSTM, "zero_bias"),
        ({"cell": "CIFG"}, kgates.LSTM, "variant"),
        ({"cell": "GRU", "reset_after": False}, kgates.GRU, "reset_after"),
    ],
)
def test_hypermodel_builds_what_the_hyperparameters_say(values, layer_type, check):
    task = kgates.make_task("adding", **TINY)
    hypermodel = kgates.GateHyperModel(task, cells=_choices.CELLS)
    hp = _hp({"units": 8, "layers": 2, "learning_rate": 0.01, "dropout": 0.1, "clipnorm": 1.0})
    for name, value in values.items():
        hp.Fixed(name, value)
    model = hypermodel.build(hp)
    recurrent = [layer for layer in model.layers if isinstance(layer, layer_type)]
    assert (
        len(recurrent) == 2 and recurrent[0].return_sequences and not recurrent[1].return_sequences
    )
    assert all(layer.cell.units == 8 and layer.cell.dropout == 0.1 for layer in recurrent)
    assert model.optimizer.clipnorm == 1.0
    assert float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)) == pytest.approx(0.01)
    cell = recurrent[0].cell
    if check == "unit_forget_bias":
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(cell.bias)[8:16], 1.0)
    elif check == "zero_bias":
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(cell.bias), 0.0)
    elif check == "variant":
        assert cell.variant == "CIFG"
    else:
        assert cell.reset_after is False
    assert model.predict(task.x_val[:4], verbose=0).shape == (4, 1)


@pytest.mark.parametrize(
    ("cells", "space", "match"),
    [
        (("NP", "LSTM2"), {}, "unknown cell 'LSTM2'"),
        (("NP",), {"units": (0,)}, "`units`"),
        (("NP",), {"learning_rate": (0.0, 1e-2)}, "`learning_rate`"),
        (("NP",), {"dropout": (0.1, 1.0)}, "`dropout`"),
        (("NP",), {"forget_bias": ("two",)}, "`forget_bias`"),
        (("NP",), {"depth": (2,)}, "unknown search-space entry 'depth'"),
    ],
)
def test_bad_search_space(cells, space, match):
    with pytest.raises(ValueError, match=match):
        _choices.check_space(cells, space)


def _trial(cell, score, lr=1e-3, status="COMPLETED", gates=None, **values):
    values = {"cell": cell, "learning_rate": lr, **values}
    return {
        "id": "0",
        "status": status,
        "score": score,
        "values": values,
        "cell": report.cell_label(values),
        "gates": gates or {},
        "message": [],
    }


def test_by_cell_best_and_median_by_hand():
    trials = [
        _trial("NP", 0.3),
        _trial("NP", 0.1),
        _trial("NP", 0.2),
        _trial("NP", None, status="FAILED"),
        _trial("GRU", 0.05, reset_after=False),
        _trial("GRU", 0.4, reset_after=True),
    ]
    for trial, span in zip(trials, (2.0, 9.0, 4.0, 100.0, None, 3.0)):
        trial["memory_span"] = span  # the failed trial's is left out
    rows = {r["cell"]: r for r in report.by_cell(trials, "min")}
    assert rows["NP"]["memory_span"] == 4.0 and rows["GRU"]["memory_span"] == 3.0
    assert rows["GRU(reset_after=False)"]["memory_span"] is None
    assert rows["NP"]["trials"] == 4 and rows["NP"]["failed"] == 1
    assert rows["NP"]["best"] == 0.1 and rows["NP"]["median"] == pytest.approx(0.2)
    assert rows["GRU(reset_after=False)"]["best"] == 0.05 and rows["GRU"]["best"] == 0.4
    assert [r["cell"] for r in report.by_cell(trials, "min")][0] == "GRU(reset_after=False)"
    assert [r["cell"] for r in report.by_cell(trials, "max")][0] == "GRU"


def test_saturation_leaves_out_pinned_gates():
    layer = {
        "i": {"left": 0.25, "right": 0.25},
        "f": {"left": 0.0, "right": 1.0},
        "o": {"left": 0.1, "right": 0.0},
    }
    nfg = _trial("NFG", 0.1, gates={"a": layer, "b": {**layer, "i": {"left": 0.0, "right": 0.0}}})
    assert report.trial_saturation(nfg) == {"i": pytest.approx(0.25), "o": pytest.approx(0.1)}
    np_trial = _trial("NP", 0.1, gates={"a": layer})
    assert report.trial_saturation(np_trial)["f"] == 1.0


def test_importance_finds_the_hyperparameter_that_matters():
    rng = np.random.default_rng(0)
    trials = []
    for _ in range(40):
        lr = 10 ** rng.uniform(-4, -1)
        cell = rng.choice(["NP", "GRU", "CIFG"])
        units = int(rng.choice([32, 64]))
        score = (np.log10(lr) + 2.5) ** 2 + 0.01 * rng.standard_normal()
        trials.append(_trial(str(cell), float(score), lr=lr, units=units))
    ranked = report.importance(trials)
    assert ranked[0][0] == "learning_rate" and ranked[0][1] > 0.8
    assert sum(w for _, w in ranked) == pytest.approx(1.0)
    assert report.importance(trials[:3]) is None  # too few trials


def _scalar_values(events, tag):
    """A scalar's values, written as scalars (kgates's writer) or tensors (tf.summary)."""
    if tag in events.Tags()["scalars"]:
        return [e.value for e in events.Scalars(tag)]
    return [float(tensor_util.make_ndarray(e.tensor_proto)) for e in events.Tensors(tag)]


def test_tune_logs_every_trial_then_resumes_without_rerunning(tmp_path, capsys):
    directory = str(tmp_path / "search")
    options = {
        "task": "adding",
        "cells": ("NP", "GRU"),
        "max_trials": 2,
        "epochs": 2,
        "sizes": TINY,
        "space": {"units": 8, "layers": 1},
        "verbose": 0,
    }
    kgates.tune(directory, **options)
    trials = report.load_trials(directory)
    assert [t["status"] for t in trials] == ["COMPLETED"] * 2
    for t in trials:
        assert np.isfinite(t["score"])
        run = os.path.join(directory, "logs", f"trial_{t['id']}-{t['values']['cell']}")
        session = read_events(run)  # HParams: this trial's hyperparameters
        assert "_hparams_/session_start_info" in session.Tags()["tensors"]
        content = session.SummaryMetadata("_hparams_/session_start_info").plugin_data.content
        assert t["values"]["cell"].encode() in content
        # the HParams score is the report's: the best epoch's validation loss
        validation = _scalar_values(read_events(run, "validation"), "epoch_loss")
        assert [e.value for e in session.Scalars("score")] == [pytest.approx(min(validation))]
        train = read_events(run, "train")  # gate dashboards
        assert any(tag.startswith("gates/") for tag in train.Tags()["histograms"])
        layer = next(iter(t["gates"]))  # gates.json: the last dashboard's scalars
        assert set(t["gates"][layer]) >= {"h", "nonfinite", "memory_span"}
        assert t["memory_span"] == t["gates"][layer]["memory_span"] > 0  # one layer
    experiment = read_events(os.path.join(directory, "logs"))  # the HParams columns, typed
    content = experiment.SummaryMetadata("_hparams_/experiment").plugin_data.content
    infos = {
        info.name: info
        for info in plugin_data_pb2.HParamsPluginData.FromString(content).experiment.hparam_infos
    }
    assert infos["learning_rate"].domain_interval.min_value == pytest.approx(3e-4)
    assert infos["learning_rate"].domain_interval.max_value == pytest.approx(3e-2)
    assert list(infos["cell"].domain_discrete.values) and infos["cell"].type
    before = {
        t["id"]: open(f"{directory}/search/trial_{t['id']}/trial.json").read() for t in trials
    }
    first = capsys.readouterr().out  # progress: trial k of N, then the time left
    assert "] trial 0: 1 of 2, cell=" in first and "] trial 1: 2 of 2, cell=" in first
    assert "trial 0 COMPLETED in " in first and " left" in first.split("trial 1:")[0]

    kgates.tune(directory, **{**options, "max_trials": 3})  # resume with a larger budget
    after = report.load_trials(directory)
    assert len(after) == 3 and all(t["status"] == "COMPLETED" for t in after)
    for trial_id, text in before.items():  # finished trials are kept as they were
        assert open(f"{directory}/search/trial_{trial_id}/trial.json").read() == text
        runs = open(f"{directory}/search/trial_{trial_id}/runs.jsonl").read().splitlines()
        assert len(runs) == 1
    resumed = capsys.readouterr().out
    assert "] trial 2: 3 of 3, cell=" in resumed and "trial 0:" not in resumed

    path = report.write_report(directory)
    text = open(path).read()
    assert "| NP |" in text or "| GRU |" in text
    task = kgates.make_task("adding", 0, **TINY)  # the task's baselines, tabled
    for name, value in task.baselines.items():
        assert f"- {name}: {value:.4g}" in text
    assert f"at most {options['epochs']} epochs per trial" in text
    assert "| cell | trials | failed | best | median | memory span |" in text
    assert "## Cells against NP" in text  # no V in the search: its first cell
    for picture in (
        "score_by_cell",
        "score_vs_learning_rate",
        "saturation_by_cell",
        "expected_best",
    ):
        assert os.path.getsize(os.path.join(directory, "report", f"{picture}.png")) > 1000


def test_diverging_trials_are_failed_and_the_search_goes_on(tmp_path):
    directory = str(tmp_path / "search")
    kgates.tune(
        directory,
        cells=("NP",),
        max_trials=2,
        epochs=2,
        sizes=TINY,
        space={"units": (4, 8), "layers": 1, "learning_rate": 1e30, "clipnorm": 0.0},
        gate_freq=0,
        verbose=0,
    )
    trials = report.load_trials(directory)
    assert len(trials) == 2 and [t["status"] for t in trials] == ["FAILED", "FAILED"]
    assert all("diverged" in " ".join(t["message"]) for t in trials)
    assert "## Failed trials" in open(report.write_report(directory)).read()


def test_a_directory_with_another_search_is_refused_and_untouched(tmp_path):
    directory = str(tmp_path / "search")
    os.makedirs(directory)
    spec = _directory.search_spec("adding", ("NP",), sizes=TINY)
    with open(os.path.join(directory, _directory.SPEC_FILE), "w") as f:
        json.dump(spec, f)
    listing = sorted(os.listdir(directory))
    with pytest.raises(ValueError, match="holds a different search .*cells"):
        _directory.open_search(directory, cells=("GRU",))
    with pytest.raises(ValueError, match="different search .*sizes.length"):
        kgates.tune(directory, sizes={"length": 9})
    with pytest.raises(ValueError, match="different search .*task"):
        kgates.tune(directory, task="copy")
    assert sorted(os.listdir(directory)) == listing
    assert json.load(open(os.path.join(directory, _directory.SPEC_FILE))) == spec
    # Options not given come from the directory; the budget may change.
    assert _directory.open_search(directory, max_trials=20) == {**spec, "max_trials": 20}
    assert _directory.open_search(directory, cells=["NP"], sizes={"length": 8}) == spec

    other = tmp_path / "photos"
    other.mkdir()
    (other / "cat.jpg").write_bytes(b"\xff\xd8")
    with pytest.raises(ValueError, match="not empty and holds no kgates search"):
        kgates.tune(str(other), sizes=TINY)
    assert os.listdir(other) == ["cat.jpg"]


@pytest.mark.once
@pytest.mark.parametrize("tuner", ["bayesian", "hyperband"])
def test_other_tuners_keep_to_the_trial_budget(tmp_path, tuner):
    directory = str(tmp_path / tuner)
    search = kgates.tune(
        directory,
        tuner=tuner,
        cells=("NP", "GRU"),
        max_trials=2,
        epochs=2,
        sizes=TINY,
        space={"units": 4, "layers": 1},
        gate_freq=0,
        verbose=0,
    )
    assert type(search).__name__ == {"bayesian": "GateBayesianOptimization"}.get(
        tuner, "GateHyperband"
    )
    trials = report.load_trials(directory)
    assert len(trials) == 2 and all(report.completed(t) for t in trials)


def _first_trials(directory, seed, count=6):
    spec = _directory.open_search(
        directory, cells=_directory.DEFAULT_CELLS, seed=seed, sizes=TINY, max_trials=count
    )
    task = kgates.make_task(spec["task"], spec["seed"], **spec["sizes"])
    hypermodel = kgates.GateHyperModel(task, spec["cells"], spec["seed"], **spec["space"])
    tuner = _search.make_tuner(hypermodel, spec, 1, directory)
    drawn = []
    for k in range(count):
        trial = tuner.oracle.create_trial(f"tuner{k}")
        drawn.append(dict(trial.hyperparameters.values))
    return drawn


@pytest.mark.once
@pytest.mark.parametrize("seed", [0, 7])
def test_the_same_seed_draws_the_same_trials_and_every_cell_in_turn(tmp_path, seed):
    first = _first_trials(str(tmp_path / "a"), seed)
    assert first == _first_trials(str(tmp_path / "b"), seed)
    cells = [values["cell"] for values in first]
    assert cells == [*_directory.DEFAULT_CELLS, *_directory.DEFAULT_CELLS[:2]]
    assert first != _first_trials(str(tmp_path / "c"), seed + 1)


def test_a_directory_being_written_is_refused_and_untouched(tmp_path):
    directory = str(tmp_path / "search")
    with _directory.writer_lock(directory):
        with pytest.raises(ValueError, match="in use by another kgates tune"):
            kgates.tune(directory, sizes=TINY, max_trials=1, epochs=1, verbose=0)
        assert os.listdir(directory) == ["kgates.lock"]
    # a lock left behind by a killed run does not count as content
    assert _directory.open_search(directory)["task"] == "adding"


@pytest.mark.once
def test_a_paired_search_runs_every_cell_on_the_same_configurations(tmp_path):
    directory = str(tmp_path / "search")
    kgates.tune(
        directory,
        cells=("NP", "GRU"),
        tuner="paired",
        margin=0.5,
        max_trials=6,
        epochs=1,
        sizes=TINY,
        space={"units": (4, 8), "layers": 1},
        gate_freq=0,
        verbose=0,
    )
    trials = sorted(report.load_trials(directory), key=lambda t: int(t["id"]))
    assert [t["values"]["cell"] for t in trials] == ["NP", "GRU"] * 3
    shared = ("learning_rate", "units", "dropout", "clipnorm")
    for first, second in zip(trials[::2], trials[1::2]):  # one configuration, two cells
        assert {k: first["values"][k] for k in shared} == {k: second["values"][k] for k in shared}
    rates = [t["values"]["learning_rate"] for t in trials[::2]]
    assert len(set(rates)) == 3 and all(3e-4 <= r <= 3e-2 for r in rates)
    text = open(report.write_report(directory)).read()
    assert "### Paired: the same configurations and weight seeds as NP" in text
    assert "no worse than NP by 0.5?" in text  # the margin given with the search
    assert "| GRU" in text.split("### Paired")[1]


def test_a_paired_searchs_weight_seeds_do_not_depend_on_who_runs_the_trials(tmp_path):
    # A worker reaches the oracle only through Keras Tuner's gRPC client, which has
    # none of PairedOracle's own methods: the seeds must come from the tuner alone.
    task = kgates.make_task("adding", 0, **TINY)
    hypermodel = kgates.GateHyperModel(task, cells=("V", "NP", "GRU"), seed=3, units=4)
    search = _search.TUNERS["paired"](
        hypermodel=hypermodel, objective="val_loss", max_trials=6, seed=1,
        directory=str(tmp_path), project_name="search",
    )  # fmt: skip
    search.oracle = types.SimpleNamespace()  # a client: the oracle's own methods are gone
    seeds = [search.weight_seed(types.SimpleNamespace(trial_id=f"{k:02d}")) for k in range(6)]
    assert seeds == [3 * 10007] * 3 + [3 * 10007 + 1] * 3


def test_each_trial_keeps_its_curves_and_the_test_score_of_its_best_epoch(tmp_path):
    directory = str(tmp_path / "copy")
    sizes = {"samples": 64, "delay": 4, "symbols": 2}
    search = kgates.tune(
        directory, task="copy", cells=("NP",), max_trials=1, epochs=3, sizes=sizes,
        space={"units": 4, "layers": 1}, gate_freq=0, verbose=0, patience=3,
    )  # fmt: skip
    (trial,) = report.load_trials(directory)
    (curve,) = trial["curves"]
    assert len(curve["val_loss"]) == len(curve["test_loss"]) == 3
    best = int(np.argmin(curve["val_loss"]))  # validation chooses the epoch
    assert trial["score"] == pytest.approx(curve["val_loss"][best])
    assert trial["test"] == curve["test_loss"][best]
    # the same number from the weights Keras Tuner kept of that epoch
    task = kgates.make_task("copy", seed=0, **sizes)
    model = search.load_model(search.oracle.get_trial(trial["id"]))
    assert model.evaluate(task.x_test, task.y_test, verbose=0) == pytest.approx(
        trial["test"], rel=1e-4
    )
    assert "## Held-out test" in open(kgates.write_report(directory)).read()
    assert os.path.getsize(os.path.join(directory, "report", "learning_curves.png")) > 1000


def test_test_at_best_takes_the_epoch_validation_chose():
    from kgates.study._curves import test_at_best

    curves = [{"val_loss": [0.5, 0.2, float("nan"), 0.3], "test_loss": [0.6, 0.25, 9.0, 0.1]}]
    got = test_at_best(curves, keras_tuner.Objective("val_loss", "min"))
    assert (got["best_epoch"], got["test"]) == (1, 0.25)
    curves = [{"val_accuracy": [0.1, 0.9, 0.5], "test_accuracy": [0.2, 0.8, 0.6]},
              {"val_accuracy": [0.7, 0.3], "test_accuracy": [0.4, 0.9]}]  # fmt: skip
    got = test_at_best(curves, keras_tuner.Objective("val_accuracy", "max"))
    assert got["test"] == pytest.approx((0.8 + 0.4) / 2)  # mean over executions
    assert (
        test_at_best([{"val_loss": [0.1]}], keras_tuner.Objective("val_loss", "min"))["test"]
        is None
    )  # no test split


def test_test_scores_line_up_with_a_diverged_epoch():
    # An epoch whose validation loss is NaN still gets its test score (NaN or not), so
    # test_at_best reads the test score of the epoch validation chose.
    from kgates.study._curves import TestScores, test_at_best

    class Diverge(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                logs["val_loss"] = float("nan")

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 3)), rng.normal(size=(32, 1))
    task = types.SimpleNamespace(x_test=x[:8], y_test=y[:8])
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    history = model.fit(
        x, y, validation_data=(x, y), epochs=4, verbose=0, callbacks=[Diverge(), TestScores(task)]
    ).history
    assert len(history["test_loss"]) == len(history["val_loss"]) == 4
    got = test_at_best([history], keras_tuner.Objective("val_loss", "min"))
    best = int(np.nanargmin(history["val_loss"]))
    assert got["test"] == history["test_loss"][best]


@pytest.mark.once
def test_a_paired_search_with_every_option_fixed_compares_cells_over_seeds(tmp_path):
    directory = str(tmp_path / "search")
    space = {"units": 4, "layers": 1, "learning_rate": 1e-3, "dropout": 0.0, "clipnorm": 0.0}
    space |= {"forget_bias": "one", "reset_after": True}
    kgates.tune(
        directory, cells=("NP", "GRU"), tuner="paired", max_trials=4, epochs=1, sizes=TINY,
        space=space, gate_freq=0, verbose=0,
    )  # fmt: skip
    trials = sorted(report.load_trials(directory), key=lambda t: int(t["id"]))
    assert [t["values"]["cell"] for t in trials] == ["NP", "GRU"] * 2
    seeds = []
    for t in trials:
        with open(os.path.join(directory, "search", f"trial_{t['id']}", "runs.jsonl")) as f:
            seeds.append(json.loads(f.readline())["weight_seed"])
    assert seeds[0] == seeds[1] != seeds[2] == seeds[3]
