"""`kgates tune` as users run it: separate processes, killed, resumed, distributed."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

import kgates
from kgates import cli
from kgates.study import _directory
from kgates.study import _report as report
from kgates.study._interrupt import DeferredInterrupt

TINY = ["--task", "adding", "--samples", "96", "--length", "8", "--units", "8", "--layers", "1"]


def _kgates(*args: str) -> list[str]:
    return [sys.executable, "-m", "kgates_cli", *args]


def _environment(**extra) -> dict:
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1", **extra}


def _runs(directory: str, trial_id: str) -> list[dict]:
    with open(os.path.join(directory, "search", f"trial_{trial_id}", "runs.jsonl")) as f:
        return [json.loads(line) for line in f]


@pytest.mark.processes
def test_sigkill_mid_trial_then_the_same_command_resumes(tmp_path):
    directory = str(tmp_path / "adding")
    command = _kgates(
        "tune", *TINY, "--cells", "NP,GRU", "--max-trials", "3", "--epochs", "10",
        "--patience", "10", "--gate-freq", "0", "--verbose", "2", "--directory", directory,
    )  # fmt: skip
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_environment()
    )
    lines = []
    for line in process.stdout:  # wait until trial 1 is training, then kill -9
        lines.append(line)
        if line.startswith("[tuner0] trial 1:"):
            for line in process.stdout:
                if line.startswith("Epoch 3/"):
                    break
            break
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert any("trial 0 COMPLETED" in line for line in lines), "".join(lines[-20:])
    first = open(os.path.join(directory, "search", "trial_0", "trial.json")).read()

    result = subprocess.run(
        _kgates("tune", "--directory", directory, "--verbose", "0"),
        capture_output=True, text=True, env=_environment(), timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    trials = report.load_trials(directory)
    assert [t["id"] for t in trials] == ["0", "1", "2"]
    assert all(t["status"] == "COMPLETED" for t in trials)
    # Trial 0 finished before the kill: kept, never run again. Trial 1 was
    # interrupted: started a second time, by the resumed search.
    assert open(os.path.join(directory, "search", "trial_0", "trial.json")).read() == first
    assert [len(_runs(directory, t)) for t in "012"] == [1, 2, 1]
    assert "trial 0:" not in result.stdout and "[tuner0] trial 1 COMPLETED" in result.stdout
    assert "3 trials in" in result.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.processes
def test_a_chief_and_workers_run_every_trial_once_and_a_dead_workers_again(tmp_path):
    # A chief and workers a and b; a is killed during its first trial, then c joins.
    # The chief sends a's trial to the next worker and finishes; every other trial
    # runs exactly once.
    directory = str(tmp_path / "shared")
    address = f"127.0.0.1:{_free_port()}"
    search = [*TINY, "--cells", "NP,GRU,CIFG", "--max-trials", "4", "--epochs", "2"]
    search += ["--gate-freq", "0", "--verbose", "0", "--directory", directory]

    def start(*args):
        return subprocess.Popen(
            _kgates("tune", *args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, env=_environment(),
        )  # fmt: skip

    def worker(name):
        return start("--directory", directory, "--worker", address, "--worker-id", name)

    processes = {"chief": start(*search, "--chief", address), "a": worker("a"), "b": worker("b")}
    outputs = {}
    try:
        killed = next(line for line in processes["a"].stdout if line.startswith("[a] trial "))
        processes["a"].send_signal(signal.SIGKILL)
        processes["c"] = worker("c")
        for name in ("b", "c", "chief"):  # the chief returned only when its workers did
            outputs[name] = processes[name].communicate(timeout=420)[0]
            assert processes[name].returncode == 0, f"{name}:\n{outputs[name][-3000:]}"
    finally:
        for process in processes.values():
            process.kill()
    cut = killed.split()[2].rstrip(":")
    assert f"[chief] a is gone; trial {cut} goes to the next worker." in outputs["chief"]
    trials = report.load_trials(directory)
    assert sorted(t["id"] for t in trials) == ["0", "1", "2", "3"]
    assert all(t["status"] == "COMPLETED" for t in trials)
    for t in trials:
        ran = [run["tuner"] for run in _runs(directory, t["id"])]
        assert ran[:-1] == (["a"] if t["id"] == cut else []), ran  # once, or a and then one
        assert ran[-1] in ("b", "c")  # the chief only serves
        assert f"[{ran[-1]}] trial {t['id']} COMPLETED" in outputs[ran[-1]]
    assert "4 trials in" in outputs["chief"]


def _tune(capsys, *args: str) -> tuple[int, str]:
    code = cli.main(["tune", *args])
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--cells", "NP,LSTM2"], "unknown cell 'LSTM2'"),
        (["--learning-rate", "0:1e-2"], "`learning_rate` must satisfy 0 < low"),
        (["--tuner", "hyperband", "--epochs", "1"], "hyperband tuner needs `epochs`"),
        (["--task", "digits", "--length", "5"], "no size option 'length'"),
        (["--task", "digits", "--samples", "10"], "its size is fixed"),
        (["--learning-rate", "inf"], "`learning_rate` must be finite"),
        (["--learning-rate", "1e-3:inf"], "`learning_rate` must be finite"),
        (["--clipnorm", "1,inf"], "`clipnorm` values must be >= 0"),
        (["--seed", "-1"], "`seed` must be an integer from 0 to 400000"),
        (["--seed", "400001"], "`seed` must be an integer from 0 to 400000"),
    ],
)
def test_bad_options_are_named_and_write_nothing(tmp_path, capsys, args, match):
    directory = tmp_path / "new"
    code, err = _tune(capsys, *args, "--directory", str(directory))
    assert code == 2 and match in err
    assert not directory.exists()


def test_a_directory_that_is_a_file_or_unwritable_is_named(tmp_path, capsys, monkeypatch):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    code, err = _tune(capsys, "--directory", str(a_file))
    assert code == 2
    assert err == f"kgates tune: `directory` {a_file} is a file; expected a directory.\n"
    code, err = _tune(capsys, "--directory", str(a_file / "search"))
    assert code == 2 and f"lies under a file, {a_file}" in err
    assert a_file.read_text() == "mine" and os.listdir(tmp_path) == ["notes.txt"]
    # a place this user cannot write (as root, every place is writable: ask the OS as it
    # would answer a user)
    monkeypatch.setattr(os, "access", lambda path, mode: path != str(tmp_path))
    code, err = _tune(capsys, "--directory", str(tmp_path / "search"))
    assert code == 2 and f"cannot write in {tmp_path} (permission denied)" in err
    assert os.listdir(tmp_path) == ["notes.txt"]


def test_a_chief_on_a_busy_port_is_refused_before_writing(tmp_path, capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        directory = tmp_path / "search"
        code, err = _tune(capsys, "--directory", str(directory), "--chief", f"127.0.0.1:{port}")
    assert code == 2 and err.startswith(f"kgates tune: --chief 127.0.0.1:{port}: ")
    assert len(err.splitlines()) == 1 and not directory.exists()


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["tune", "--gate-freq", "-1"], "argument --gate-freq: expected an integer >= 0"),
        (["tune", "--chief", "127.0.0.1:70000"], "argument --chief: expected HOST:PORT"),
        (["tune", "--worker", "localhost:x"], "argument --worker: expected HOST:PORT"),
        (["tune", "--worker-id", "../../x"], "argument --worker-id: expected letters"),
        (["tune", "--directory", ""], "argument --directory: expected a directory"),
        (["tune", "--reset-after", "maybe"], "argument --reset-after: expected true, false"),
        (["board", ".", "--port", "-1"], "argument --port: expected a port number"),
        (["board", ".", "--port", "65536"], "argument --port: expected a port number"),
        (["tune", "--margin", "0"], "argument --margin: expected a positive number"),
        (["tune", "--margin", "nan"], "argument --margin: expected a positive number"),
    ],
)
def test_bad_values_are_refused_by_the_parser(tmp_path, capsys, monkeypatch, args, match):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        cli.main(args)
    assert exit_.value.code == 2 and match in capsys.readouterr().err
    assert os.listdir(tmp_path) == []


def test_a_different_search_in_the_directory_is_refused(tmp_path, capsys):
    directory = tmp_path / "runs"
    directory.mkdir()
    spec = _directory.search_spec("adding", ("NP", "GRU"))
    (directory / _directory.SPEC_FILE).write_text(json.dumps(spec))
    code, err = _tune(capsys, "--directory", str(directory), "--cells", "NP,CIFG")
    assert code == 2 and "holds a different search" in err and "cells" in err
    code, err = _tune(capsys, "--directory", str(directory), "--task", "copy")
    assert code == 2 and "task: this directory has 'adding', asked for 'copy'" in err
    # the non-inferiority margin is fixed with the search: not chosen after the fact
    code, err = _tune(capsys, "--directory", str(directory), "--margin", "0.05")
    assert code == 2 and "margin: this directory has None, asked for 0.05" in err
    assert os.listdir(directory) == [_directory.SPEC_FILE]
    assert json.loads((directory / _directory.SPEC_FILE).read_text()) == spec


def test_unknown_task_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["tune", "--task", "sorting"])
    assert exit_.value.code == 2 and "invalid choice: 'sorting'" in capsys.readouterr().err


def test_report_of_a_directory_without_a_search(tmp_path, capsys):
    assert cli.main(["report", str(tmp_path)]) == 2
    assert "holds no kgates search" in capsys.readouterr().err


def test_worker_without_a_chief_gives_up_with_a_message(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cli, "CHIEF_WAIT_S", 1)
    for name in ("KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT", "KERASTUNER_TUNER_ID"):
        monkeypatch.setenv(name, "")  # restored afterwards: the command sets them
        monkeypatch.delenv(name)
    code, err = _tune(capsys, "--directory", str(tmp_path), "--worker", "127.0.0.1:1")
    assert code == 2 and "start the chief first" in err


HOLD_LOCK = """
import sys, time
from kgates.study._directory import writer_lock
with writer_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(600)
"""


@pytest.mark.processes
def test_a_second_writer_is_refused_until_the_first_dies(tmp_path):
    directory = str(tmp_path / "search")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, directory], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        second = subprocess.run(
            _kgates("tune", *TINY, "--max-trials", "1", "--directory", directory),
            capture_output=True, text=True, env=_environment(), timeout=300,
        )  # fmt: skip
        assert second.returncode == 2, second.stderr[-2000:]
        assert f"in use by another kgates tune (process {holder.pid})" in second.stderr
        assert sorted(os.listdir(directory)) == ["kgates.lock"]  # nothing else written
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with _directory.writer_lock(directory):  # the kernel released it with the process
        pass


def _small_search(directory):
    """A search directory as kgates tune leaves it, with one finished trial."""
    spec = _directory.search_spec("adding", ("NP",), sizes={"samples": 96, "length": 8})
    (directory / "search" / "trial_0").mkdir(parents=True)
    (directory / _directory.SPEC_FILE).write_text(json.dumps(spec))
    (directory / "search" / "oracle.json").write_text('{"ongoing_trials": {}, "tried_so_far": []}')
    trial = {
        "trial_id": "0",
        "hyperparameters": {"values": {"cell": "NP", "learning_rate": 1e-3}},
        "status": "COMPLETED",
        "score": 0.1,
    }
    (directory / "search" / "trial_0" / "trial.json").write_text(json.dumps(trial))
    (directory / "search" / "trial_0" / "gates.json").write_text("{}")


@pytest.mark.parametrize(
    ("damaged", "text"),
    [
        ("kgates_search.json", ""),
        ("kgates_search.json", '{"cells": ["NP"]}'),
        ("search/oracle.json", "{"),
        ("search/trial_0/trial.json", "[1, 2]"),
        ("search/trial_0/gates.json", "\x00\x01"),
    ],
)
def test_a_damaged_search_file_is_named_and_nothing_changes(tmp_path, capsys, damaged, text):
    directory = tmp_path / "search"
    _small_search(directory)
    (directory / damaged).write_text(text)
    listing = sorted(str(p) for p in directory.rglob("*"))
    command = ["report", str(directory)] if damaged.endswith("gates.json") else ["tune"]
    code = cli.main([*command, "--directory", str(directory)] if command == ["tune"] else command)
    err = capsys.readouterr().err
    assert code == 2 and str(directory / damaged) in err and "damaged" in err
    assert len(err.strip().splitlines()) == 1
    assert sorted(str(p) for p in directory.rglob("*")) == listing


@pytest.mark.processes
def test_ctrl_c_says_how_to_resume_in_one_line(tmp_path):
    directory = str(tmp_path / "adding")
    command = _kgates(
        "tune", *TINY, "--max-trials", "2", "--epochs", "500", "--patience", "500",
        "--gate-freq", "0", "--verbose", "2", "--directory", directory,
    )  # fmt: skip
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_environment(),
        # as from a terminal: a suite started in the background by a shell ignores
        # SIGINT, and its children inherit that (Python then raises no KeyboardInterrupt)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    # 500 epochs: the trial still trains when the signal comes, however fast the machine
    for line in process.stdout:  # wait until trial 0 trains, then Ctrl-C
        if line.startswith("Epoch 2/"):
            break
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err[-3000:]
    assert "Traceback" not in err
    assert f"interrupted; `kgates tune {' '.join(command[4:])}` resumes the search." in err


def test_report_writes_replace_planted_links_and_stay_inside(tmp_path, capsys):
    directory = tmp_path / "search"
    _small_search(directory)
    outside = tmp_path / "precious.txt"
    outside.write_text("keep me")
    (directory / "report.md").symlink_to(outside)
    assert cli.main(["report", str(directory)]) == 0
    assert outside.read_text() == "keep me"  # the link was replaced, not followed
    assert (
        not (directory / "report.md").is_symlink()
        and "# Search" in (directory / "report.md").read_text()
    )

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.rmtree(directory / "report")
    (directory / "report").symlink_to(elsewhere, target_is_directory=True)
    assert cli.main(["report", str(directory)]) == 2
    assert "leads outside" in capsys.readouterr().err
    assert list(elsewhere.iterdir()) == []


@pytest.fixture
def python_handles_ctrl_c():
    """SIGINT as in a terminal's `kgates tune` (a test worker may ignore it)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def _fit_and_press_ctrl_c(at: dict, began: list) -> None:
    """Fits 4 batches, pressing Ctrl-C `at[batch]` times as that batch begins; says
    in `began` which batches began."""

    class Press(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            began.append(batch)
            for _ in range(at.get(batch, 0)):
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.05)  # Python runs the handler between bytecodes

    model = keras.Sequential([keras.Input((3, 2)), kgates.LSTM(2), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    x, y = np.zeros((16, 3, 2), "float32"), np.zeros((16, 1), "float32")
    interrupt = DeferredInterrupt()
    with interrupt:
        model.fit(x, y, batch_size=4, epochs=1, verbose=0, callbacks=[Press(), interrupt])


def test_ctrl_c_in_a_trial_stops_it_at_the_batchs_end(python_handles_ctrl_c):
    began = []
    with pytest.raises(KeyboardInterrupt) as stopped:
        _fit_and_press_ctrl_c({1: 1}, began)
    # batch 1 ran to its end, and batch 2 never began: raised by the callback, in Python
    assert began == [0, 1] and stopped.traceback[-1].name == "_raise_if_requested"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back
    began = []
    with pytest.raises(KeyboardInterrupt) as stopped:
        _fit_and_press_ctrl_c({2: 2}, began)  # pressed twice: at once, as Python does
    assert began == [0, 1, 2] and stopped.traceback[-1].name == "_note"
    began = []
    _fit_and_press_ctrl_c({}, began)
    assert began == [0, 1, 2, 3]


def test_a_trial_leaves_an_ignored_ctrl_c_ignored():
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a shell's background job
    try:
        began = []
        _fit_and_press_ctrl_c({1: 1}, began)
        assert began == [0, 1, 2, 3] and signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


def test_demo_and_the_printed_commands_take_odd_input(capsys):
    assert cli.main(["demo", "--samples", "1"]) == 2
    assert capsys.readouterr().err == "kgates demo: --samples must be at least 2\n"
    with pytest.raises(SystemExit) as exit_:
        cli.main(["tune", "--worker-id", "chief2"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and len(err.splitlines()) == 1
    assert "a worker's id must not start with 'chief'" in err
