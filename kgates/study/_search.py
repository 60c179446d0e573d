"""Keras Tuner searches with gate dashboards per trial: one small class per algorithm."""

from __future__ import annotations

import json
import os
import shutil
import socket
import time

import keras
import keras_tuner

from kgates.inspect._events import EventWriter
from kgates.study._curves import TestScores, test_at_best
from kgates.study._directory import PROJECT, TUNER_NAMES, atomic_write
from kgates.study._hypermodel import GateHyperModel
from kgates.study._interrupt import DeferredInterrupt
from kgates.study._oracles import BayesianOracle, CellsInTurnOracle, HyperbandOracle, PairedOracle
from kgates.study._tasks import Task


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

    if os.path.isdir(logdir) and any(n.startswith("events.") for n in os.listdir(logdir)):
        return
    columns = [hparams.HParam(hp.name, _domain(hp, hparams)) for hp in hyperparameters.space]
    metrics = [hparams.Metric("score", display_name=f"score: best {task.objective}")]
    metrics.append(hparams.Metric("epoch_loss", group="validation", display_name="val loss"))
    metrics.append(hparams.Metric("epoch_loss", group="train", display_name="train loss"))
    if task.metric != "loss":
        name = f"val {task.metric}"
        metrics.insert(
            1, hparams.Metric(f"epoch_{task.metric}", group="validation", display_name=name)
        )
    writer = EventWriter(logdir)
    writer.summary(hparams.hparams_config_pb(columns, metrics), 0)
    writer.close()


def _domain(hp, hparams):
    """A Keras Tuner hyperparameter's type and range, as the HParams dashboard wants
    them (its parallel-coordinates and scatter views need typed columns)."""
    kind = type(hp).__name__
    if kind == "Float":
        return hparams.RealInterval(float(hp.min_value), float(hp.max_value))
    if kind == "Int":
        return hparams.IntInterval(int(hp.min_value), int(hp.max_value))
    if kind == "Boolean":
        return hparams.Discrete([False, True])
    if kind == "Choice":
        return hparams.Discrete(list(hp.values))
    if kind == "Fixed":
        return hparams.Discrete([hp.value])
    return None


def run_name(trial_id: str, values: dict) -> str:
    """A trial's TensorBoard run: its folder name says the cell, e.g. `trial_3-GRU`."""
    cell = values.get("cell")
    return f"trial_{trial_id}-{cell}" if cell else f"trial_{trial_id}"


