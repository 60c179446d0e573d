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


def decode_text(codes) -> list[str]:
    """`encode_text`'s classes back to characters (one per step; "\ufffd" for class 0)."""
    return ["\ufffd" if c == 0 else ALPHABET[c - 1] for c in np.asarray(codes).tolist()]


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
    windows = _code_windows(n, length, seed, validation)
    train, val = (np.stack([w for w, _ in windows[p]]) for p in ("train", "val"))
    return train[:, :-1], train[:, 1:], val[:, :-1], val[:, 1:]


def _code_windows(n, length, seed, validation, annotate=False) -> dict:
    """`{"train": [(chars, annotations), ...], "val": [...]}`: windows of `length + 1`
    encoded characters (and, with `annotate`, their `annotate_code` arrays, taken
    from the whole file so that a string or bracket opened before a window counts)."""
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
            text = source.read()
        chars = encode_text(text)
        notes = annotate_code(text) if annotate else {}
        usable = (len(chars) - 1) // length * length
        for start in range(0, usable, length):
            if len(windows[part]) < wanted[part]:
                end = start + length + 1
                windows[part].append(
                    (chars[start:end], {k: v[start : end - 1] for k, v in notes.items()})
                )
    if len(windows["train"]) < n:
        raise ValueError(
            f"code_text: the standard library on this machine gives only "
            f"{len(windows['train'])} training windows of {length} characters; "
            f"ask for fewer (`n`) or shorter (`length`) ones."
        )
    return windows


CODE_ANNOTATIONS = {  # what `annotate_code` gives per character
    "in_string": "inside a string literal, its quotes included",
    "in_comment": "inside a # comment",
    "depth": "bracket depth ( [ { outside strings and comments, after the character",
    "indent": "leading whitespace characters of the line",
    "column": "position in the line, from 0",
}
_TRIPLES = ("'" * 3, '"' * 3)


_PREFIXES = {"r", "u", "b", "f", "br", "rb", "fr", "rf"}


def _prefix_start(text: str, quote: int) -> int:
    """Where a string starting with a quote at `quote` begins: its prefix (`f"`,
    `rb'`) is part of it, as Python's tokenizer reads it."""
    start = quote
    while start > max(0, quote - 2) and text[start - 1] in "rRbBfFuU":
        start -= 1
    while start < quote and text[start:quote].lower() not in _PREFIXES:
        start += 1
    if start < quote and start > 0 and (text[start - 1].isalnum() or text[start - 1] == "_"):
        return quote  # the letters end a name (`bar"`), not a prefix
    return start


def annotate_code(text: str) -> dict[str, np.ndarray]:
    """Per-character annotations of Python source (`CODE_ANNOTATIONS`), read from the
    characters by the rules of Python's tokenizer for strings, comments and brackets
    (quotes and triple quotes, backslash escapes, # to the end of the line).

    Returns:
        `{name: (len(text),) array}`: booleans for `in_string` and `in_comment`,
        int32 for the rest.
    """
    size = len(text)
    in_string, in_comment = np.zeros(size, bool), np.zeros(size, bool)
    depth = np.zeros(size, "int32")
    quote, comment, level, i = None, False, 0, 0
    while i < size:
        ch = text[i]
        step = 1
        if quote is not None:
            if ch == "\\":
                step = 2  # the escaped character cannot end the string
            elif text.startswith(quote, i):
                step, quote = len(quote), None
            elif ch == "\n" and len(quote) == 1:  # an unterminated one-line string ends
                quote = None
            in_string[i : i + step] = True
        elif comment:
            comment = ch != "\n"
            in_comment[i] = comment
        elif ch == "#":
            comment = in_comment[i] = True
        elif ch in "'\"":
            quote = text[i : i + 3] if text[i : i + 3] in _TRIPLES else ch
            step = len(quote)
            in_string[_prefix_start(text, i) : i + step] = True
        elif ch in "([{":
            level += 1
        elif ch in ")]}":
            level = max(0, level - 1)
        depth[i : i + step] = level
        i += step
    codes = np.frombuffer(text.encode("utf-32-le"), "<u4")
    newline = codes == ord("\n")
    starts = np.r_[0, np.flatnonzero(newline) + 1]  # the first character of each line
    line = np.cumsum(np.r_[False, newline[:-1]]) if size else np.zeros(0, int)
    blank = (codes == ord(" ")) | (codes == ord("\t"))
    leading = np.zeros(len(starts), "int32")
    for k, start in enumerate(starts):
        end = start
        while end < size and blank[end]:
            end += 1
        leading[k] = end - start
    return {
        "in_string": in_string,
        "in_comment": in_comment,
        "depth": depth,
        "indent": leading[line].astype("int32"),
        "column": (np.arange(size) - starts[line]).astype("int32"),
    }


def code_annotations(
    n: int = 2000, length: int = 100, seed: int = 0, validation: float = 0.2
) -> tuple[dict, dict]:
    """The `annotate_code` arrays of the windows `code_text` gives with the same
    arguments: `(train, val)`, each `{name: (windows, length) array}` aligned with
    `x_train` and `x_val` (annotation t describes input character t)."""
    windows = _code_windows(n, length, seed, validation, annotate=True)
    return tuple(
        {name: np.stack([notes[name] for _, notes in windows[p]]) for name in CODE_ANNOTATIONS}
        for p in ("train", "val")
    )
