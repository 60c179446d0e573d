"""Gate statistics: plain NumPy functions of traced gates, used by the TensorBoard
callback, the demo and the search report."""

from __future__ import annotations

import numpy as np

SIGMOID_GATES = ("i", "f", "o", "z", "r")  # gates in [0, 1], whose saturation means something
LOW, HIGH = 0.1, 0.9  # saturation thresholds (Karpathy et al. 2015)


def has_memory(gates: dict) -> bool:
    """Whether traced gates take apart into a memory: an LSTM's (f, i, g, c) or a
    GRU's (z, g, h); a SimpleRNN's h alone does not."""
    return {"f", "i", "g", "c"} <= set(gates) or {"z", "g", "h"} <= set(gates)


def keep_and_write(gates: dict) -> tuple:
    """What each step keeps of the state and what it writes: an LSTM's
    `f` and `i * g`, a GRU's `z` and `(1 - z) * g` (arrays or tensors alike)."""
    if "c" in gates:
        return gates["f"], gates["i"] * gates["g"]
    return gates["z"], (1.0 - gates["z"]) * gates["g"]


def valid_values(values) -> np.ndarray:
    """The unmasked, finite entries of a (masked) array, flattened."""
    data = np.ma.getdata(values)[~np.ma.getmaskarray(values)]
    return data[np.isfinite(data)]


def saturation(values) -> tuple[float, float]:
    """Shares of the (unmasked, finite) activations below 0.1 and above 0.9."""
    data = valid_values(values)
    if data.size == 0:
        return float("nan"), float("nan")
    return float((data < LOW).mean()), float((data > HIGH).mean())


def unit_saturation(values) -> tuple[np.ndarray, np.ndarray]:
    """Per unit, over samples and steps: shares below 0.1 and above 0.9."""
    values = np.ma.masked_invalid(values).reshape(-1, values.shape[-1])
    return (values < LOW).mean(axis=0).filled(np.nan), (values > HIGH).mean(axis=0).filled(np.nan)


def forget_closed(f, share: float = 0.9) -> float:
    """Share of units whose forget gate is below 0.1 for at least 90% of steps."""
    return closed_share(unit_saturation(f)[0], share)


def closed_share(unit_left, share: float = 0.9) -> float:
    """Share of units below 0.1 for at least `share` of steps, from per-unit shares
    below 0.1 (NaN for a unit with no real step counts as open)."""
    return float(np.mean(np.asarray(unit_left) >= share))


def gate_statistics(gates: dict) -> dict:
    """One layer's traced gates summarised: per gate its mean (and, for sigmoid gates,
    `left`/`right` saturation), `forget_closed` when there is an f, and the count of
    non-finite values as `nonfinite`."""
    stats: dict = {}
    nonfinite = 0
    for name, values in gates.items():
        unmasked = np.ma.getdata(values)[~np.ma.getmaskarray(values)]
        data = unmasked[np.isfinite(unmasked)]
        nonfinite += int(unmasked.size - data.size)
        stats[name] = {"mean": float(data.mean()) if data.size else float("nan")}
        if name in SIGMOID_GATES:
            left, right = saturation(values)
            stats[name].update(left=left, right=right)
    if "f" in gates:
        stats["forget_closed"] = forget_closed(gates["f"])
    stats["nonfinite"] = nonfinite
    return stats


def same_steps(traced: dict) -> tuple[dict, list[str]]:
    """The traced layers that step along the first one's time axis (its sequence, as
    per-step annotations and the Gates tab follow it), and the names of the others
    (an encoder's decoder, a layer after pooling)."""

    def steps(gates):
        return next(iter(gates.values())).shape[1]

    first = steps(next(iter(traced.values())))
    kept = {name: gates for name, gates in traced.items() if steps(gates) == first}
    return kept, [name for name in traced if name not in kept]