class _GateSearch:
    """What every kgates search adds to its Keras Tuner tuner: per-trial TensorBoard
    runs with HParams on every backend, a seed per trial, a record of each run of a
    trial (`runs.jsonl`), its gate statistics (`gates.json`), its learning curves with
    the held-out test split's scores (`curves.json`) and progress lines. Its
    oracle (`oracle_class`, built from the keyword arguments other than the tuner's)
    writes the search's files whole."""

    oracle_class: type = CellsInTurnOracle

    def __init__(self, hypermodel, directory: str, project_name: str, **oracle_args):
        self._boards = {}
        self._started = {}
        self._durations = []  # of the trials this process ran
        oracle = self.oracle_class(**oracle_args)
        # Keras Tuner's own subclasses only build their oracle: Tuner does the rest.
        keras_tuner.Tuner.__init__(
            self, oracle, hypermodel, directory=directory, project_name=project_name
        )

    def save(self):
        if not self._is_worker():
            self.oracle.save()
        atomic_write(self._get_tuner_fname(), json.dumps(self.get_state()), self.project_dir)

    def _configure_tensorboard_dir(self, callbacks, trial, execution=0):
        # Keras Tuner does this on TensorFlow only (with tf.summary): here
        # every backend gets per-trial runs and HParams.
        for callback in callbacks:
            if isinstance(callback, keras.callbacks.TensorBoard):
                suffix = f"_{execution}" if execution else ""
                run = f"{run_name(trial.trial_id, trial.hyperparameters.values)}{suffix}"
                logdir = os.path.join(str(callback.log_dir), run)
                # Left by an interrupted run of this trial, which restarts from scratch.
                shutil.rmtree(logdir, ignore_errors=True)
                callback.log_dir = logdir
                writer = EventWriter(logdir)
                writer.summary(hparams_summary(trial.hyperparameters, trial.trial_id), 0)
                writer.close()
                self._boards[trial.trial_id] = callback

    def _get_tuner_fname(self):
        # Keras Tuner names its state file after the tuner id ("tuner0" alone,
        # "chief" with workers; a chief never writes its own) and reloads the
        # search only when that file exists: a search resumed in the other mode
        # started over. The directory is the search, whichever mode wrote it: a
        # single process and a chief share one file (written by `make_tuner`).
        if self._is_worker():
            return super()._get_tuner_fname()
        return os.path.join(self.project_dir, "tuner0.json")

    def weight_seed(self, trial) -> int:
        """The seed of trial's initial weights, data order and dropout."""
        return self.hypermodel.seed * 10007 + self.weight_index(trial)

    def weight_index(self, trial) -> int:
        """Which of the search's seeds `trial` gets: its own."""
        return int(trial.trial_id)

    def run_trial(self, trial, *args, **kwargs):
        keras.utils.set_random_seed(self.weight_seed(trial))
        task = self.hypermodel.task
        interrupt = DeferredInterrupt()  # Ctrl-C: at a batch's end, not inside an op
        kwargs["callbacks"] = [interrupt, *kwargs.get("callbacks", [])]
        if task.x_test is not None:  # first, so that every later callback sees it
            kwargs["callbacks"] = [TestScores(task), *kwargs["callbacks"]]
        try:
            with interrupt:
                histories = super().run_trial(trial, *args, **kwargs)
            curves = [getattr(h, "history", {}) for h in histories]
            path = os.path.join(self.get_trial_dir(trial.trial_id), "curves.json")
            curves = test_at_best(curves, self.oracle.objective)
            atomic_write(path, json.dumps(curves), self.project_dir)
            return histories
        except OSError as error:
            # Disk full, permissions...: the trial's files could not be written. Keras
            # Tuner would fail the trial for good; it is the machine, not the model:
            # stop, and leave the trial to run again when the search is resumed.
            raise keras_tuner.errors.FatalError(
                f"trial {trial.trial_id} could not write its files ({error}); fix that "
                "and run the same command again: the trial will run again."
            ) from error

    def on_trial_begin(self, trial):
        super().on_trial_begin(trial)
        record = {"tuner": self.tuner_id, "host": socket.gethostname(), "pid": os.getpid()}
        record["weight_seed"] = self.weight_seed(trial)
        record["start"] = self._started[trial.trial_id] = time.time()
        with open(os.path.join(self.get_trial_dir(trial.trial_id), "runs.jsonl"), "a") as f:
            f.write(json.dumps(record) + "\n")
        shown = ", ".join(
            f"{k}={_short(v)}"
            for k, v in trial.hyperparameters.values.items()
            if trial.hyperparameters.is_active(k) and not k.startswith("tuner/")
        )
        where = f"{int(trial.trial_id) + 1} of {self.oracle.max_trials}"
        print(f"[{self.tuner_id}] trial {trial.trial_id}: {where}, {shown}", flush=True)

    def on_trial_end(self, trial):
        board = self._boards.pop(trial.trial_id, None)
        stats = getattr(board, "gate_stats", None) or {}
        path = os.path.join(self.get_trial_dir(trial.trial_id), "gates.json")
        atomic_write(path, json.dumps(stats), self.project_dir)
        status = trial.status
        detail = ""
        if status != "COMPLETED" and trial.message:
            detail = ": " + trial.message.strip().splitlines()[-1]
        took = time.time() - self._started.pop(trial.trial_id, time.time())
        self._durations.append(took)
        left = self.oracle.max_trials - int(trial.trial_id) - 1
        eta = f"; about {_duration(left * sum(self._durations) / len(self._durations))} left"
        print(
            f"[{self.tuner_id}] trial {trial.trial_id} {status}{detail} in {_duration(took)}"
            + (eta if left > 0 else ""),
            flush=True,
        )
        super().on_trial_end(trial)
        score = self.oracle.get_trial(trial.trial_id).score  # the best epoch's, as the report's
        if board is not None and score is not None:
            writer = EventWriter(str(board.log_dir))
            writer.scalar("score", score, 0)
            writer.close()


