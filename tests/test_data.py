"""`kgates tune --data FILE.npz`: a search on a user's own arrays. What the arrays
mean is read from their shapes and types; the baselines are worked by hand; bad
files are named before anything is written; a resumed search keeps its data."""

import json
import math
import shutil

import keras_tuner
import numpy as np
import pytest

from kgates import cli, load_data, task_from_arrays
from kgates.study import _directory
from kgates.study._hypermodel import GateHyperModel


def _save(path, **arrays):
    np.savez(path, **arrays)
    return str(path)


def test_classes_per_sequence_score_accuracy_against_the_most_common_class():
    x = np.zeros((4, 6, 2))
    task = task_from_arrays(x, [0, 1, 1, 2], x, [1, 1, 0, 2])
    assert (task.outputs, task.sequence_output, task.objective, task.direction) == (
        3,
        False,
        "val_accuracy",
        "max",
    )
    # the most common training class is 1; two of the four validation labels are 1
    assert task.baselines == {"most common class": 0.5}


def test_classes_scored_by_their_loss_against_the_class_frequencies():
    x = np.zeros((4, 6, 2))
    task = task_from_arrays(x, [0, 1, 1, 2], x, [1, 1, 0, 2], objective="val_loss")
    # training counts 1, 2, 1, each + 1: shares 2/7, 3/7, 2/7; validation 1, 1, 0, 2
    expected = -(2 * math.log(3 / 7) + 2 * math.log(2 / 7)) / 4
    assert task.direction == "min"
    assert task.baselines["class frequencies"] == pytest.approx(expected, rel=1e-12)


def test_values_are_a_regression_against_the_training_mean():
    x = np.zeros((4, 6))  # one feature
    task = task_from_arrays(x, [1.0, 2.0, 3.0, 2.0], x[:2], [2.0, 4.0])
    assert task.x_train.shape == (4, 6, 1) and task.y_train.shape == (4, 1)
    assert (task.outputs, task.targets, task.objective) == (0, 1, "val_loss")
    assert task.baselines == {"always the mean": 2.0}  # mean 2: errors 0 and 2


def test_per_step_targets_tokens_and_vectors():
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 7, (10, 9))
    classes_at_the_end = task_from_arrays(tokens, tokens[:, -3:], tokens, tokens[:, -3:])
    assert classes_at_the_end.vocabulary == 7 and classes_at_the_end.x_train.dtype == "int32"
    assert classes_at_the_end.sequence_output and classes_at_the_end.answer == 3
    every_step = task_from_arrays(tokens, tokens, tokens, tokens)
    assert every_step.sequence_output and every_step.answer == 0
    x = rng.normal(size=(10, 9, 2))
    vectors = task_from_arrays(x, x[:, :, :1] * 2, x, x[:, :, :1] * 2)
    assert (vectors.sequence_output, vectors.answer, vectors.targets) == (True, 0, 1)
    two_values = task_from_arrays(x, x[:, -1], x, x[:, -1])
    assert (two_values.sequence_output, two_values.targets) == (False, 2)


@pytest.mark.parametrize("kind", ["classes", "class at the end", "values", "values per step"])
def test_the_model_built_for_the_data_trains_on_it(kind):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 7, 3)).astype("float32")
    y = {
        "classes": rng.integers(0, 4, 16),
        "class at the end": rng.integers(0, 4, (16, 2)),
        "values": rng.normal(size=(16, 2)),
        "values per step": rng.normal(size=(16, 7, 2)),
    }[kind]
    task = task_from_arrays(x, y, x, y)
    model = GateHyperModel(task, cells=("CIFG",), units=4, layers=1).build(
        keras_tuner.HyperParameters()
    )
    assert model.output_shape[1:-1] == y.shape[1:-1] if y.ndim == 3 else True
    history = model.fit(task.x_train, task.y_train, epochs=1, batch_size=8, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    predictions = model.predict(task.x_val, verbose=0)
    if task.outputs:  # logits for each class, at each scored step
        assert predictions.shape == (*task.y_val.shape, task.outputs)
    else:
        assert predictions.shape == task.y_val.shape


X, Y = np.ones((8, 5, 2)), np.ones(8)
GOOD = {"x_train": X, "y_train": Y, "x_val": X, "y_val": Y}


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"y_val": None}, "lacks y_val (it has: x_train, y_train, x_val)"),
        ({"y_train": Y[:-1]}, "x_train/y_train have 8 and 7 rows"),
        ({"x_val": X[:, :-1]}, "`x_val` has shape (8, 4, 2)"),
        ({"x_train": X * np.nan}, "`x_train` holds NaN"),
        ({"x_train": X[:, 0, 0]}, "`x_train` must be (samples, steps[, features])"),
        ({"y_train": Y.astype(int) - 2, "y_val": Y.astype(int)}, "labels in `y` must be >= 0"),
        ({"y_train": np.array(["a"] * 8)}, "`y_train` must hold numbers"),
        ({"x_train": X[:, :0], "x_val": X[:, :0]}, "must have no empty axis"),
        ({"y_train": np.ones((8, 0)), "y_val": np.ones((8, 0))}, "must have no empty axis"),
    ],
)
def test_a_bad_data_file_is_named_and_nothing_is_written(tmp_path, capsys, changes, match):
    arrays = {k: v for k, v in {**GOOD, **changes}.items() if v is not None}
    path = _save(tmp_path / "mine.npz", **arrays)
    directory = tmp_path / "search"
    code = cli.main(["tune", "--data", path, "--directory", str(directory)])
    err = capsys.readouterr().err
    assert code == 2 and match in err and len(err.strip().splitlines()) == 1, err
    assert path in err and not directory.exists()


