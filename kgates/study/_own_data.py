"""A search on a user's own arrays (`kgates tune --data FILE.npz`): what they mean,
read from their shapes and types; and the task any stored search names."""

from __future__ import annotations

import hashlib
import os

import numpy as np

from kgates.study._tasks import OBJECTIVES, Task, make_task

DATA = "data"  # the task name of a search on them
DATA_ARRAYS = ("x_train", "y_train", "x_val", "y_val")
DATA_EPOCHS = 10
DATA_OBJECTIVES = ("val_loss", "val_accuracy")


def direction(objective: str) -> str:
    """`"max"` for an accuracy, `"min"` for a loss."""
    return "max" if objective.endswith("accuracy") else "min"


def task_from_arrays(
    x_train,
    y_train,
    x_val,
    y_val,
    objective: str | None = None,
    source: str = "the data",
) -> Task:
    """A task on your own arrays; what to predict is read from their shapes and types.

    Inputs `x`: floats `(samples, steps, features)` (or `(samples, steps)`: one
    feature), or integers `(samples, steps)`: tokens, read through an
    `Embedding` with `max + 1` entries. Targets `y`, by type and shape:

    - integers `(samples,)`: a class per sequence, read at its last step;
    - integers `(samples, k)`: a class at each of the last `k` steps (`k` = steps:
      at every step);
    - floats `(samples,)` or `(samples, d)`: `d` values per sequence (MSE);
    - floats `(samples, k, d)`: `d` values at each of the last `k` steps.

    Args:
        x_train, y_train, x_val, y_val: the arrays (NumPy or anything
            `np.asarray` reads), finite, with as many `y` rows as `x` rows.
        objective: `"val_loss"` or (classes only) `"val_accuracy"`; None:
            `"val_accuracy"` for classes, `"val_loss"` for values.
        source: what the arrays are called in errors (a file name).

    Returns:
        The task, with the baseline of a model that learned nothing: always the
        training mean (MSE), the most common training class (accuracy), or the
        training class frequencies (cross-entropy).
    """
    arrays = {}
    for name, value in zip(DATA_ARRAYS, (x_train, y_train, x_val, y_val)):
        array = np.asarray(value)
        if array.dtype == bool:
            array = array.astype("int32")
        if array.dtype.kind not in "iuf":
            raise ValueError(f"{source}: `{name}` must hold numbers, got dtype {array.dtype}.")
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise ValueError(f"{source}: `{name}` holds NaN or infinite values.")
        arrays[name] = array
    x, y, xv, yv = (arrays[n] for n in DATA_ARRAYS)
    tokens = x.dtype.kind in "iu"
    if xv.dtype.kind != x.dtype.kind or yv.dtype.kind != y.dtype.kind:
        raise ValueError(f"{source}: the validation arrays must have the training arrays' types.")
    if tokens and x.ndim != 2 or not tokens and x.ndim not in (2, 3):
        shapes = "(samples, steps) tokens" if tokens else "(samples, steps[, features])"
        raise ValueError(f"{source}: `x_train` must be {shapes}, got shape {x.shape}.")
    if not tokens and x.ndim == 2:
        x, xv = x[..., None], xv[..., None] if xv.ndim == 2 else xv
    if xv.shape[1:] != x.shape[1:]:
        raise ValueError(
            f"{source}: `x_val` has shape {xv.shape}; expected (samples, *{x.shape[1:]}) "
            "like `x_train`."
        )
    for xs, ys, names in ((x, y, "x_train/y_train"), (xv, yv, "x_val/y_val")):
        if len(xs) != len(ys) or len(xs) == 0:
            raise ValueError(
                f"{source}: {names} have {len(xs)} and {len(ys)} rows; expected the same "
                "number, at least 1."
            )
    steps = x.shape[1]
    if steps == 0 or x.shape[2:] and x.shape[2] == 0 or y.ndim > 1 and 0 in y.shape[1:]:
        raise ValueError(
            f"{source}: `x_train` {x.shape} and `y_train` {y.shape} must have no empty "
            "axis (at least one step, feature and target)."
        )
    classes = y.dtype.kind in "iu"
    if classes and y.ndim == 2 and y.shape[1] == 1:
        y, yv = y[:, 0], yv[:, 0]
    if not classes and y.ndim == 1:
        y, yv = y[:, None], yv[:, None]
    per_step = y.ndim == (2 if classes else 3)
    if y.ndim > (2 if classes else 3) or (per_step and y.shape[1] > steps):
        kind = "(samples[, k]) classes" if classes else "(samples[, k], values)"
        raise ValueError(
            f"{source}: `y_train` must be {kind} with k <= {steps} steps, got shape {y.shape}."
        )
    if yv.shape[1:] != y.shape[1:]:
        raise ValueError(
            f"{source}: `y_val` has shape {yv.shape}; expected (samples, *{y.shape[1:]})."
        )
    objective = objective or ("val_accuracy" if classes else "val_loss")
    allowed = DATA_OBJECTIVES if classes else DATA_OBJECTIVES[:1]
    if objective not in allowed:
        raise ValueError(
            f"`objective` must be one of {', '.join(allowed)} for "
            f"{'classes' if classes else 'values'}, got {objective!r}."
        )
    if classes:
        if min(y.min(), yv.min()) < 0:
            raise ValueError(f"{source}: class labels in `y` must be >= 0.")
        outputs = int(max(y.max(), yv.max())) + 1
        counts = np.bincount(y.ravel(), minlength=outputs)
        if objective == "val_accuracy":
            baselines = {"most common class": float(np.mean(yv == counts.argmax()))}
        else:
            shares = (counts + 1.0) / (counts + 1.0).sum()
            baselines = {"class frequencies": float(-np.log(shares)[yv].mean())}
        y, yv = y.astype("int32"), yv.astype("int32")
    else:
        outputs = 0
        mse = np.mean((yv.astype("float64") - y.mean(axis=0, dtype="float64")) ** 2)
        baselines = {"always the mean": float(mse)}
        y, yv = y.astype("float32"), yv.astype("float32")
    if tokens:
        if min(x.min(), xv.min()) < 0:
            raise ValueError(f"{source}: tokens in `x` must be >= 0.")
        vocabulary = int(max(x.max(), xv.max())) + 1
        x, xv = x.astype("int32"), xv.astype("int32")
    else:
        vocabulary = 0
        x, xv = x.astype("float32"), xv.astype("float32")
    answer = y.shape[1] if per_step and y.shape[1] < steps else 0
    return Task(
        DATA,
        {"samples": len(x), "length": steps},
        x,
        y,
        x_val=xv,
        y_val=yv,
        objective=objective,
        direction=direction(objective),
        epochs=DATA_EPOCHS,
        baseline=next(iter(baselines.values())),
        baselines=baselines,
        timescale=steps,
        vocabulary=vocabulary,
        outputs=outputs,
        sequence_output=per_step,
        answer=answer,
        targets=1 if classes else y.shape[-1],
    )


