"""Datasets made on the spot, deterministic by seed, offline: the adding problem,
copy memory, scikit-learn's digits, the standard library's source as text."""

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
    n: int = 2000, delay: int = 20, symbols: int = 5, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """The copy-memory task (Hochreiter & Schmidhuber 1997; Arjovsky et al. 2016).

    A sequence shows `symbols` random symbols (classes 1..8), then `delay`
    blanks (class 0), then a marker (class 9) after which the model must
    repeat the symbols in order. Inputs are one-hot; the targets are the
    `symbols` classes to recall. Guessing scores an accuracy of 1/8.

    Args:
        n: number of sequences. Default: 2000.
        delay: blank steps between the symbols and the marker. Default: 20.
        symbols: symbols to remember. Default: 5.
        seed: seed of the generator. Default: 0.

    Returns:
        `(x, y)`: float32 one-hot inputs `(n, 2 * symbols + delay, 10)` and
        int32 targets `(n, symbols)`; the model answers at the last `symbols`
        steps.
    """
    check_size("n", n, 1)
    check_size("delay", delay, 0)
    check_size("symbols", symbols, 1)
    rng = np.random.default_rng(seed)
    y = rng.integers(1, 9, (n, symbols)).astype("int32")
    steps = np.zeros((n, 2 * symbols + delay), "int32")
    steps[:, :symbols] = y
    steps[:, symbols + delay] = 9
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


# Printable ASCII, newline and tab; index 0 stands for any other character.
ALPHABET = "\n\t" + "".join(chr(c) for c in range(32, 127))
VOCABULARY = len(ALPHABET) + 1


def encode_text(text: str) -> np.ndarray:
    """Characters as int32 classes of `ALPHABET` (+1); 0 for any other character."""
    index = {c: k + 1 for k, c in enumerate(ALPHABET)}
    return np.fromiter((index.get(c, 0) for c in text), "int32", len(text))


def stdlib_sources() -> list[str]:
    """Paths of the Python standard library's own `.py` files on this machine, sorted."""
    import sysconfig
    from pathlib import Path

    root = Path(sysconfig.get_paths()["stdlib"])
    skip = {"site-packages", "dist-packages", "test", "tests", "idlelib", "__pycache__"}
    return sorted(
        str(p)
        for p in root.rglob("*.py")
        if not skip.intersection(p.relative_to(root).parts[:-1]) and p.is_file()
    )


def code_text(
    n: int = 2000, length: int = 100, seed: int = 0, validation: float = 0.2
) -> tuple[np.ndarray, ...]:
    """Next-character prediction on the Python standard library's source code.

    Real text with long-range structure (quotes, brackets, indentation), as in
    Karpathy et al.'s character models of the Linux source. The files are
    found on this machine at run time; the files are split between training
    and validation (no file is in both), shuffled by `seed`, and cut into
    windows of `length` characters.

    Args:
        n: training windows (the validation set gets `validation * n`, at least 1).
            Default: 2000.
        length: characters per window, at least 2. Default: 100.
        seed: seed of the file shuffle. Default: 0.
        validation: share of windows held out. Default: 0.2.

    Returns:
        `(x_train, y_train, x_val, y_val)`: int32 `(windows, length)` arrays of
        character classes (`encode_text`); `y` is `x` shifted by one character.
    """
    check_size("n", n, 1)
    check_size("length", length, 2)
    if not 0.0 < validation < 1.0:
        raise ValueError(f"`validation` must be in (0, 1), got {validation!r}.")
    files = stdlib_sources()
    if not files:
        raise RuntimeError("code_text: found no Python standard library sources on this machine.")
    order = np.random.default_rng(seed).permutation(len(files))
    wanted = {"train": n, "val": max(1, round(n * validation))}
    windows = {"train": [], "val": []}
    part = "val"  # the validation files come first, so both parts start early
    for k in order:
        if len(windows[part]) >= wanted[part]:
            if part == "train":
                break
            part = "train"
        with open(files[k], encoding="utf-8", errors="replace") as source:
            chars = encode_text(source.read())
        usable = (len(chars) - 1) // length * length
        for start in range(0, usable, length):
            if len(windows[part]) < wanted[part]:
                windows[part].append(chars[start : start + length + 1])
    if len(windows["train"]) < n:
        raise ValueError(
            f"code_text: the standard library on this machine gives only "
            f"{len(windows['train'])} training windows of {length} characters; "
            f"ask for fewer (`n`) or shorter (`length`) ones."
        )
    train, val = (np.stack(windows[p]) for p in ("train", "val"))
    return train[:, :-1], train[:, 1:], val[:, :-1], val[:, 1:]
