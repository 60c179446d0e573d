"""Datasets made on the spot, deterministic by seed."""

from __future__ import annotations

import numpy as np


def adding_problem(n: int = 2000, length: int = 50, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The adding problem (Hochreiter & Schmidhuber 1997).

    Each sequence has two channels: random values in [0, 1) and a marker that
    is 1 at exactly two steps (one in each half). The target is the sum of the
    two marked values. Predicting the mean, 1.0, scores a mean squared error of
    about 1/6; a model must remember the first marked value across the
    sequence to beat it.

    Args:
        n: number of sequences. Default: 2000.
        length: steps per sequence, at least 2. Default: 50.
        seed: seed of the generator. Default: 0.

    Returns:
        `(x, y)`: float32 arrays of shapes `(n, length, 2)` and `(n, 1)`.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
        raise ValueError(f"adding_problem: `n` must be a positive integer, got {n!r}.")
    if isinstance(length, bool) or not isinstance(length, int) or length < 2:
        raise ValueError(f"adding_problem: `length` must be an integer >= 2, got {length!r}.")
    rng = np.random.default_rng(seed)
    values = rng.random((n, length))
    half = length // 2
    first = rng.integers(0, half, n)
    second = rng.integers(half, length, n)
    marker = np.zeros((n, length))
    marker[np.arange(n), first] = 1.0
    marker[np.arange(n), second] = 1.0
    x = np.stack([values, marker], axis=-1).astype("float32")
    y = (values * marker).sum(axis=1, keepdims=True).astype("float32")
    return x, y
