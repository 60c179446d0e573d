"""The search directory: what a search is (its spec), where it lives, and resuming it.

A search lives in one directory:

- `kgates_search.json`: what is searched; a second run must ask for the same search;
- `search/`: the Keras Tuner project (oracle state, one `trial_*` folder per trial,
  with `runs.jsonl`, `gates.json` and `curves.json`: see the README);
- `logs/trial_*`: each trial's TensorBoard run, named with its cell (`trial_3-GRU`):
  gate dashboards, Keras's logs, and its hyperparameters for the HParams dashboard.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile

from kgates.study._choices import check_space
from kgates.study._own_data import DATA, DATA_EPOCHS, file_digest, load_data
from kgates.study._tasks import EPOCHS, OBJECTIVES, task_sizes

SPEC_FILE = "kgates_search.json"
LOCK_FILE = "kgates.lock"  # held by the one process that writes the search
WORKERS = "workers"  # a lock file per running worker
PROJECT = "search"
TUNER_NAMES = ("random", "bayesian", "hyperband", "paired")
DEFAULT_CELLS = ("NP", "GRU", "CIFG", "NFG")  # what `kgates tune` compares unless told
# What a search is unless told otherwise: the one place these defaults live.
DEFAULTS = {
    "task": "adding",
    "cells": DEFAULT_CELLS,
    "tuner": "random",
    "max_trials": 8,
    "epochs": None,  # the task's own
    "seed": 0,
    "sizes": {},  # the task's own
    "space": {},  # the hypermodel's SPACE
    "data": None,  # a .npz of your own instead of a task: {"file", "sha256"} once stored
    "objective": None,  # the task's own; with data, chosen by the targets unless told
    "margin": None,  # non-inferiority margin, in the objective's units, fixed before the run
}
MAX_SEED = 400_000  # each trial's weight seed, seed * 10007 + its index, is < 2**32
REQUIRED = ("task", "cells", "tuner", "max_trials", "epochs", "seed", "sizes", "space")
RESUMABLE = ("max_trials",)  # what a resumed search may change


def search_spec(
    task: str = DEFAULTS["task"],
    cells=DEFAULTS["cells"],
    tuner: str = DEFAULTS["tuner"],
    max_trials: int = DEFAULTS["max_trials"],
    epochs: int | None = DEFAULTS["epochs"],
    seed: int = DEFAULTS["seed"],
    sizes: dict | None = None,
    space: dict | None = None,
    data: str | dict | None = None,
    objective: str | None = None,
    margin: float | None = None,
) -> dict:
    """What defines a search, validated and normalised (what `kgates_search.json` holds).

    `data` (a `.npz` path, see `kgates.load_data`) searches a user's arrays in
    place of `task`; the spec then keeps the file's path and SHA-256, and the
    objective, and the data are read through once here to check them.
    """
    if data is not None or task == DATA:
        if data is None:
            raise ValueError(f"task {DATA!r} needs `data`, a .npz file of arrays.")
        if sizes:
            raise ValueError(
                f"`{sorted(sizes)[0]}` is a size of the built-in tasks; `data` has the "
                "sizes of its arrays."
            )
        if isinstance(data, dict):  # stored: checked, its objective resolved, when it began
            path, digest = data["file"], data["sha256"]
            if objective is None:
                objective = load_data(path, None, digest).objective
            # (`spec_task` checks the bytes before the search loads them to run)
        else:
            path = os.path.abspath(os.fspath(data))
            objective = load_data(path, objective).objective
            digest = file_digest(path)
        task, data, known = DATA, {"file": path, "sha256": digest}, {}
    elif objective is not None and objective != OBJECTIVES.get(task, (None,))[0]:
        raise ValueError(
            f"`objective` applies to `data`; task {task!r} scores "
            f"{OBJECTIVES.get(task, ('?',))[0]}."
        )
    else:
        known = task_sizes(task)  # raises on an unknown task
    sizes = {**known, **(sizes or {})}
    for key in sorted(set(sizes) - set(known)):
        has = f"it has: {', '.join(known)}" if known else "its size is fixed"
        raise ValueError(f"task {task!r} has no size option {key!r} ({has}).")
    cells, full = check_space(cells, space or {})
    if tuner not in TUNER_NAMES:
        raise ValueError(f"unknown tuner {tuner!r}; expected one of {', '.join(TUNER_NAMES)}.")
    if epochs is not None and (
        isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1
    ):
        raise ValueError(f"`epochs` must be a positive integer, got {epochs!r}.")
    if tuner == "hyperband" and epochs is not None and epochs < 2:
        raise ValueError("the hyperband tuner needs `epochs` (its max_epochs) >= 2.")
    if isinstance(max_trials, bool) or not isinstance(max_trials, int) or max_trials < 1:
        raise ValueError(f"`max_trials` must be a positive integer, got {max_trials!r}.")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise ValueError(f"`seed` must be an integer from 0 to {MAX_SEED}, got {seed!r}.")
    number = isinstance(margin, (int, float)) and not isinstance(margin, bool)
    if margin is not None and not (number and margin > 0):
        raise ValueError(f"`margin` must be a positive number, got {margin!r}.")
    return {
        "task": task,
        "sizes": sizes,
        "cells": list(cells),
        "space": {k: list(v) for k, v in full.items()},
        "tuner": tuner,
        "max_trials": max_trials,
        "epochs": epochs,
        "seed": seed,
        "data": data,
        "objective": objective if data else None,
        "margin": None if margin is None else float(margin),
    }


def _given_keys(given: dict) -> list[str]:
    """`"task"`, `"sizes.length"`, ...: each option the caller set, one entry of a dict each."""
    keys = []
    for key, value in given.items():
        if isinstance(value, dict):
            keys += [f"{key}.{entry}" for entry in value]
        else:
            keys.append(key)
    return sorted(keys)


def _lookup(spec: dict, key: str):
    """`spec["sizes"]["length"]` for the key `"sizes.length"`."""
    for part in key.split("."):
        spec = spec.get(part) if isinstance(spec, dict) else None
    return spec


def _compared(spec: dict, key: str):
    """What must agree for `key` on resume, and how it is shown (data by its bytes)."""
    value = _lookup(spec, key)
    value = EPOCHS.get(spec["task"], DATA_EPOCHS) if key == "epochs" and not value else value
    if key == "data" and isinstance(value, dict):
        return value["sha256"], f"{value['file']} (SHA-256 {value['sha256'][:12]}...)"
    return value, repr(value)


def open_search(directory: str, **given) -> dict:
    """The search `directory` holds, or a new one: the stored spec <- `given`.

    `given` holds only the options the caller set (None or absent: not set;
    `sizes` and `space` are merged entry by entry). A stored search must agree
    with every given option except the trial budget `max_trials`, which may
    change; the options not given come from it. A new directory gets the
    defaults <- given. Nothing is written here.
    """
    given = {k: v for k, v in given.items() if v is not None and v != {}}
    unknown = sorted(set(given) - set(DEFAULTS))
    if unknown:
        raise TypeError(f"open_search: unknown option {unknown[0]!r}; expected {sorted(DEFAULTS)}.")
    if "data" in given:
        if given.get("task", DATA) != DATA:
            raise ValueError("give a `task` or your own `data`, not both.")
        given["task"] = DATA
    _check_place(directory)
    stored = stored_search(directory)
    if stored is None and os.path.isdir(directory) and set(os.listdir(directory)) - {LOCK_FILE}:
        raise ValueError(
            f"{directory} is not empty and holds no kgates search ({SPEC_FILE}); "
            "pick a new or empty directory."
        )
    base = stored or DEFAULTS
    if stored and "task" in given and given["task"] != stored["task"]:
        base = {**DEFAULTS, "task": given["task"]}  # sizes of another task: compare below
    base = {**DEFAULTS, **base}  # a search stored before `data` existed has none
    merged = {
        key: {**base[key], **given.get(key, {})}
        if key in ("sizes", "space")
        else given.get(key, base[key])
        for key in DEFAULTS
    }
    spec = search_spec(**merged)
    if stored:
        differences = [
            f"{key}: this directory has {was[1]}, asked for {now[1]}"
            for key in _given_keys(given)
            for was, now in [(_compared(stored, key), _compared(spec, key))]
            if key not in RESUMABLE and was[0] != now[0]
        ]
        if differences:
            raise ValueError(
                f"{directory} holds a different search ({'; '.join(differences)}). "
                "Re-run with the same options (or none) to resume it, or pick a new directory."
            )
    return spec


class SearchInUse(ValueError):
    """Another process writes the search in this directory."""


def _lock(path: str) -> int | None:
    """A descriptor holding an exclusive OS lock (flock) on `path`, or None when
    another process holds it. The lock goes with its process however that ends
    (SIGKILL too)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


