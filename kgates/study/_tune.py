"""`kgates.tune`: run or resume a search over cells in its directory."""

from __future__ import annotations

import logging
import os
import threading
import time
from functools import partial

import keras
import keras_tuner

from kgates.inspect._callback import TensorBoard
from kgates.study._code import decode_text
from kgates.study._directory import (
    check_project,
    open_search,
    worker_gone,
    worker_lock,
    write_spec,
    writer_lock,
)
from kgates.study._hypermodel import GateHyperModel
from kgates.study._own_data import spec_task
from kgates.study._search import make_tuner, requeue_orphans, write_hparams_experiment


def tune(
    directory: str = "runs/kgates",
    task: str | None = None,
    cells=None,
    tuner: str | None = None,
    max_trials: int | None = None,
    epochs: int | None = None,
    seed: int | None = None,
    sizes: dict | None = None,
    space: dict | None = None,
    data: str | None = None,
    objective: str | None = None,
    margin: float | None = None,
    gate_freq: int = 1,
    patience: int = 3,
    verbose="auto",
) -> keras_tuner.Tuner:
    """Runs (or resumes) a search over cells in `directory`; see `kgates tune --help`.

    Args:
        directory: the search's directory; running again on it resumes.
        task, cells, tuner, max_trials, epochs, seed, sizes, space: what is
            searched (see `kgates tune --help`). Those left at None come from
            the search stored in `directory` when there is one, else from the
            defaults (`DEFAULTS`: the adding task, cells NP, GRU, CIFG and
            NFG, 8 random trials, the task's epochs and sizes, seed 0); a
            stored search must agree with those given, except `max_trials`.
        margin: the non-inferiority margin, in the objective's units, for the
            report's "no worse than V" verdicts (a paired search); it is fixed with
            the search, before any trial runs. Default: None (no verdicts).
        gate_freq: epochs between gate dashboards; 0 turns them off. Default: 1.
        patience: early stopping patience in epochs. Default: 3.
        verbose: Keras's `fit` verbosity. Default: "auto".

    Returns:
        The tuner, after the search (for `get_best_hyperparameters` and such).
    """
    spec = open_search(
        directory,
        task=task,
        cells=cells,
        tuner=tuner,
        max_trials=max_trials,
        epochs=epochs,
        seed=seed,
        sizes=sizes,
        space=space,
        data=data,
        objective=objective,
        margin=margin,
    )
    tuner_id = os.environ.get("KERASTUNER_TUNER_ID", "chief")
    chief = tuner_id.startswith("chief")
    if chief:  # workers reload nothing (the chief's oracle hands out the trials)
        check_project(directory)
    task_ = spec_task(spec)
    epochs = spec["epochs"] or task_.epochs
    if task_.x_train.shape[0] < 2:
        raise ValueError("the task needs at least 2 training samples.")
    hypermodel = GateHyperModel(task_, spec["cells"], spec["seed"], **spec["space"])
    callbacks = [  # checked before anything is written
        keras.callbacks.TerminateOnNaN(),
        keras.callbacks.EarlyStopping(task_.objective, patience=patience, mode=task_.direction),
        TensorBoard(
            os.path.join(directory, "logs"),
            probe=(task_.x_val[:64], task_.y_val[:64]),
            gate_freq=gate_freq,
            image_freq=max(1, (epochs - 1) // max(gate_freq, 1)),
            probe_text=decode_text if task_.name == "code" else None,  # the Gates tab's tokens
        ),
    ]
    # One writer per directory: a single process or a chief; workers write
    # only their trials, which the chief hands out.
    with writer_lock(directory) if chief else worker_lock(directory, tuner_id):
        if chief:  # the search is the chief's: a worker's options do not change it
            write_spec(directory, spec)
        search = make_tuner(hypermodel, spec, epochs, directory)
        if chief:
            logs = os.path.join(directory, "logs")
            write_hparams_experiment(logs, search.oracle.hyperparameters, task_)
        if "KERASTUNER_ORACLE_PORT" in os.environ and chief:
            _watch_workers(search.oracle, directory)
        logging.getLogger("tensorflow").setLevel(logging.ERROR)  # retracing notes
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


def _watch_workers(oracle, directory: str, every: float = 2.0) -> None:
    """Has the chief send a trial back to the queue when its worker is gone (killed,
    crashed: its lock is free), so that another worker runs it and the search ends."""

    def watch():
        while True:
            time.sleep(every)
            for worker, trial_id in requeue_orphans(oracle, partial(worker_gone, directory)):
                print(
                    f"[chief] {worker} is gone; trial {trial_id} goes to the next worker.",
                    flush=True,
                )

    threading.Thread(target=watch, name="kgates-worker-watch", daemon=True).start()
