import numpy as np
import pytest

import kgates
from kgates import adding_problem, cli


def test_adding_problem_targets_worked_by_hand():
    x, y = adding_problem(n=50, length=7, seed=3)
    assert x.shape == (50, 7, 2) and y.shape == (50, 1)
    assert np.all(x[..., 1].sum(axis=1) == 2)  # two markers per sequence
    first, second = (np.flatnonzero(row) for row in x[0:2, :, 1])
    assert first[0] < 3 <= first[1]  # one marker in each half
    for k in range(50):
        marked = np.flatnonzero(x[k, :, 1])
        assert y[k, 0] == pytest.approx(x[k, marked, 0].sum(), abs=1e-6)
    again, _ = adding_problem(n=50, length=7, seed=3)
    np.testing.assert_array_equal(x, again)


@pytest.mark.parametrize(("kwargs", "match"), [({"n": 0}, "`n`"), ({"length": 1}, "`length`")])
def test_adding_problem_bad_sizes(kwargs, match):
    with pytest.raises(ValueError, match=match):
        adding_problem(**kwargs)


@pytest.mark.parametrize("cell", ["NP", "GRU", "NIG"])
def test_demo_runs_and_reports_every_gate(cell, capsys):
    code = cli.main(
        [
            "demo",
            "--cell",
            cell,
            "--units",
            "4",
            "--length",
            "6",
            "--samples",
            "64",
            "--epochs",
            "1",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "Test MSE" in out
    names = kgates.GRUCell.gate_names if cell == "GRU" else kgates.LSTMCell.gate_names
    for name in ("h", *names):
        assert any(line.startswith(f"{name} ") for line in out.splitlines()), name


def test_demo_rejects_bad_arguments(capsys):
    with pytest.raises(SystemExit):
        cli.main(["demo", "--cell", "XYZ"])
    with pytest.raises(SystemExit):
        cli.main(["demo", "--epochs", "0"])
    assert "positive integer" in capsys.readouterr().err
