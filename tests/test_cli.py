"""The `kgates` command's first seconds: it parses before Keras loads, says nothing
but its own lines, and its help explains the choices it offers."""

import json
import os
import signal
import subprocess
import sys

import keras
import pytest

import kgates
from kgates.study._choices import ABOUT_CELLS, CELLS
from kgates.study._tasks import ABOUT, EPOCHS, TASKS

# Runs the command's entry point in this process, then says what got imported.
PARSE = """
import json, sys
import kgates_cli
try:
    code = kgates_cli.main(sys.argv[1:])
except SystemExit as exit:
    code = exit.code
heavy = sorted(m for m in ("keras", "tensorflow", "jax", "torch") if m in sys.modules)
print(json.dumps({"code": code, "heavy": heavy}))
"""


def _entry(*args: str, backend: str | None = None) -> tuple[dict, subprocess.CompletedProcess]:
    environment = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    if backend:
        environment["KERAS_BACKEND"] = backend
    done = subprocess.run(
        [sys.executable, "-c", PARSE, *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=environment,  # as a user runs it, not as the test session quiets TensorFlow
    )
    return json.loads(done.stdout.strip().splitlines()[-1]), done


@pytest.mark.processes
@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["--help"], 0),
        (["tune", "--help"], 0),
        (["tune", "--seed", "x"], 2),
        (["demo", "--cell", "nope"], 2),
    ],
)
def test_arguments_are_parsed_before_keras_loads(args, code):
    result, done = _entry(*args)
    assert result == {"code": code, "heavy": []}, done.stderr[-2000:]


@pytest.mark.processes
@pytest.mark.parametrize("backend", ["tensorflow", "jax", "torch"])
def test_a_command_that_loads_keras_prints_only_its_own_lines(tmp_path, backend):
    result, done = _entry("report", str(tmp_path / "nothing"), backend=backend)
    assert result["code"] == 2 and "keras" in result["heavy"]
    # TensorFlow's start-up lines (CUDA probing, CPU features) are not shown
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kgates report: "), done.stderr
    # nor those of its first computation (TensorFlow probes CUDA when a model first
    # runs) or of its dashboards (on JAX and torch, `tf.summary` loads TensorFlow)
    tiny = ["--samples", "8", "--length", "3", "--units", "2", "--epochs", "1"]
    result, done = _entry("demo", *tiny, backend=backend)
    assert result["code"] == 0 and done.stderr == "", done.stderr


@pytest.mark.processes
def test_ctrl_c_stops_the_demo_in_one_line():
    tiny = ["--samples", "64", "--length", "4", "--units", "2", "--epochs", "500"]
    process = subprocess.Popen(
        [sys.executable, "-m", "kgates_cli", "demo", *tiny],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        # as from a terminal (a suite started in the background ignores SIGINT)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    for line in process.stdout:  # 500 epochs: still training when the signal comes
        if line.startswith("Epoch 2/"):
            break
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130 and "Traceback" not in err, err[-3000:]
    assert err.strip().splitlines()[-1] == "kgates demo: interrupted."


def test_tune_help_explains_every_cell_task_and_default_epochs(capsys):
    from kgates import cli

    with pytest.raises(SystemExit):
        cli.main(["tune", "--help"])
    text = capsys.readouterr().out
    assert set(ABOUT_CELLS) == set(CELLS) and set(ABOUT) == set(TASKS) == set(EPOCHS)
    for code, about in ABOUT_CELLS.items():
        assert f"  {code:<5} {about}" in text
    for task, about in ABOUT.items():
        assert f"  {task:<7} {about}" in text
    assert "adding 10, copy 10, digits 15, code 10, music 20" in " ".join(text.split())
    # each size option names the tasks that have it, with their defaults
    assert "--delay DELAY steps from the last symbol to the recall marker (copy 50)" in (
        " ".join(text.split())
    )
    assert "--length LENGTH steps per sequence (adding 50, code 100, music 64)" in (
        " ".join(text.split())
    )


@pytest.mark.processes
def test_import_kgates_alone_lets_keras_load_a_saved_model(tmp_path):
    inputs = keras.Input((5, 2))
    outputs = kgates.LSTM(3, variant="CIFG", return_gates=True)(inputs)
    path = tmp_path / "m.keras"
    keras.Model(inputs, outputs).save(path)
    script = (
        "import sys, keras, kgates\n"
        "model = keras.saving.load_model(sys.argv[1], safe_mode=True)\n"
        "print(type(model.layers[1]).__module__, model.layers[1].cell.variant)"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(path)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-2:] == ["kgates.cells._layers", "CIFG"]