@pytest.mark.parametrize(
    ("make", "options", "match"),
    [
        (None, [], "no such file"),
        ("text", [], "is not a NumPy .npz file"),
        ("npy", [], "is a single array"),
        ("objects", [], "Object arrays cannot be loaded"),
        ("good", ["--objective", "val_accuracy"], "`objective` must be one of val_loss for values"),
        ("good", ["--length", "5"], "`length` is a size of the built-in tasks"),
    ],
)
def test_a_file_that_is_not_data_or_options_that_do_not_apply(
    tmp_path, capsys, make, options, match
):
    path = tmp_path / "mine.npz"
    if make == "text":
        path.write_text("x,y\n1,2\n")
    elif make == "npy":
        with open(path, "wb") as f:
            np.save(f, X)
    elif make == "objects":
        np.savez(path, **{**GOOD, "x_train": np.array([None] * 8)})
    elif make == "good":
        np.savez(path, **GOOD)
    directory = tmp_path / "search"
    code = cli.main(["tune", "--data", str(path), *options, "--directory", str(directory)])
    err = capsys.readouterr().err
    assert code == 2 and match in err and len(err.strip().splitlines()) == 1, err
    assert not directory.exists()


def test_data_and_a_task_are_one_or_the_other(capsys):
    with pytest.raises(SystemExit) as exit:
        cli.main(["tune", "--task", "copy", "--data", "mine.npz"])
    assert exit.value.code == 2 and "not allowed with argument" in capsys.readouterr().err
    with pytest.raises(ValueError, match="`objective` applies to `data`"):
        _directory.search_spec("adding", objective="val_accuracy")


def test_the_file_may_name_its_objective(tmp_path):
    x, y = np.ones((8, 5, 2)), np.arange(8) % 3
    path = _save(
        tmp_path / "mine.npz", x_train=x, y_train=y, x_val=x, y_val=y, objective="val_loss"
    )
    assert load_data(path).objective == "val_loss"
    assert load_data(path, objective="val_accuracy").objective == "val_accuracy"


@pytest.mark.once
def test_a_search_on_a_data_file_resumes_and_keeps_to_its_data(tmp_path, capsys):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 6, 2)).astype("float32")
    y = (x[:, :, 0].sum(1) > 0).astype("int64")
    path = _save(tmp_path / "mine.npz", x_train=x[:40], y_train=y[:40], x_val=x[40:], y_val=y[40:])
    directory = str(tmp_path / "search")
    small = ["--units", "4", "--layers", "1", "--epochs", "1", "--verbose", "0"]
    code = cli.main(["tune", "--data", path, "--max-trials", "2", *small, "--directory", directory])
    assert code == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "2 trials in" in out and "val_accuracy (maximise)" in out
    spec = json.loads((tmp_path / "search" / _directory.SPEC_FILE).read_text())
    assert spec["task"] == "data" and spec["objective"] == "val_accuracy"
    runs = sorted(p.name for p in (tmp_path / "search" / "logs").iterdir() if p.is_dir())
    assert len(runs) == 2 and all(run.startswith("trial_") for run in runs)
    assert cli.main(["report", directory]) == 0
    report = (tmp_path / "search" / "report.md").read_text()
    majority = float(np.mean(y[40:] == np.bincount(y[:40]).argmax()))
    assert f"- most common class: {majority:.4g}" in report and str(path) in report

    # a moved file with the same bytes is the same data: one more trial
    moved = str(shutil.copy(path, tmp_path / "moved.npz"))
    code = cli.main(["tune", "--data", moved, "--max-trials", "3", "--directory", directory])
    assert code == 0 and "3 trials in" in capsys.readouterr().out

    # changed data is refused, with the search left as it was
    listing = sorted(str(p) for p in (tmp_path / "search").rglob("*"))
    np.savez(moved, x_train=x[:40], y_train=1 - y[:40], x_val=x[40:], y_val=y[40:])
    code = cli.main(["tune", "--max-trials", "4", "--directory", directory])
    err = capsys.readouterr().err
    assert code == 2 and "has changed since this search began" in err
    code = cli.main(["tune", "--data", path, "--objective", "val_loss", "--directory", directory])
    err = capsys.readouterr().err
    assert code == 2 and "objective: this directory has 'val_accuracy'" in err
    assert sorted(str(p) for p in (tmp_path / "search").rglob("*")) == listing