@contextlib.contextmanager
def _held(path: str, busy: str):
    fd = _lock(path)
    if fd is None:
        with open(path) as f:
            holder = f.read(32).strip() or "?"
        raise SearchInUse(busy.replace("{holder}", holder))
    try:
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        yield
    finally:
        os.close(fd)  # releases the lock


def writer_lock(directory: str):
    """Holds `directory`'s lock (`kgates.lock`) while the block runs: one writer
    per search; a second is refused at once."""
    os.makedirs(directory, exist_ok=True)
    return _held(
        os.path.join(directory, LOCK_FILE),
        f"{directory} is in use by another kgates tune (process {{holder}}); wait for "
        "it to finish, or pick another directory (workers join with --worker).",
    )


def worker_lock(directory: str, worker_id: str):
    """Holds worker `worker_id`'s lock (`workers/ID.lock`) while it runs: a worker
    whose lock is free is gone, however it ended, and the chief hands its trial
    to the next worker (`worker_gone`)."""
    os.makedirs(os.path.join(directory, WORKERS), exist_ok=True)
    return _held(
        os.path.join(directory, WORKERS, f"{worker_id}.lock"),
        f"a worker named {worker_id} is already running on {directory} (process "
        "{holder}); give this one another --worker-id.",
    )


def worker_gone(directory: str, worker_id: str) -> bool:
    """Whether worker `worker_id` ran here and no longer holds its lock. A tuner id
    with no lock file (the chief, or a worker not started by kgates) is not known
    to be gone."""
    path = os.path.join(directory, WORKERS, f"{worker_id}.lock")
    if not os.path.isfile(path):
        return False
    fd = _lock(path)
    if fd is None:
        return False
    os.close(fd)
    return True


