"""The standard library's own Python source as text: the code task's characters, its
file-level split, and per-character annotations of strings, comments and brackets."""

from __future__ import annotations

import functools
import hashlib
import os

import numpy as np

from kgates.study._data import check_size

# Printable ASCII, newline and tab; index 0 stands for any other character.
ALPHABET = "\n\t" + "".join(chr(c) for c in range(32, 127))
VOCABULARY = len(ALPHABET) + 1


_CLASSES = np.zeros(128, "int32")
_CLASSES[[ord(c) for c in ALPHABET]] = np.arange(1, VOCABULARY)


def encode_text(text: str) -> np.ndarray:
    """Characters as int32 classes of `ALPHABET` (+1); 0 for any other character."""
    points = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), "<u4")
    return np.where(points < 128, _CLASSES[np.minimum(points, 127)], 0).astype("int32")


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


CODE_SPLITS = (("train", 0.8), ("val", 0.1), ("test", 0.1))  # of the files, by name


def split_files(files: list[str], root: str) -> dict[str, list[str]]:
    """The files split into training, validation and test by the SHA-256 of each path
    relative to `root` (`CODE_SPLITS`): a file's part never depends on a seed."""
    parts = {split: [] for split, _ in CODE_SPLITS}
    for path in files:
        name = os.path.relpath(path, root).replace(os.sep, "/")
        u = int(hashlib.sha256(name.encode()).hexdigest()[:12], 16) / 16**12
        split = next((s for s, share in _cumulative(CODE_SPLITS) if u < share), "test")
        parts[split].append(path)
    return parts


def _cumulative(shares):
    total = 0.0
    for split, share in shares:
        total += share
        yield split, total


@functools.cache
def _encoded_file(path: str) -> np.ndarray:
    with open(path, encoding="utf-8", errors="replace") as source:
        return encode_text(source.read())


@functools.cache
def _annotated_file(path: str) -> dict:
    with open(path, encoding="utf-8", errors="replace") as source:
        return annotate_code(source.read())


def code_corpus() -> dict:
    """What the code task reads: per split, its files, characters and the SHA-256 of
    its list of paths (relative to the standard library), which names the split."""
    import sysconfig

    root = sysconfig.get_paths()["stdlib"]
    files = stdlib_sources()
    if not files:
        raise RuntimeError("code_text: found no Python standard library sources on this machine.")
    about = {}
    for split, paths in split_files(files, root).items():
        names = "\n".join(os.path.relpath(p, root).replace(os.sep, "/") for p in paths)
        about[split] = {
            "paths": paths,
            "files": len(paths),
            "characters": int(sum(len(_encoded_file(p)) for p in paths)),
            "sha256": hashlib.sha256(names.encode()).hexdigest(),
        }
    return about


def code_text(
    n: int = 2000, length: int = 100, seed: int = 0, validation: float = 0.2
) -> tuple[np.ndarray, ...]:
    """Next-character prediction on the Python standard library's source code.

    Real text with long-range structure (quotes, brackets, indentation), as in
    Karpathy et al.'s character models of the Linux source. The files are found on
    this machine at run time (about 11 MB in 670 files for Python 3.11) and split
    80/10/10 into training, validation and test by a hash of each path (`code_corpus`
    gives the split's SHA-256); no file is in two parts. Windows of `length`
    characters start at random places of random files of their part (weighted by
    length): the training windows are fresh for each `seed`, the validation and
    test windows the same for every seed.

    Args:
        n: training windows (validation and test get `validation * n` each, at
            least 1). Default: 2000.
        length: characters per window, at least 2. Default: 100.
        seed: seed of the training windows. Default: 0.
        validation: validation (and test) windows per training window. Default: 0.2.

    Returns:
        `(x_train, y_train, x_val, y_val)`: int32 `(windows, length)` arrays of
        character classes (`encode_text`); `y` is `x` shifted by one character.
        `code_windows` gives the test windows too.
    """
    windows = code_windows(n, length, seed, validation)
    return (*windows["train"], *windows["val"])


def code_windows(n: int = 2000, length: int = 100, seed: int = 0, validation: float = 0.2):
    """`code_text`'s windows of every part: `{"train": (x, y), "val": ..., "test": ...}`."""
    check_size("n", n, 1)
    check_size("length", length, 2)
    if not 0.0 < validation < 1.0:
        raise ValueError(f"`validation` must be in (0, 1), got {validation!r}.")
    parts = _code_windows(n, length, seed, validation)
    return {p: (w[:, :-1], w[:, 1:]) for p, w in ((p, np.stack(parts[p])) for p in parts)}


HELD_OUT_SEEDS = {"val": 7919, "test": 104729}  # the same windows for every task seed


def _code_windows(n, length, seed, validation, annotate=False) -> dict:
    """`{"train": [chars, ...], "val": [...], "test": [...]}`: windows of `length + 1`
    encoded characters; with `annotate`, `(chars, annotations)` pairs whose
    `annotate_code` arrays are taken from the whole file, so that a string or
    bracket opened before a window counts."""
    corpus = code_corpus()
    wanted = {"train": n, "val": max(1, round(n * validation))}
    wanted["test"] = wanted["val"]
    windows = {}
    for part, count in wanted.items():
        files = [p for p in corpus[part]["paths"] if len(_encoded_file(p)) > length]
        spare = np.array([len(_encoded_file(p)) - length for p in files], float)
        if not len(files):
            raise ValueError(f"code_text: no {part} file is longer than {length} characters.")
        rng = np.random.default_rng(seed if part == "train" else HELD_OUT_SEEDS[part])
        picks = rng.choice(len(files), count, p=spare / spare.sum())
        starts = (rng.random(count) * spare[picks]).astype(int)
        windows[part] = []
        for k, start in zip(picks, starts):
            chars = _encoded_file(files[k])[start : start + length + 1]
            if annotate:
                notes = _annotated_file(files[k])
                chars = (chars, {name: v[start : start + length] for name, v in notes.items()})
            windows[part].append(chars)
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