@keras_tuner.synchronized
def requeue_orphans(oracle, gone) -> list[tuple[str, str]]:
    """Sends the trials of workers that are `gone(tuner_id)` back to the queue, and
    forgets those workers, so that the next worker runs the trials and the chief
    can finish. Returns the (worker, trial id) pairs sent back."""
    sent = []
    for tuner_id in sorted(oracle.tuner_ids | set(oracle.ongoing_trials)):
        if not gone(tuner_id):
            continue
        trial = oracle.ongoing_trials.pop(tuner_id, None)
        oracle.tuner_ids.discard(tuner_id)
        if trial is not None:
            oracle._retry_queue.append(trial.trial_id)
            sent.append((tuner_id, trial.trial_id))
    if sent:
        oracle.save()
    return sent


def repair_stranded(oracle) -> list[str]:
    """Puts right what a cut between Keras Tuner's two files leaves; returns the ids
    of the trials that will run again. Called on resume by the one writer, which
    then saves the oracle.

    Keras Tuner writes a trial's `trial.json` before `oracle.json`. A kill between
    the two as a trial starts leaves it RUNNING but unknown to the oracle: it
    counts towards `max_trials`, yet nothing would run it (the search would say
    it is done). As a trial ends, `oracle.json` is written while the trial is
    still listed as running: a reload would run a finished trial again.
    """
    oracle._retry_queue[:] = [
        t for t in oracle._retry_queue if oracle.trials[t].status in ("RUNNING", "INVALID")
    ]
    known = set(oracle._retry_queue) | {t.trial_id for t in oracle.ongoing_trials.values()}
    stranded = [
        trial_id
        for trial_id, trial in sorted(oracle.trials.items())
        if trial.status == "RUNNING" and trial_id not in known
    ]
    for trial_id in stranded:
        oracle._record_values(oracle.trials[trial_id])
        oracle._retry_queue.append(trial_id)
    return stranded  # the caller saves the oracle


class GateRandomSearch(_GateSearch, keras_tuner.Tuner):
    """Random search over kgates cells, each cell in turn (`CellsInTurnOracle`), with
    kgates's per-trial logging."""

    oracle_class = CellsInTurnOracle


class GatePairedSearch(GateRandomSearch):
    """Every cell on the same configurations and weight seeds (`PairedOracle`)."""

    oracle_class = PairedOracle

    def weight_index(self, trial) -> int:
        """One seed per configuration, shared by its cells. Trial k runs configuration
        k // cells (`PairedOracle`); worked out here, not asked of the oracle, which
        a worker only reaches through Keras Tuner's gRPC client."""
        return int(trial.trial_id) // len(self.hypermodel.cells)


class GateBayesianOptimization(_GateSearch, keras_tuner.BayesianOptimization):
    """`keras_tuner.BayesianOptimization` with kgates's per-trial logging."""

    oracle_class = BayesianOracle


class GateHyperband(_GateSearch, keras_tuner.Hyperband):
    """`keras_tuner.Hyperband` with kgates's per-trial logging."""

    oracle_class = HyperbandOracle


TUNERS = dict(
    zip(
        TUNER_NAMES,
        (GateRandomSearch, GateBayesianOptimization, GateHyperband, GatePairedSearch),
    )
)


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def _short(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def make_tuner(hypermodel: GateHyperModel, spec: dict, epochs: int, directory: str):
    """The Keras Tuner tuner of `spec` (see `open_search`) over `hypermodel`, in
    `directory/search`. Hyperband uses `epochs` as its `max_epochs` and stops after
    the spec's `max_trials`."""
    tuner, max_trials = spec["tuner"], spec["max_trials"]
    # Keras Tuner reads a seed of 0 as "none" (`seed or random.randint(1, 10000)`):
    # seed + 1 makes every kgates seed, 0 included, reproducible.
    seed = spec["seed"] + 1
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
        search = TUNERS[tuner](max_epochs=epochs, **common)
        search.oracle.max_trials = max_trials  # Hyperband has no trial budget of its own
    else:
        search = TUNERS[tuner](max_trials=max_trials, **common)
    if not search._is_worker():
        for trial_id in repair_stranded(search.oracle):
            print(f"Trial {trial_id} was cut off as it started; it runs again.", flush=True)
        search.save()  # from now on, either mode reloads this search
    return search
