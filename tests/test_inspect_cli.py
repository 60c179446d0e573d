"""`kgates inspect MODEL.keras DATA.npy`: a saved model looked into from the command
line, in a real process; bad inputs are one line, exit code 2, nothing written."""

import subprocess
import sys

import keras
import numpy as np
import pytest
from helpers import read_events

from kgates import cli


@pytest.fixture
def saved(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 8, 3)).astype("float32")
    x[:4, 5:] = 0.0  # padded
    y = x[:, :, :1].sum(axis=1)
    inputs = keras.Input((8, 3))
    h = keras.layers.LSTM(4, return_sequences=True, name="lstm")(keras.layers.Masking()(inputs))
    model = keras.Model(inputs, keras.layers.Dense(1)(keras.layers.GRU(3, name="gru")(h)))
    model.compile("adam", "mse")
    model.save(tmp_path / "m.keras")
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    return tmp_path


@pytest.mark.processes
def test_a_saved_model_is_looked_into_from_the_command_line(saved):
    out = saved / "inside"
    command = [sys.executable, "-m", "kgates_cli", "inspect", str(saved / "m.keras")]
    command += [str(saved / "x.npy"), "--labels", str(saved / "y.npy"), "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = (out / "summary.md").read_text()
    assert "| lstm | f |" in summary and "lstm: median memory span" in summary
    assert "lstm/f: loss" in summary and "gru/z: loss" in summary  # the ablations
    events = read_events(str(out))
    tags = events.Tags()
    assert {"gates/lstm/f", "memory_span/gru"} <= set(tags["histograms"])
    assert "memory_attention/lstm" in tags["images"]
    # padded steps (the model's Masking) are left out: 4 sequences have 3 fewer
    assert events.Histograms("gates/lstm/f")[-1].histogram_value.num == (12 * 8 - 4 * 3) * 4


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["nothing.keras", "x.npy"], "`model` nothing.keras: no such file"),
        (["m.keras", "nothing.npy"], "`data` nothing.npy: no such file"),
        (["m.keras", "wide.npy"], "has shape (12, 8, 5); the model takes (None, 8, 3)"),
        (["m.keras", "x.npy", "--labels", "short.npy"], "has 5 rows, `data` 12"),
        (["dense.keras", "x.npy"], "has no recurrent layer"),
        (["m.keras", "both.npz"], "`data` both.npz is a NumPy .npz archive"),
    ],
)
def test_bad_inputs_are_one_line_and_write_nothing(saved, capsys, monkeypatch, args, match):
    monkeypatch.chdir(saved)
    np.save("wide.npy", np.zeros((12, 8, 5), "float32"))
    np.save("short.npy", np.zeros((5, 1), "float32"))
    inputs = keras.Input((8, 3))
    keras.Model(inputs, keras.layers.Dense(1)(inputs)).save("dense.keras")
    np.savez("both.npz", x=np.zeros((12, 8, 3)))
    code = cli.main(["inspect", *args, "--out", "inside"])
    err = capsys.readouterr().err
    assert code == 2 and match in err and len(err.strip().splitlines()) == 1, err
    assert not (saved / "inside").exists()


def test_an_out_that_is_a_file_is_named_before_the_trace(saved, capsys, monkeypatch):
    monkeypatch.chdir(saved)
    with open("notes.txt", "w") as f:
        f.write("mine")
    code = cli.main(["inspect", "m.keras", "x.npy", "--out", "notes.txt"])
    assert code == 2
    assert (
        capsys.readouterr().err.strip().endswith("`out` notes.txt is a file; expected a directory.")
    )
    assert open("notes.txt").read() == "mine"