def read_json(path: str, keys: tuple[str, ...] = ()) -> dict:
    """A search file's JSON object; a damaged one is an error that names the file."""
    try:
        with open(path) as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        data, problem = None, f"is not valid JSON ({error})"
    else:
        missing = [k for k in keys if not isinstance(data, dict) or k not in data]
        problem = f"lacks {', '.join(missing)}" if missing else ""
        if not isinstance(data, dict):
            problem = "does not hold a JSON object"
    if problem:
        raise ValueError(
            f"{path} {problem}: the file is damaged. Restore it from a copy, or start "
            "the search over in a new directory; nothing else was changed."
        )
    return data


def check_project(directory: str) -> None:
    """Reads every file Keras Tuner will reload from `directory`, so that a damaged
    one is named before the search resumes (Keras Tuner's own errors name none)."""
    project = os.path.join(directory, PROJECT)
    if os.path.exists(os.path.join(project, "oracle.json")):
        read_json(os.path.join(project, "oracle.json"), ("ongoing_trials", "tried_so_far"))
    if os.path.isdir(project):
        for name in sorted(os.listdir(project)):
            path = os.path.join(project, name, "trial.json")
            if name.startswith("trial_") and os.path.exists(path):
                read_json(path, ("trial_id", "hyperparameters", "status"))


def _check_place(directory: str) -> None:
    """A search directory must be a directory, or be creatable, and be writable."""
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise ValueError(f"`directory` {directory} is a file; expected a directory.")
    existing = os.path.abspath(directory)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise ValueError(f"`directory` {directory} lies under a file, {existing}.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(
            f"`directory` {directory}: cannot write in {existing} (permission denied)."
        )


def stored_search(directory: str) -> dict | None:
    """The spec of the search in `directory`, or None."""
    path = os.path.join(directory, SPEC_FILE)
    if not os.path.exists(path):
        return None
    return {**DEFAULTS, **read_json(path, REQUIRED)}


def atomic_write(path: str, data: bytes | str, root: str) -> None:
    """Writes `path`, inside `root`, through a new temporary file and a rename: never
    half-written, and never through a link (a symbolic link at `path` is replaced,
    not followed; a folder that leads outside `root` is refused)."""
    real_root = os.path.realpath(root)
    folder = os.path.realpath(os.path.dirname(os.path.abspath(path)))
    if os.path.commonpath([real_root, folder]) != real_root:
        raise ValueError(
            f"{os.path.dirname(path)} leads outside {root} (a symbolic link?); "
            "kgates writes only inside the search directory."
        )
    fd, temporary = tempfile.mkstemp(dir=folder, prefix=".kgates-")
    with os.fdopen(fd, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
    os.replace(temporary, os.path.join(folder, os.path.basename(path)))


def write_spec(directory: str, spec: dict) -> None:
    """Writes the spec (atomically: never a half-written spec)."""
    os.makedirs(directory, exist_ok=True)
    atomic_write(os.path.join(directory, SPEC_FILE), json.dumps(spec, indent=1), directory)
