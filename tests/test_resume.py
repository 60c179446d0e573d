"""A search outlives its processes: it resumes in either mode (alone, or as a chief
with workers), repairs a trial cut off between Keras Tuner's two files, sends a
dead worker's trial to another, and leaves a trial whose files could not be
written to run again."""

import json
import os
import socket
import threading
import time

import pytest

import kgates
from kgates import cli
from kgates.inspect._callback import TensorBoard
from kgates.study import _directory, _search
from kgates.study import _report as report

pytestmark = pytest.mark.once  # the search's bookkeeping; its models are tested elsewhere

TINY = {"samples": 64, "length": 8}
TINY_ARGS = ["--samples", "64", "--length", "8", "--units", "4", "--layers", "1"]


def _tuner(directory: str, max_trials: int, tuner: str = "random"):
    spec = _directory.open_search(directory, sizes=TINY, max_trials=max_trials, tuner=tuner)
    task = kgates.make_task(spec["task"], spec["seed"], **spec["sizes"])
    hypermodel = kgates.GateHyperModel(task, spec["cells"], spec["seed"], **spec["space"])
    _directory.write_spec(directory, spec)
    return _search.make_tuner(hypermodel, spec, 1, directory)


def _run_one(oracle, tuner_id: str) -> str:
    """What a tuner does with a trial, without the training: take it, report, end it."""
    trial = oracle.create_trial(tuner_id)
    assert trial.status == "RUNNING", trial.status
    oracle.update_trial(trial.trial_id, {"val_loss": 0.25}, step=0)
    trial.status = "COMPLETED"
    oracle.end_trial(trial)
    return trial.trial_id


def _as_chief(monkeypatch, on: bool) -> None:
    for name, value in [
        ("KERASTUNER_TUNER_ID", "chief"),
        ("KERASTUNER_ORACLE_IP", "127.0.0.1"),
        ("KERASTUNER_ORACLE_PORT", "1"),
    ]:
        if on:
            monkeypatch.setenv(name, value)
        else:
            monkeypatch.delenv(name, raising=False)


def test_a_search_resumes_whichever_mode_wrote_it(tmp_path, monkeypatch):
    directory = str(tmp_path / "search")
    _as_chief(monkeypatch, False)
    assert _run_one(_tuner(directory, 3).oracle, "tuner0") == "0"  # alone
    _as_chief(monkeypatch, True)
    chief = _tuner(directory, 3)
    assert sorted(chief.oracle.trials) == ["0"]  # the chief found it
    assert _run_one(chief.oracle, "worker-a") == "1"
    _as_chief(monkeypatch, False)
    alone = _tuner(directory, 3)
    assert sorted(alone.oracle.trials) == ["0", "1"]  # and alone again
    assert _run_one(alone.oracle, "tuner0") == "2"
    assert all(t.status == "COMPLETED" for t in alone.oracle.trials.values())


@pytest.mark.parametrize("tuner", ["random", "bayesian", "hyperband", "paired"])
def test_no_reader_ever_sees_a_search_file_half_written(tmp_path, monkeypatch, tuner):
    # Workers and copies read the search while the chief writes it (Keras Tuner
    # itself truncates, then writes, in place).
    directory = str(tmp_path / "search")
    _as_chief(monkeypatch, False)
    search = _tuner(directory, 2, tuner)
    trial = search.oracle.create_trial("tuner0")
    project = os.path.join(directory, "search")
    paths = [os.path.join(project, name) for name in ("oracle.json", "tuner0.json")]
    paths.append(os.path.join(project, f"trial_{trial.trial_id}", "trial.json"))
    damaged, done = [], threading.Event()

    def read():
        while not done.is_set():
            for path in paths:
                with open(path) as f:
                    text = f.read()
                try:
                    json.loads(text)
                except ValueError:
                    damaged.append(os.path.basename(path))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for _ in range(300):
            search.save()  # oracle.json and tuner0.json
            search.oracle._save_trial(trial)
    finally:
        done.set()
        reader.join()
    assert damaged == []


def test_a_trial_cut_off_between_keras_tuners_two_files_runs_again(tmp_path, monkeypatch):
    directory = str(tmp_path / "search")
    _as_chief(monkeypatch, False)
    oracle = _tuner(directory, 2).oracle
    _run_one(oracle, "tuner0")
    oracle_file = os.path.join(directory, "search", "oracle.json")
    before = open(oracle_file).read()
    stranded = oracle.create_trial("tuner0")  # writes trial_1/trial.json, then oracle.json
    with open(oracle_file, "w") as f:  # killed in between: oracle.json as it was
        f.write(before)
    with open(os.path.join(directory, "search", "trial_1", "trial.json")) as f:
        assert json.load(f)["status"] == "RUNNING"
    resumed = _tuner(directory, 2).oracle
    again = resumed.create_trial("tuner0")
    assert again.trial_id == "1" and again.status == "RUNNING"  # not STOPPED: it runs
    assert again.hyperparameters.values == stranded.hyperparameters.values


def test_a_trial_whose_files_cannot_be_written_stops_the_search_and_runs_again(
    tmp_path, monkeypatch, capsys
):
    directory = str(tmp_path / "search")
    _as_chief(monkeypatch, False)
    args = ["tune", "--directory", directory, *TINY_ARGS, "--max-trials", "2", "--epochs", "1"]
    args += ["--verbose", "0"]
    original = TensorBoard.on_epoch_end

    def disk_full(self, epoch, logs=None):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(TensorBoard, "on_epoch_end", disk_full)
    assert cli.main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "kgates tune: trial 0 could not write its files ([Errno 28] No space left on device); "
        "fix that and run the same command again: the trial will run again."
    ]
    monkeypatch.setattr(TensorBoard, "on_epoch_end", original)
    assert cli.main(args) == 0
    trials = report.load_trials(directory)
    assert [(t["id"], t["status"]) for t in trials] == [("0", "COMPLETED"), ("1", "COMPLETED")]
    runs = os.path.join(directory, "search", "trial_0", "runs.jsonl")
    assert len(open(runs).read().splitlines()) == 2  # cut off once, then run through


def test_a_worker_with_no_chief_listening_gives_up_with_a_message(tmp_path, monkeypatch, capsys):
    directory = str(tmp_path / "search")
    _directory.write_spec(directory, _directory.open_search(directory, sizes=TINY))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # free, and nothing listens
    monkeypatch.setattr(cli, "CHIEF_WAIT_S", 1)
    for name in ("KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT", "KERASTUNER_TUNER_ID"):
        monkeypatch.setenv(name, "")  # restored afterwards: the command sets them
    start = time.monotonic()
    code = cli.main(["tune", "--directory", directory, "--worker", f"127.0.0.1:{port}"])
    assert code == 2 and time.monotonic() - start < 30
    assert f"no chief answers at 127.0.0.1:{port} (waited 1 s)" in capsys.readouterr().err


def test_the_tasks_own_epochs_resume_a_search_stored_without_them(tmp_path):
    from kgates.study._directory import open_search, write_spec

    directory = str(tmp_path / "search")
    spec = open_search(directory)  # epochs None: the adding task's 10
    os.makedirs(directory)
    write_spec(directory, spec)
    assert open_search(directory, epochs=10)["epochs"] == 10
    with pytest.raises(ValueError, match="epochs: this directory has 10, asked for 11"):
        open_search(directory, epochs=11)
