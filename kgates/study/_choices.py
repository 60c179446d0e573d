"""The studies' choices as plain data: cell codes, the search space and its
check, the demo's sizes. No Keras here: the command line reads these to parse
and explain its options before anything heavy loads."""

from __future__ import annotations

import math

from kgates.cells._variants import VARIANTS

CELLS = (*VARIANTS, "GRU")
ABOUT_CELLS = {  # one line each, for `kgates tune --help`
    "V": "vanilla LSTM with peepholes (Greff et al. 2015)",
    "NP": "no peepholes: Keras's LSTM",
    "NIG": "no input gate",
    "NFG": "no forget gate",
    "NOG": "no output gate",
    "NIAF": "no input activation",
    "NOAF": "no output activation",
    "CIFG": "coupled input and forget gate",
    "FGR": "full gate recurrence",
    "GRU": "Keras's GRU (Cho et al. 2014)",
}
FORGET_BIASES = ("zero", "one", "chrono")
# The search space; every entry can be narrowed (`GateHyperModel` arguments,
# `kgates tune` flags). Tuples of two floats are ranges; others are choices.
SPACE = {
    "units": (32, 64, 128),
    "layers": (1, 2),
    "learning_rate": (3e-4, 3e-2),
    "dropout": (0.0, 0.3),
    "forget_bias": FORGET_BIASES,
    "clipnorm": (0.0, 1.0, 10.0),
    "reset_after": (True, False),
}
RANGES = ("learning_rate", "dropout")


def check_space(cells, space: dict) -> tuple[tuple[str, ...], dict]:
    """Validates cell codes and search-space entries; returns them normalised."""
    if isinstance(cells, str):
        cells = cells.split(",")
    cells = tuple(c.strip() for c in cells)
    for cell in cells:
        if cell not in CELLS:
            raise ValueError(f"unknown cell {cell!r} in `cells`; expected codes from {CELLS}.")
    if not cells or len(set(cells)) != len(cells):
        raise ValueError(f"`cells` must be distinct codes from {CELLS}, got {cells}.")
    unknown = sorted(set(space) - set(SPACE))
    if unknown:
        raise ValueError(f"unknown search-space entry {unknown[0]!r}; expected {sorted(SPACE)}.")
    out = dict(SPACE)
    for name, value in space.items():
        value = tuple(value) if isinstance(value, (tuple, list)) else (value,)
        if not value:
            raise ValueError(f"`{name}` needs at least one value.")
        if name in RANGES:
            if len(value) > 2 or not all(isinstance(v, (int, float)) for v in value):
                raise ValueError(f"`{name}` must be a value or a (low, high) range, got {value}.")
            low, high = float(value[0]), float(value[-1])
            if not (math.isfinite(low) and math.isfinite(high)):
                raise ValueError(f"`{name}` must be finite, got {value}.")
            ok = 0 < low <= high if name == "learning_rate" else 0 <= low <= high < 1
            if not ok:
                bounds = "0 < low <= high" if name == "learning_rate" else "0 <= low <= high < 1"
                raise ValueError(f"`{name}` must satisfy {bounds}, got {value}.")
            value = (low, high)
        elif name == "forget_bias":
            if not set(value) <= set(FORGET_BIASES):
                raise ValueError(f"`forget_bias` values must be from {FORGET_BIASES}, got {value}.")
        elif name == "reset_after":
            if not all(isinstance(v, bool) for v in value):
                raise ValueError(f"`reset_after` values must be True or False, got {value}.")
        elif name in ("units", "layers"):
            if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value):
                raise ValueError(f"`{name}` values must be positive integers, got {value}.")
        elif name == "clipnorm":
            if not all(isinstance(v, (int, float)) and math.isfinite(v) and v >= 0 for v in value):
                raise ValueError(f"`clipnorm` values must be >= 0 (0: none), got {value}.")
            value = tuple(float(v) for v in value)
        out[name] = value if name in RANGES else tuple(dict.fromkeys(value))
    return cells, out


# The demo's sizes: it learns on a laptop CPU in about ten seconds.
DEMO = {"units": 32, "length": 30, "samples": 4000, "epochs": 15}
