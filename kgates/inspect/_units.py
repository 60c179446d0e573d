"""Unit discovery: rank every (layer, gate or state, unit) against annotations of the
input (bracket depth, inside a string, column, ...), as Karpathy et al. (2015)
did by hand: by correlation, and by a probe scored on held-out sequences."""

from __future__ import annotations

import dataclasses

import keras
import numpy as np

from kgates.inspect._stats import same_steps
from kgates.inspect._trace import trace


@dataclasses.dataclass
class Units:
    """Every traced unit scored against each annotation.

    Attributes:
        rows: `{annotation: [row, ...]}`, best first (by |r|); a row is a dict with
            `layer`, `key` (`h`, `c` or a gate), `unit`, `r` (Pearson over the
            real steps of all sequences) and `probe` (held-out score of a
            one-unit probe: accuracy of a logistic probe for a yes/no
            annotation, R^2 of a linear one otherwise).
        kinds: `{annotation: "yes/no" or "number"}`.
        chance: `{annotation: score}` of a probe that learned nothing (the
            held-out share of the majority label; 0 for R^2).
    """

    rows: dict
    kinds: dict
    chance: dict

    def top(self, annotation: str, k: int = 5) -> list[dict]:
        """The `k` units that follow `annotation` most closely."""
        if annotation not in self.rows:
            raise ValueError(
                f"Units.top: no annotation {annotation!r}; there are {sorted(self.rows)}."
            )
        return self.rows[annotation][:k]

    def __str__(self) -> str:
        lines = []
        for name, rows in self.rows.items():
            score = "accuracy" if self.kinds[name] == "yes/no" else "R^2"
            lines.append(
                f"{name} ({self.kinds[name]}; probe {score}, chance {self.chance[name]:.3f}):"
            )
            lines += [
                f"  {row['layer']}/{row['key']}[{row['unit']}]  r = {row['r']:+.3f}  "
                f"probe {row['probe']:.3f}"
                for row in rows[:5]
            ]
        return "\n".join(lines)


def _annotation(name, values, batch_steps, valid) -> tuple[np.ndarray, str]:
    values = np.asarray(values)
    if values.shape != batch_steps:
        raise ValueError(
            f"kgates.find_units: annotation {name!r} must be a (batch, time) array of "
            f"shape {batch_steps}, got {values.shape}."
        )
    if values.dtype.kind not in "biuf":
        raise ValueError(f"kgates.find_units: annotation {name!r} must hold numbers or booleans.")
    real = values[valid].astype("float64")
    if not np.isfinite(real).all():
        raise ValueError(f"kgates.find_units: annotation {name!r} holds NaN or infinite values.")
    distinct = np.unique(real)
    if len(distinct) < 2:
        raise ValueError(
            f"kgates.find_units: annotation {name!r} is constant over the real steps; "
            "there is nothing to rank units against."
        )
    kind = "yes/no" if len(distinct) == 2 else "number"
    return values.astype("float64"), kind


