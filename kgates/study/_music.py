"""Bach chorales as piano rolls, from the corpus that ships with music21 (nothing is
downloaded): the polyphonic music task of Boulanger-Lewandowski et al. (2012) and
Greff et al. (2017), made from the scores on this machine."""

from __future__ import annotations

import functools
import hashlib
import math
import os
import tempfile

import numpy as np

from kgates.study._data import check_size

KEYS = 88  # piano keys A0 (MIDI 21) .. C8 (MIDI 108)
LOWEST = 21
STEP = 0.5  # quarter notes per step: eighth notes
CHORALES = 350  # distinct chorales in music21's corpus (version 10)
SPLITS = (("train", 0.6), ("val", 0.2), ("test", 0.2))  # JSB's 229/76/77 of 382, as shares


def chorale_names() -> list[str]:
    """The Bach chorales of music21's corpus (Riemenschneider's numbering), each once,
    in a fixed order (by the SHA-256 of the name)."""
    from music21 import corpus

    names = corpus.chorales.Iterator(numberingSystem="riemenschneider", returnType="filename")
    return sorted(set(names), key=lambda name: hashlib.sha256(name.encode()).hexdigest())


def split_of(name: str) -> str:
    """The split a chorale belongs to, fixed by its name's hash (never by a seed)."""
    u = int(hashlib.sha256(f"split:{name}".encode()).hexdigest()[:12], 16) / 16**12
    for split, share in SPLITS:
        if u < share:
            return split
        u -= share
    return SPLITS[-1][0]


def _cache_path(name: str) -> str:
    import music21

    root = os.environ.get("KGATES_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "kgates"
    )
    folder = f"chorales-music21-{music21.__version__}-step{STEP}"
    return os.path.join(root, folder, name.replace("/", "_") + ".npy")


@functools.cache
def piano_roll(name: str) -> np.ndarray:
    """A chorale as a `(steps, 88)` uint8 roll in eighth notes: 1 where a key sounds at
    the step's time (a held note is on at each step it spans, a tied note through its
    tie; a note shorter than an eighth shows only if it sounds on the beat).
    Parsing a score takes about 0.1 s: rolls are kept in `$KGATES_CACHE` (by default
    `~/.cache/kgates`), per music21 version; a cache that cannot be written is skipped."""
    path = _cache_path(name)
    try:
        return np.load(path)
    except (OSError, ValueError):
        pass
    roll = _parse(name)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".npy")
        with os.fdopen(fd, "wb") as f:
            np.save(f, roll)
        os.replace(temporary, path)
    except OSError:
        pass
    return roll


def _parse(name: str) -> np.ndarray:
    from music21 import corpus

    notes = corpus.parse(name).flatten().notes
    end = max((float(n.offset + n.quarterLength) for n in notes), default=0.0)
    roll = np.zeros((_step_at(end), KEYS), "uint8")
    for note in notes:  # on at every step whose time falls within the note
        start = _step_at(float(note.offset))
        stop = _step_at(float(note.offset + note.quarterLength))
        for pitch in note.pitches:
            if LOWEST <= pitch.midi < LOWEST + KEYS:
                roll[start:stop, pitch.midi - LOWEST] = 1
    return roll


def _step_at(time: float) -> int:
    """The first step at or after `time` (in quarter notes)."""
    return math.ceil(time / STEP - 1e-9)


def rolls_by_split(count: int = CHORALES) -> dict[str, list[np.ndarray]]:
    """The rolls of the first `count` chorales of `chorale_names`, by split."""
    names = chorale_names()[:count]
    parts = {split: [] for split, _ in SPLITS}
    for name in names:
        parts[split_of(name)].append(piano_roll(name))
    return parts


