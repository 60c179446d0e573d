"""A trial's learning curves, with the scores of the task's held-out test split."""

from __future__ import annotations

import keras
import numpy as np

from kgates.study._tasks import Task


class TestScores(keras.callbacks.Callback):
    """Adds the metrics of the task's held-out test split to every epoch's logs
    (`test_loss`, ...): the learning curves keep them, nothing selects on them."""

    def __init__(self, task: Task):
        super().__init__()
        self.task = task

    def __deepcopy__(self, memo):  # Keras Tuner copies callbacks: not the data
        return TestScores(self.task)

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        # every epoch, a diverged one too (NaN), so the test curve lines up with the others
        x, y = self.task.x_test, self.task.y_test
        scores = self.model.evaluate(x, y, batch_size=256, verbose=0, return_dict=True)
        logs.update({f"test_{name}": float(value) for name, value in scores.items()})


def test_at_best(curves: list[dict], objective) -> dict:
    """A trial's learning curves (one dict of per-epoch lists per execution) with the
    test score at the epoch the objective was best (`test`, a mean over executions;
    None without a test split) and that epoch (`best_epoch`, from 0, of the first)."""
    tests, best = [], None
    test_name = "test_" + objective.name.removeprefix("val_")
    for curve in curves:
        scores = curve.get(objective.name) or []
        finite = [k for k, v in enumerate(scores) if np.isfinite(v)]
        if not finite or len(curve.get(test_name) or []) != len(scores):
            continue  # no test split (or a curve that does not line up)
        pick = min if objective.direction == "min" else max
        epoch = pick(finite, key=lambda k: scores[k])
        best = epoch if best is None else best
        tests.append(curve[test_name][epoch])
    return {
        "objective": objective.name,
        "test": float(np.mean(tests)) if tests else None,
        "best_epoch": best,
        "executions": curves,
    }