def file_digest(path: str) -> str:
    """The SHA-256 of a file's bytes: a search on a data file stays on that data."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_data(path: str, objective: str | None = None, sha256: str | None = None) -> Task:
    """A task on the arrays of a `.npz` file: `x_train`, `y_train`, `x_val`, `y_val`
    (see `task_from_arrays`) and, if it has one, a string `objective`.

    Args:
        path: the file (`np.savez(path, x_train=..., ...)`).
        objective: the objective; None: the file's, else `task_from_arrays`'s default.
        sha256: if given, the file must still have these bytes (a resumed search).
    """
    if not os.path.isfile(path):
        raise ValueError(
            f"`data` {path}: no such file; expected a .npz of {', '.join(DATA_ARRAYS)}."
        )
    if sha256 and file_digest(path) != sha256:
        raise ValueError(
            f"{path} has changed since this search began (its SHA-256 differs); restore "
            "it, or search the new data in another directory."
        )
    expected = f"expected a .npz of {', '.join(DATA_ARRAYS)}"
    try:
        arrays = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise ValueError(f"`data` {path} is not a NumPy .npz file ({error}); {expected}.") from None
    if not isinstance(arrays, np.lib.npyio.NpzFile):
        raise ValueError(f"`data` {path} is a single array; {expected}.")
    with arrays:
        missing = [n for n in DATA_ARRAYS if n not in arrays.files]
        if missing:
            has = ", ".join(arrays.files) or "nothing"
            raise ValueError(f"{path} lacks {', '.join(missing)} (it has: {has}); {expected}.")
        try:
            data = [arrays[n] for n in DATA_ARRAYS]
            stored = arrays["objective"] if "objective" in arrays.files else None
        except ValueError as error:  # object arrays need pickle, which is never used
            raise ValueError(f"`data` {path}: {error}") from None
    if objective is None and stored is not None:
        objective = str(stored[()]) if stored.ndim == 0 else str(stored)
    return task_from_arrays(*data, objective=objective, source=path)


def spec_objective(spec: dict) -> tuple[str, str]:
    """The objective and direction of a stored search."""
    objective = spec.get("objective") or OBJECTIVES[spec["task"]][0]
    return objective, direction(objective)


def spec_task(spec: dict) -> Task:
    """The task a search's spec names: a built-in one, or its data file (which must
    be unchanged)."""
    if spec["task"] == DATA:
        data = spec["data"]
        return load_data(data["file"], spec["objective"], data["sha256"])
    return make_task(spec["task"], spec["seed"], **spec["sizes"])