def corpus_about(count: int = CHORALES) -> dict:
    """Per split: how many chorales, their steps, and the SHA-256 of their names."""
    names = chorale_names()[:count]
    about = {}
    for split, _ in SPLITS:
        mine = [name for name in names if split_of(name) == split]
        about[split] = {
            "chorales": len(mine),
            "steps": int(sum(len(piano_roll(name)) for name in mine)),
            "sha256": hashlib.sha256("\n".join(mine).encode()).hexdigest(),
        }
    return about


def _windows(rolls: list[np.ndarray], length: int) -> np.ndarray:
    """Every roll cut into consecutive windows of `length + 1` steps (the rest dropped)."""
    cut = [roll[s : s + length + 1] for roll in rolls for s in range(0, len(roll) - length, length)]
    return np.stack(cut) if cut else np.zeros((0, length + 1, KEYS), "uint8")


def bach_chorales(
    n: int = 2000, length: int = 64, seed: int = 0, chorales: int = CHORALES
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Next-step prediction on Bach chorales: at each eighth note, which of the 88
    keys sound at the next one.

    The chorales are music21's 350 distinct Riemenschneider chorales, split 60/20/20
    into training, validation and test by a hash of each name (the same split for
    every seed). Training windows start at random steps of random training chorales
    (fresh for each seed); validation and test windows tile their chorales (the same
    for every seed). Chorales shorter than a window are left out.

    Args:
        n: training windows. Default: 2000.
        length: steps per window (eighth notes). Default: 64.
        seed: seed of the training windows. Default: 0.
        chorales: the first this many chorales of the fixed order (default: all).

    Returns:
        `{"train": (x, y), "val": (x, y), "test": (x, y)}`: float32 arrays
        `(windows, length, 88)`, `y` being `x` one step later.
    """
    check_size("n", n, 1)
    check_size("length", length, 2)
    check_size("chorales", chorales, 1)
    parts = rolls_by_split(chorales)
    rng = np.random.default_rng(seed)
    train = [roll for roll in parts["train"] if len(roll) > length]
    if not train:
        raise ValueError(f"bach_chorales: no training chorale is longer than {length} steps.")
    weights = np.array([len(roll) - length for roll in train], float)
    picks = rng.choice(len(train), n, p=weights / weights.sum())
    starts = (rng.random(n) * weights[picks]).astype(int)
    windows = {"train": np.stack([train[k][s : s + length + 1] for k, s in zip(picks, starts)])}
    for split in ("val", "test"):
        windows[split] = _windows(parts[split], length)
        if not len(windows[split]):
            raise ValueError(
                f"bach_chorales: no {split} chorale is longer than {length} steps; "
                "use more chorales or a shorter `length`."
            )
    return {
        split: (w[:, :-1].astype("float32"), w[:, 1:].astype("float32"))
        for split, w in windows.items()
    }


def key_baselines(y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray) -> dict:
    """Negative log-likelihood per step (nats, summed over keys) of two guesses fitted
    on the training targets: each key on with its own frequency; and each key on with
    a probability given whether it sounds now (a two-state Markov chain per key).
    Add-one smoothing."""
    flat = y_train.reshape(-1, KEYS)
    frequency = (flat.sum(0) + 1) / (len(flat) + 2)

    def nll(p):
        p = np.clip(p, 1e-7, 1 - 1e-7)
        return float(-(y_val * np.log(p) + (1 - y_val) * np.log1p(-p)).sum(-1).mean())

    # transitions, counted on the training windows (x at t, y = x at t + 1)
    before = (y_train[:, :-1] > 0).reshape(-1, KEYS)
    after = (y_train[:, 1:] > 0).reshape(-1, KEYS)
    on_on = ((before & after).sum(0) + 1) / (before.sum(0) + 2)
    off_on = ((~before & after).sum(0) + 1) / ((~before).sum(0) + 2)
    return {
        "key frequencies": nll(np.broadcast_to(frequency, y_val.shape)),
        "key stays or changes (Markov)": nll(np.where(x_val > 0, on_on, off_on)),
    }
