"""`kgates.TensorBoard`'s probe batch: checked, and subsampled to its bound."""

from __future__ import annotations

import keras
import numpy as np


def subsample(x, y, mask, max_probe: int) -> tuple:
    """`(x, y, mask, rows kept)`: at most `max_probe` sequences, evenly spread; `x` one
    input or a structure of them."""
    if x is None:
        return None, None, None, None
    x = keras.tree.map_structure(np.asarray, x)
    inputs = keras.tree.flatten(x)
    if max(a.ndim for a in inputs) < 2:
        raise ValueError(
            "kgates.TensorBoard: `probe` must be a batch of sequences (batch, time, "
            f"features), got an array of shape {inputs[0].shape}."
        )
    n = inputs[0].shape[0]
    keep = np.arange(n)
    if n > max_probe:
        keep = np.linspace(0, n - 1, max_probe).round().astype(int)

    def take(a):
        return None if a is None else np.asarray(a)[keep]

    return keras.tree.map_structure(take, x), take(y), take(mask), keep


def check_probe(model: keras.Model, x) -> None:
    """Raises unless the probe `x` matches the model's inputs (None: any size)."""
    try:
        expected = [tuple(t.shape) for t in model.inputs]
    except (AttributeError, ValueError):
        return  # the Tracer reports models without symbolic inputs
    given = [a.shape for a in keras.tree.flatten(x)]
    ok = len(given) == len(expected) and all(
        len(g) == len(e) and all(d is None or d == s for d, s in zip(e[1:], g[1:]))
        for g, e in zip(given, expected)
    )
    if not ok:
        raise ValueError(
            f"kgates.TensorBoard: `probe` must match the model's inputs {expected} "
            f"(None: any size); got arrays of shapes {given}."
        )