def _pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Correlation of each column of `a` (n, k) with `b` (n,); 0 for a constant column."""
    a = a - a.mean(axis=0)
    b = b - b.mean()
    norms = np.sqrt((a**2).sum(axis=0) * (b**2).sum())
    return np.divide(a.T @ b, norms, out=np.zeros(a.shape[1]), where=norms > 0)


def _probe(train_x, train_y, test_x, test_y, kind) -> np.ndarray:
    """Held-out score of a one-feature probe per column of `train_x`."""
    if kind == "number":  # least squares on one feature, closed form
        mx, my = train_x.mean(axis=0), train_y.mean()
        dx = train_x - mx
        var = (dx**2).sum(axis=0)
        slope = np.divide(dx.T @ (train_y - my), var, out=np.zeros_like(var), where=var > 0)
        predicted = my + (test_x - mx) * slope
        residual = ((test_y[:, None] - predicted) ** 2).sum(axis=0)
        total = ((test_y - test_y.mean()) ** 2).sum()
        return 1.0 - residual / total if total > 0 else np.zeros(train_x.shape[1])
    from sklearn.linear_model import LogisticRegression

    labels = train_y > train_y.min()
    scores = np.zeros(train_x.shape[1])
    if labels.all() or not labels.any():
        return scores
    truth = test_y > train_y.min()
    for k in range(train_x.shape[1]):
        probe = LogisticRegression().fit(train_x[:, k : k + 1], labels)
        scores[k] = probe.score(test_x[:, k : k + 1], truth)
    return scores


def find_units(
    model: keras.Model,
    x,
    annotations: dict,
    mask=None,
    layers=None,
    held_out: float = 0.25,
    seed: int = 0,
) -> Units:
    """Ranks every unit of every traced h, c and gate against annotations of `x`.

    Args:
        model: a functional or Sequential Keras model built on `keras.Input`.
        x: a batch of model inputs (sequences).
        annotations: `{name: (batch, time) array}` of numbers or booleans per step
            (e.g. bracket depth, inside a string).
        mask: optional `(batch, time)` mask of real steps (see `kgates.trace`).
        layers: optional name or names of the layers. Default: all.
        held_out: share of the sequences the probes are scored on (not fitted
            on). Default: 0.25.
        seed: seed of the split into fitted and held-out sequences. Default: 0.

    Returns:
        `Units`; `units.top("depth", k=5)` lists the five best.
    """
    if not isinstance(annotations, dict) or not annotations:
        raise ValueError("kgates.find_units: `annotations` must be a non-empty dict.")
    if not 0.0 < held_out < 1.0:
        raise ValueError(f"kgates.find_units: `held_out` must be in (0, 1), got {held_out!r}.")
    return rank_units(trace(model, x, mask, layers), annotations, held_out, seed)


def rank_units(traced: dict, annotations: dict, held_out: float = 0.25, seed: int = 0) -> Units:
    """`find_units` on gates already traced (`kgates.trace`'s output)."""
    _, other = same_steps(traced)
    if other:
        first = next(iter(traced))
        raise ValueError(
            f"kgates.find_units: annotations follow the steps of one sequence, but {other} "
            f"step along another time axis than {first!r}; pass `layers=` to choose "
            "layers that read the same sequence."
        )
    first = next(iter(next(iter(traced.values())).values()))
    batch_steps = first.shape[:2]
    valid = ~np.ma.getmaskarray(first)[..., 0]
    if batch_steps[0] < 2:
        raise ValueError("kgates.find_units: `x` needs at least 2 sequences (some are held out).")
    order = np.random.default_rng(seed).permutation(batch_steps[0])
    test = np.zeros(batch_steps[0], bool)
    test[order[: max(1, round(held_out * batch_steps[0]))]] = True
    columns, names = [], []
    for layer, values in traced.items():
        for key, array in values.items():
            columns.append(np.ma.getdata(array).astype("float64"))
            names += [(layer, key, unit) for unit in range(array.shape[-1])]
    every = np.concatenate(columns, axis=-1)  # (batch, time, all units)
    rows, kinds, chance = {}, {}, {}
    fit, score = valid & ~test[:, None], valid & test[:, None]
    for name, values in annotations.items():
        target, kind = _annotation(name, values, batch_steps, valid)
        r = _pearson(every[valid], target[valid])
        probe = _probe(every[fit], target[fit], every[score], target[score], kind)
        order = np.argsort(-np.abs(r))
        rows[name] = [
            {"layer": names[k][0], "key": names[k][1], "unit": names[k][2], "r": float(r[k]),
             "probe": float(probe[k])}
            for k in order
        ]  # fmt: skip
        kinds[name] = kind
        if kind == "yes/no":
            labels = target[score] > target[fit].min()
            chance[name] = float(max(labels.mean(), 1 - labels.mean()))
        else:
            chance[name] = 0.0
    return Units(rows, kinds, chance)
