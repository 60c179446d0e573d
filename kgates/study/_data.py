"""Datasets made on the spot, deterministic by seed, offline: the adding problem,
copy memory, scikit-learn's digits (the standard library's source as text: `_code`;
Bach chorales: `_music`)."""

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


def check_size(name: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}, got {value!r}.")


def copy_memory(
    n: int = 2000, delay: int = 50, symbols: int = 10, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """The copy-memory task in its standard layout (Hochreiter & Schmidhuber 1997;
    Arjovsky et al. 2016).

    A sequence of `delay + 2 * symbols` steps shows `symbols` random symbols
    (classes 1..8), then `delay - 1` blanks (class 0), then a marker (class 9),
    then `symbols` blanks during which the model must repeat the symbols in order.
    The target is a class at every step: blank until the marker, then the
    symbols. Scored over the whole sequence, a model that says blank, then guesses
    uniformly, gets a cross-entropy of `symbols * log 8 / (delay + 2 * symbols)`.

    Args:
        n: number of sequences. Default: 2000.
        delay: steps from the last symbol to the marker (T), at least 1. Default: 50.
        symbols: symbols to remember. Default: 10.
        seed: seed of the generator. Default: 0.

    Returns:
        `(x, y)`: float32 one-hot inputs `(n, delay + 2 * symbols, 10)` and int32
        targets `(n, delay + 2 * symbols)`.
    """
    check_size("n", n, 1)
    check_size("delay", delay, 1)
    check_size("symbols", symbols, 1)
    rng = np.random.default_rng(seed)
    remembered = rng.integers(1, 9, (n, symbols)).astype("int32")
    steps = np.zeros((n, delay + 2 * symbols), "int32")
    steps[:, :symbols] = remembered
    steps[:, symbols + delay - 1] = 9
    y = np.zeros_like(steps)
    y[:, -symbols:] = remembered
    return np.eye(10, dtype="float32")[steps], y


def digits(seed: int = 0, validation: float = 0.2) -> tuple[np.ndarray, ...]:
    """scikit-learn's handwritten digits (UCI, 1,797 8x8 images) read row by row.

    Each image is a sequence of 8 rows of 8 pixels scaled to [0, 1]. The data
    ships with scikit-learn: nothing is downloaded.

    Args:
        seed: seed of the stratified train/validation split. Default: 0.
        validation: share of images held out. Default: 0.2.

    Returns:
        `(x_train, y_train, x_val, y_val)`: float32 `(n, 8, 8)`, int32 `(n,)`.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if not 0.0 < validation < 1.0:
        raise ValueError(f"`validation` must be in (0, 1), got {validation!r}.")
    data = load_digits()
    x = (data.images / 16.0).astype("float32")
    y = data.target.astype("int32")
    return tuple(train_test_split(x, y, test_size=validation, stratify=y, random_state=seed))
