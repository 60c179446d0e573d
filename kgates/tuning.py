"""Keras Tuner searches over cells and variants, with gate dashboards per trial.

A search lives in one directory:

- `kgates_search.json`: what is searched (task, sizes, cells, space, tuner,
  epochs, seed); a second run on the directory must ask for the same search;
- `search/`: the Keras Tuner project (oracle state, one `trial_*` folder per
  trial, with `runs.jsonl`, one line per time a tuner started the trial, and
  `gates.json`, the trial's final gate statistics);
- `logs/trial_*`: each trial's TensorBoard run (gate dashboards, Keras's
  logs) and its hyperparameters for the HParams dashboard.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import socket
import time

import keras
import keras_tuner
import numpy as np

from kgates.fused import GRU, LSTM
from kgates.lstm import VARIANTS
from kgates.tasks import Task, make_task, task_sizes
from kgates.tensorboard import TensorBoard

CELLS = (*VARIANTS, "GRU")
FORGET_BIASES = ("zero", "one", "chrono")
TUNERS = {
    "random": keras_tuner.RandomSearch,
    "bayesian": keras_tuner.BayesianOptimization,
    "hyperband": keras_tuner.Hyperband,
}
# The search space; every entry can be narrowed (`GateHyperModel` arguments,
# `kgates tune` flags). Tuples of two floats are ranges; others are choices.
SPACE = {
    "units": (32, 64, 128),
    "layers": (1, 2),
    "learning_rate": (3e-4, 3e-2),
    "dropout": (0.0, 0.3),
    "forget_bias": FORGET_BIASES,
    "clipnorm": (0.0, 1.0, 10.0),
    "reset_after": (True, False),
}
RANGES = ("learning_rate", "dropout")
DEFAULT_CELLS = ("NP", "GRU", "CIFG", "NFG")  # what `kgates tune` compares unless told
SPEC_FILE = "kgates_search.json"
PROJECT = "search"


def _has_forget_weights(cell: str) -> bool:
    """Whether an LSTM variant owns a forget gate whose bias can be set."""
    return cell in VARIANTS and cell not in ("NFG", "CIFG")


def check_space(cells, space: dict) -> tuple[tuple[str, ...], dict]:
    """Validates cell codes and search-space entries; returns them normalised."""
    if isinstance(cells, str):
        cells = cells.split(",")
    cells = tuple(c.strip() for c in cells)
    for cell in cells:
        if cell not in CELLS:
            raise ValueError(f"unknown cell {cell!r} in `cells`; expected codes from {CELLS}.")
    if not cells or len(set(cells)) != len(cells):
        raise ValueError(f"`cells` must be distinct codes from {CELLS}, got {cells}.")
    unknown = sorted(set(space) - set(SPACE))
    if unknown:
        raise ValueError(f"unknown search-space entry {unknown[0]!r}; expected {sorted(SPACE)}.")
    out = dict(SPACE)
    for name, value in space.items():
        value = tuple(value) if isinstance(value, (tuple, list)) else (value,)
        if not value:
            raise ValueError(f"`{name}` needs at least one value.")
        if name in RANGES:
            if len(value) > 2 or not all(isinstance(v, (int, float)) for v in value):
                raise ValueError(f"`{name}` must be a value or a (low, high) range, got {value}.")
            low, high = float(value[0]), float(value[-1])
            ok = 0 < low <= high if name == "learning_rate" else 0 <= low <= high < 1
            if not ok:
                bounds = "0 < low <= high" if name == "learning_rate" else "0 <= low <= high < 1"
                raise ValueError(f"`{name}` must satisfy {bounds}, got {value}.")
            value = (low, high)
        elif name == "forget_bias":
            if not set(value) <= set(FORGET_BIASES):
                raise ValueError(f"`forget_bias` values must be from {FORGET_BIASES}, got {value}.")
        elif name == "reset_after":
            if not all(isinstance(v, bool) for v in value):
                raise ValueError(f"`reset_after` values must be True or False, got {value}.")
        elif name in ("units", "layers"):
            if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value):
                raise ValueError(f"`{name}` values must be positive integers, got {value}.")
        elif name == "clipnorm":
            if not all(isinstance(v, (int, float)) and v >= 0 for v in value):
                raise ValueError(f"`clipnorm` values must be >= 0 (0: none), got {value}.")
            value = tuple(float(v) for v in value)
        out[name] = value if name in RANGES else tuple(dict.fromkeys(value))
    return cells, out


def set_chrono_bias(cell, timescale: int, seed: int = 0) -> None:
    """Chrono initialisation (Tallec & Ollivier 2018) of a built LSTM cell's bias.

    b_f = log(u), u ~ U(1, timescale - 1), and b_i = -b_f, so that units start
    with forget times spread up to `timescale` steps.
    """
    units = cell.units
    bias = keras.ops.convert_to_numpy(cell.bias).copy()
    rng = np.random.default_rng(seed)
    b_f = np.log(rng.uniform(1.0, max(timescale - 1.0, 1.0 + 1e-6), units))
    gates = list(cell.weighted_gates)
    bias[gates.index("f") * units : (gates.index("f") + 1) * units] = b_f
    if "i" in gates:
        bias[gates.index("i") * units : (gates.index("i") + 1) * units] = -b_f
    cell.bias.assign(bias)


class GateHyperModel(keras_tuner.HyperModel):
    """A Keras Tuner hypermodel over kgates cells for one `kgates.tasks.Task`.

    The model is `[Embedding] -> recurrent layers -> head`; the recurrent
    layers are `kgates.LSTM` (Greff variant `cell`; NP runs Keras's fused
    kernel) or `kgates.GRU`. Hyperparameters: `cell`, `units`, `layers`,
    `learning_rate` (log scale), `dropout` (on each layer's inputs),
    `forget_bias` (`zero`, `one` = Keras's unit_forget_bias, `chrono`; LSTM
    cells with a forget gate only), `reset_after` (GRU only) and `clipnorm`
    of Adam (0: none).

    Args:
        task: the task (`kgates.tasks.make_task`).
        cells: cell codes to compare. Default: all (`CELLS`).
        seed: seed of the chrono initialisation. Default: 0.
        **space: narrow the search: a single value fixes an entry; a tuple
            lists the choices, or for `learning_rate` and `dropout` gives
            `(low, high)`. Defaults: `SPACE`.

    Example:

    >>> hypermodel = GateHyperModel(make_task("adding"), cells=("NP", "GRU"), units=64)
    """

    def __init__(self, task: Task, cells=CELLS, seed: int = 0, **space):
        super().__init__(name=f"kgates_{task.name}")
        self.task = task
        self.cells, self.space = check_space(cells, space)
        self.seed = seed

    def _choice(self, hp, name, values=None):
        values = self.space[name] if values is None else values
        if len(values) == 1:
            return hp.Fixed(name, values[0])
        return hp.Choice(name, list(values))

    def _range(self, hp, name, log=False):
        low, high = self.space[name]
        if low == high:
            return hp.Fixed(name, low)
        return hp.Float(name, low, high, sampling="log" if log else "linear")

    def build(self, hp) -> keras.Model:
        task = self.task
        cell = self._choice(hp, "cell", self.cells)
        units = self._choice(hp, "units")
        depth = self._choice(hp, "layers")
        learning_rate = self._range(hp, "learning_rate", log=True)
        dropout = self._range(hp, "dropout")
        clipnorm = self._choice(hp, "clipnorm")
        forget_cells = [c for c in self.cells if _has_forget_weights(c)]
        forget_bias = reset_after = None
        if forget_cells:
            with hp.conditional_scope("cell", forget_cells):
                if cell in forget_cells:
                    forget_bias = self._choice(hp, "forget_bias")
        if "GRU" in self.cells:
            with hp.conditional_scope("cell", ["GRU"]):
                if cell == "GRU":  # hp.Boolean: a Choice would store True as 1
                    values = self.space["reset_after"]
                    reset_after = (
                        hp.Fixed("reset_after", values[0])
                        if len(values) == 1
                        else hp.Boolean("reset_after", default=True)
                    )

        inputs = keras.Input(task.x_train.shape[1:], dtype=str(task.x_train.dtype), name="x")
        x = inputs
        if task.vocabulary:
            x = keras.layers.Embedding(task.vocabulary, 32, name="embedding")(x)
        recurrent = []
        for k in range(depth):
            options = {
                "return_sequences": task.sequence_output or k < depth - 1,
                "dropout": dropout,
                "name": f"{cell.lower()}_{k}",
            }
            if cell == "GRU":
                layer = GRU(units, reset_after=reset_after, **options)
            else:
                layer = LSTM(units, variant=cell, unit_forget_bias=forget_bias == "one", **options)
            x = layer(x)
            recurrent.append(layer)
        model = keras.Model(inputs, task.head(x), name=f"{cell.lower()}_{task.name}")
        if forget_bias == "chrono":
            for k, layer in enumerate(recurrent):
                set_chrono_bias(layer.cell, task.timescale, self.seed + k)
        optimizer = keras.optimizers.Adam(learning_rate, clipnorm=clipnorm or None)
        model.compile(optimizer=optimizer, loss=task.loss(), metrics=task.metrics())
        return model

    def fit(self, hp, model, *args, **kwargs):
        history = model.fit(*args, **kwargs)
        losses = history.history.get("loss", [])
        if any(not math.isfinite(v) for v in losses):
            epoch = next(k for k, v in enumerate(losses) if not math.isfinite(v))
            raise keras_tuner.errors.FailedTrialError(
                f"diverged: the training loss was {losses[epoch]} at epoch {epoch + 1}."
            )
        return history


def hparams_summary(hyperparameters, trial_id: str):
    """The HParams plugin's session summary of one trial (no TensorFlow needed)."""
    from tensorboard.plugins.hparams import summary_v2 as hparams

    values = {
        hparams.HParam(name): (value if isinstance(value, (bool, int, float, str)) else str(value))
        for name, value in hyperparameters.values.items()
        if hyperparameters.is_active(name) and not name.startswith("tuner/")
    }
    return hparams.hparams_pb(values, trial_id=trial_id)


def write_hparams_experiment(logdir: str, hyperparameters, task: Task) -> None:
    """The HParams dashboard's columns: the searched hyperparameters and the task's metrics.

    Without it TensorBoard would offer every scalar (each gate's saturation...)
    as a metric. Written once, at the root of the trials' runs.
    """
    from tensorboard.plugins.hparams import summary_v2 as hparams

    from kgates.summary import EventWriter

    if os.path.isdir(logdir) and any(n.startswith("events.") for n in os.listdir(logdir)):
        return
    columns = [hparams.HParam(hp.name) for hp in hyperparameters.space]
    metrics = [hparams.Metric("epoch_loss", group="validation", display_name="val loss")]
    metrics.append(hparams.Metric("epoch_loss", group="train", display_name="train loss"))
    if task.metric != "loss":
        name = f"val {task.metric}"
        metrics.insert(
            0, hparams.Metric(f"epoch_{task.metric}", group="validation", display_name=name)
        )
    writer = EventWriter(logdir)
    writer.summary(hparams.hparams_config_pb(columns, metrics), 0)
    writer.close()


def _search_class(base):
    class GateSearch(base):
        """Keras Tuner's `base` tuner, with kgates logging for every trial."""

        def __init__(self, *args, seed: int = 0, **kwargs):
            self._boards = {}
            self._seed = seed
            super().__init__(*args, seed=seed, **kwargs)

        def _configure_tensorboard_dir(self, callbacks, trial, execution=0):
            # Keras Tuner does this on TensorFlow only (with tf.summary): here
            # every backend gets per-trial runs and HParams.
            from kgates.summary import EventWriter

            for callback in callbacks:
                if isinstance(callback, keras.callbacks.TensorBoard):
                    suffix = f"_{execution}" if execution else ""
                    logdir = os.path.join(str(callback.log_dir), f"trial_{trial.trial_id}{suffix}")
                    # Left by an interrupted run of this trial, which restarts from scratch.
                    shutil.rmtree(logdir, ignore_errors=True)
                    callback.log_dir = logdir
                    writer = EventWriter(logdir)
                    writer.summary(hparams_summary(trial.hyperparameters, trial.trial_id), 0)
                    writer.close()
                    self._boards[trial.trial_id] = callback

        def run_trial(self, trial, *args, **kwargs):
            keras.utils.set_random_seed(self._seed * 10007 + int(trial.trial_id))
            return super().run_trial(trial, *args, **kwargs)

        def on_trial_begin(self, trial):
            super().on_trial_begin(trial)
            record = {"tuner": self.tuner_id, "host": socket.gethostname(), "pid": os.getpid()}
            record["start"] = time.time()
            with open(os.path.join(self.get_trial_dir(trial.trial_id), "runs.jsonl"), "a") as f:
                f.write(json.dumps(record) + "\n")
            shown = ", ".join(
                f"{k}={_short(v)}"
                for k, v in trial.hyperparameters.values.items()
                if trial.hyperparameters.is_active(k) and not k.startswith("tuner/")
            )
            print(f"[{self.tuner_id}] trial {trial.trial_id}: {shown}", flush=True)

        def on_trial_end(self, trial):
            board = self._boards.pop(trial.trial_id, None)
            stats = getattr(board, "gate_stats", None) or {}
            path = os.path.join(self.get_trial_dir(trial.trial_id), "gates.json")
            with open(path, "w") as f:
                json.dump(stats, f)
            status = trial.status
            detail = ""
            if status != "COMPLETED" and trial.message:
                detail = ": " + trial.message.strip().splitlines()[-1]
            print(f"[{self.tuner_id}] trial {trial.trial_id} {status}{detail}", flush=True)
            super().on_trial_end(trial)

    GateSearch.__name__ = GateSearch.__qualname__ = f"Gate{base.__name__}"
    return GateSearch


def _short(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def make_tuner(
    hypermodel: GateHyperModel,
    tuner: str = "random",
    max_trials: int = 8,
    epochs: int | None = None,
    seed: int = 0,
    directory: str = "runs/kgates",
) -> keras_tuner.Tuner:
    """A Keras Tuner tuner of kind `tuner` over `hypermodel`, in `directory/search`.

    Hyperband uses `epochs` as its `max_epochs` and stops after `max_trials`.
    """
    if tuner not in TUNERS:
        raise ValueError(f"unknown tuner {tuner!r}; expected one of {', '.join(TUNERS)}.")
    task = hypermodel.task
    objective = keras_tuner.Objective(task.objective, task.direction)
    common = {
        "hypermodel": hypermodel,
        "objective": objective,
        "seed": seed,
        "directory": directory,
        "project_name": PROJECT,
        "max_consecutive_failed_trials": 10,
    }
    if tuner == "hyperband":
        search = _search_class(TUNERS[tuner])(max_epochs=epochs or task.epochs, **common)
        search.oracle.max_trials = max_trials  # Hyperband has no trial budget of its own
    else:
        search = _search_class(TUNERS[tuner])(max_trials=max_trials, **common)
    return search


def search_spec(
    task: str = "adding",
    cells=DEFAULT_CELLS,
    tuner: str = "random",
    max_trials: int = 8,
    epochs: int | None = None,
    seed: int = 0,
    sizes: dict | None = None,
    space: dict | None = None,
) -> dict:
    """What defines a search, validated and normalised (what `kgates_search.json` holds)."""
    known = task_sizes(task)  # raises on an unknown task
    sizes = {**known, **(sizes or {})}
    for key in set(sizes) - set(known):
        raise ValueError(f"task {task!r} has no size option {key!r} (it has: {', '.join(known)}).")
    cells, full = check_space(cells, space or {})
    if tuner not in TUNERS:
        raise ValueError(f"unknown tuner {tuner!r}; expected one of {', '.join(TUNERS)}.")
    if epochs is not None and (
        isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1
    ):
        raise ValueError(f"`epochs` must be a positive integer, got {epochs!r}.")
    if tuner == "hyperband" and epochs is not None and epochs < 2:
        raise ValueError("the hyperband tuner needs `epochs` (its max_epochs) >= 2.")
    if isinstance(max_trials, bool) or not isinstance(max_trials, int) or max_trials < 1:
        raise ValueError(f"`max_trials` must be a positive integer, got {max_trials!r}.")
    space = {k: list(v) for k, v in full.items()}
    return {
        "task": task,
        "sizes": sizes,
        "cells": list(cells),
        "space": space,
        "tuner": tuner,
        "max_trials": max_trials,
        "epochs": epochs,
        "seed": seed,
    }


def _lookup(spec: dict, key: str):
    """`spec["sizes"]["length"]` for the key `"sizes.length"`."""
    for part in key.split("."):
        spec = spec.get(part) if isinstance(spec, dict) else None
    return spec


def open_search(directory: str, asked: dict, given: set[str]) -> dict:
    """The search `directory` holds, checked against what the user asked for.

    `asked` is a full spec (from `search_spec`). Only the options in `given`
    (those the user actually passed; `"sizes.length"` names one entry of a
    dict) must match a stored search; the rest come from it, except that the
    trial budget `max_trials` may change. A new directory gets `asked`.
    Nothing is written here.
    """
    path = os.path.join(directory, SPEC_FILE)
    if os.path.exists(path):
        with open(path) as f:
            stored = json.load(f)
        differences = [
            f"{key}: this directory has {_lookup(stored, key)!r}, asked for {_lookup(asked, key)!r}"
            for key in sorted(given - {"max_trials"})
            if _lookup(stored, key) != _lookup(asked, key)
        ]
        if differences:
            raise ValueError(
                f"{directory} holds a different search ({'; '.join(differences)}). "
                "Re-run with the same options (or none) to resume it, or pick a new directory."
            )
        if "max_trials" in given:
            stored["max_trials"] = asked["max_trials"]
        return stored
    if os.path.isdir(directory) and os.listdir(directory):
        raise ValueError(
            f"{directory} is not empty and holds no kgates search ({SPEC_FILE}); "
            "pick a new or empty directory."
        )
    return asked


def stored_search(directory: str) -> dict | None:
    """The spec of the search in `directory`, or None."""
    path = os.path.join(directory, SPEC_FILE)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def _write_spec(directory: str, spec: dict) -> None:
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, SPEC_FILE)
    temporary = path + ".tmp"
    with open(temporary, "w") as f:
        json.dump(spec, f, indent=1)
    os.replace(temporary, path)  # never a half-written spec


def tune(
    directory: str = "runs/kgates",
    task: str = "adding",
    cells=DEFAULT_CELLS,
    tuner: str = "random",
    max_trials: int = 8,
    epochs: int | None = None,
    seed: int = 0,
    sizes: dict | None = None,
    space: dict | None = None,
    gate_freq: int = 1,
    patience: int = 3,
    given: set[str] | None = None,
    verbose="auto",
) -> keras_tuner.Tuner:
    """Runs (or resumes) a search over cells in `directory`; see `kgates tune --help`.

    Args:
        directory: the search's directory; running again on it resumes.
        task, sizes: the task (`kgates.tasks.TASKS`) and its size options.
        cells: cell codes to compare (Greff variants, `GRU`).
        tuner: `"random"`, `"bayesian"` or `"hyperband"`.
        max_trials: total trials of the search (may grow when resuming).
        epochs: epochs per trial (Hyperband: the most). Default: the task's.
        seed: seed of the data, the tuner and each trial's initialisation.
        space: narrowed search-space entries (see `GateHyperModel`).
        gate_freq: epochs between gate dashboards; 0 turns them off.
        patience: early stopping patience in epochs.
        given: for resuming, the options the caller set explicitly (they must
            match the stored search; the others are read from it; see
            `open_search`). Default: all of them.
        verbose: Keras's `fit` verbosity.

    Returns:
        The tuner, after the search (for `get_best_hyperparameters` and such).
    """
    stored = stored_search(directory)
    if given is not None and "task" not in given and stored:
        task = stored["task"]  # so that size options are read as the stored task's
    asked = search_spec(task, cells, tuner, max_trials, epochs, seed, sizes, space)
    if given is None:
        given = set(asked)
    spec = open_search(directory, asked, given)
    task_ = make_task(spec["task"], spec["seed"], **spec["sizes"])
    epochs = spec["epochs"] or task_.epochs
    if task_.x_train.shape[0] < 2:
        raise ValueError("the task needs at least 2 training samples.")
    hypermodel = GateHyperModel(task_, spec["cells"], spec["seed"], **spec["space"])
    _write_spec(directory, spec)
    search = make_tuner(
        hypermodel, spec["tuner"], spec["max_trials"], epochs, spec["seed"], directory
    )
    callbacks = [
        keras.callbacks.TerminateOnNaN(),
        keras.callbacks.EarlyStopping(task_.objective, patience=patience, mode=task_.direction),
        TensorBoard(
            os.path.join(directory, "logs"),
            probe=(task_.x_val[:64], task_.y_val[:64]),
            gate_freq=gate_freq,
            image_freq=max(1, (epochs - 1) // max(gate_freq, 1)),
        ),
    ]
    if os.environ.get("KERASTUNER_TUNER_ID", "chief").startswith("chief"):
        write_hparams_experiment(
            os.path.join(directory, "logs"), search.oracle.hyperparameters, task_
        )
    logging.getLogger("tensorflow").setLevel(logging.ERROR)  # retracing notes, one per trial
    search.search(
        task_.x_train,
        task_.y_train,
        validation_data=(task_.x_val, task_.y_val),
        epochs=epochs,
        batch_size=64,
        callbacks=callbacks,
        verbose=verbose,
    )
    return search
