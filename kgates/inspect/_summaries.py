"""The dashboards' numbers, computed where the gates are (the GPU, where there is one).

`kgates.TensorBoard` needs histograms, saturation, means, forget-closed shares,
non-finite counts and memory spans of every gate of the probe; these are a
few hundred numbers, while the gates themselves are `batch * time * units`
values per gate. `PartSummaries` computes them with `keras.ops` inside the
tracing model, so only the numbers, per-unit shares and the first probe
sequence (for the pictures) cross to the host. The NumPy functions of
`_stats.py`, `histogram_proto` and `Memory.span` compute the same from traced
arrays, and are the reference the tests hold these to.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from kgates.cells._backend import bucket_counts, counting
from kgates.cells._recompute import linear_scan
from kgates.inspect._stats import HIGH, LOW, SIGMOID_GATES, has_memory, keep_and_write

BINS = 30  # as `histogram_proto` and TensorBoard's default


def histograms(values, weight, bins: int = BINS) -> dict:
    """Count, sum, sum of squares, min, max and `bins` bucket counts (equal widths from
    min to max, as `numpy.histogram`; a constant gets min - 0.5 to max + 0.5) of the
    entries of each row of `values` `(rows, n)` where `weight` is 1 (and 0 elsewhere):
    each statistic `(rows,)`, the counts `(rows, bins)`; count and counts int32. One
    computation for all rows, so that the graph (and its compile time) does not grow
    with the number of gates."""
    on = weight > 0
    values = ops.where(on, values, 0.0)  # 0 where off: the sums need no weight
    low = ops.min(ops.where(on, values, np.inf), axis=1)
    high = ops.max(ops.where(on, values, -np.inf), axis=1)
    constant = high <= low  # also when there is nothing (inf, -inf)
    start = ops.where(constant, low - 0.5, low)
    start = ops.where(ops.isfinite(start), start, 0.0)
    width = ops.where(constant, 1.0, high - low)
    index = ops.clip((values - start[:, None]) * (bins / width)[:, None], 0, bins - 1)
    counts = bucket_counts(ops.cast(index, "int32"), on, bins)  # >= 0: the cast is the floor
    return {
        "num": ops.sum(counts, axis=1),
        "sum": ops.sum(values, axis=1),
        "sum_squares": ops.sum(values * values, axis=1),
        "min": low,
        "max": high,
        "counts": counts,
    }


def order_statistics(values, weight, ranks, bins: int | None = None, passes: int | None = None):
    """The `ranks`-th smallest (from 0; a 1-D int tensor of ranks) of the entries where
    `weight` is 1, each to within (max - min) / (2 * bins**passes): each pass counts
    the entries in `bins` equal buckets of the range left and keeps the bucket that
    holds the rank. Counting is linear in the entries, where a sort (the exact way)
    costs more than the rest of the dashboards together on a CPU. By default 2
    passes of 1024 buckets, or 4 of 32 when counting compares (`counting()`): the
    same resolution, 2**20, for a 16th of the comparisons."""
    if bins is None or passes is None:
        bins, passes = (32, 4) if counting() == "compare" else (1024, 2)
    ranks = ops.convert_to_tensor(ranks, "int32")
    count = ranks.shape[0]
    values = ops.reshape(ops.convert_to_tensor(values, "float32"), (1, -1))
    on = ops.reshape(ops.convert_to_tensor(weight) > 0, (1, -1))
    start = ops.min(ops.where(on, values, np.inf))
    end = ops.max(ops.where(on, values, -np.inf))
    on = ops.logical_and(on, ops.ones((count, 1), "bool"))  # one row per rank
    below = ops.zeros((count,), "int32")
    low, high = start + ops.zeros((count,)), end + ops.zeros((count,))
    for _ in range(passes):
        width = ops.where(high > low, (high - low) / bins, 1.0)
        index = ops.floor((values - low[:, None]) / width[:, None])
        index = ops.cast(ops.clip(index, 0, bins - 1), "int32")
        counts = bucket_counts(index, on, bins)  # (count, bins)
        cumulative = ops.cumsum(counts, axis=1) + below[:, None]
        bucket = ops.minimum(ops.sum(ops.cast(cumulative <= ranks[:, None], "int32"), 1), bins - 1)
        lower = ops.arange(bins)[None, :] < bucket[:, None]
        below = below + ops.sum(ops.where(lower, counts, 0), axis=1)
        on = ops.logical_and(on, index == bucket[:, None])
        low = low + ops.cast(bucket, "float32") * width
        high = low + width
    return ops.where(end > start, (low + high) / 2.0, start)


def _median(values, weight):
    """The median of the entries where `weight` is 1 (the mean of the middle two for an
    even count, as `numpy.median`), by `order_statistics`."""
    n = ops.sum(ops.cast(ops.convert_to_tensor(weight) > 0, "int32"))
    middle = ops.stack([ops.floor_divide(n - 1, 2), ops.floor_divide(n, 2)])
    return ops.mean(order_statistics(values, weight, middle))


def memory_span(keep, write, valid, backwards: bool):
    """`(batch, time, units)`: the mean age of what each unit's state holds at each
    step, by the recurrences of `Memory.span` (A_t = |k_t| A_{t-1} + |w_t|,
    B_t = |k_t| (B_{t-1} + A_{t-1} at real steps)), as two linear scans; input
    time order in and out."""
    real = valid[..., None]
    keep = ops.abs(ops.where(real > 0, keep, 1.0))
    write = ops.abs(ops.where(real > 0, write, 0.0))
    if backwards:
        keep, write, real = (ops.flip(a, axis=1) for a in (keep, write, real))
    total = linear_scan(keep, write)
    before = ops.concatenate([ops.zeros_like(total[:, :1]), total[:, :-1]], axis=1)
    aged = linear_scan(keep, keep * before * real)
    span = ops.where(total > 0, aged / ops.where(total > 0, total, 1.0), 0.0)
    return ops.flip(span, axis=1) if backwards else span


class PartSummaries(keras.layers.Layer):
    """One traced part's dashboard numbers, from `PartGates`'s packed output.

    Returns a flat dict: for every key k (h and the gates) `k/num`, `k/sum`,
    `k/sum_squares`, `k/min`, `k/max`, `k/counts` (the histogram), for sigmoid
    gates also `k/left`, `k/right` (shares below 0.1 and above 0.9) and
    `k/unit_left`, `k/unit_right` (per unit); `nonfinite`; for an LSTM or GRU
    `span/...` (the histogram of memory spans) and `span/median`; and `first`,
    `first_valid`: the packed gates of the first probe sequence, for pictures.
    """

    def __init__(self, names: tuple, keys: tuple, units: int, backwards: bool, **kwargs):
        super().__init__(dtype="float32", **kwargs)
        self.names, self.keys = tuple(names), tuple(keys)  # packed layout, what is summarised
        self.units, self.backwards = units, backwards

    def compute_output_spec(self, packed, valid):
        # by hand: Keras's symbolic trace of `call` needs a static number of steps
        def spec(*shape, dtype="float32"):
            return keras.KerasTensor(shape, dtype)

        keys = [k for k in self.names if k in self.keys]
        stats = ("sum", "sum_squares", "min", "max")
        out = {"first": spec(1, *packed.shape[1:]), "first_valid": spec(1, valid.shape[1])}
        out["nonfinite"] = spec(dtype="int32")
        for key in keys + (["span"] if has_memory(dict.fromkeys(keys)) else []):
            out.update({f"{key}/{stat}": spec() for stat in stats})
            out[f"{key}/num"], out[f"{key}/counts"] = spec(dtype="int32"), spec(BINS, dtype="int32")
            if key in SIGMOID_GATES:
                for side in ("left", "right"):
                    out[f"{key}/{side}"], out[f"{key}/unit_{side}"] = spec(), spec(self.units)
        if "span/num" in out:
            out["span/median"] = spec()
        return out

    def call(self, packed, valid):
        out = {"first": packed[:1], "first_valid": valid[:1]}
        values = {
            k: packed[..., j * self.units : (j + 1) * self.units]
            for j, k in enumerate(self.names)
            if k in self.keys
        }
        keys = tuple(values)
        stacked = ops.stack([values[k] for k in keys])  # (keys, batch, time, units)
        finite = ops.isfinite(stacked)
        real = valid[None, ..., None]
        weight = ops.cast(finite, "float32") * real
        bad = ops.logical_and(real > 0, ops.logical_not(finite))
        out["nonfinite"] = ops.sum(ops.cast(bad, "int32"))
        rows = len(keys)
        flat = histograms(ops.reshape(stacked, (rows, -1)), ops.reshape(weight, (rows, -1)))
        for row, key in enumerate(keys):
            for stat, value in flat.items():
                out[f"{key}/{stat}"] = value[row]
        sigmoid = [row for row, key in enumerate(keys) if key in SIGMOID_GATES]
        if sigmoid:
            gates, weight = ops.take(stacked, sigmoid, axis=0), ops.take(weight, sigmoid, axis=0)
            per_unit = ops.sum(weight, axis=(1, 2))  # (gates, units)
            for side, on in (("left", gates < LOW), ("right", gates > HIGH)):
                hits = ops.sum(ops.cast(on, "float32") * weight, axis=(1, 2))
                share = ops.sum(hits, axis=1) / ops.sum(per_unit, axis=1)
                for i, row in enumerate(sigmoid):
                    out[f"{keys[row]}/{side}"] = share[i]
                    out[f"{keys[row]}/unit_{side}"] = hits[i] / per_unit[i]
        if has_memory(values):
            span = memory_span(*keep_and_write(values), valid, self.backwards)
            weight = ops.cast(ops.isfinite(span), "float32") * valid[..., None]
            flat = histograms(ops.reshape(span, (1, -1)), ops.reshape(weight, (1, -1)))
            for stat, value in flat.items():
                out[f"span/{stat}"] = value[0]
            out["span/median"] = _median(span, weight)
        return out


def unflatten(out: dict, part: str, names: tuple, keys: tuple) -> dict:
    """`{key: {stat: value}}` of one part's NumPy outputs (`part/key/stat` names), with
    `nonfinite`, and `first` as `{key: (1, time, units)}` masked arrays of `keys`."""
    prefix = f"{part}/"
    stats: dict = {}
    for name, value in out.items():
        if name.startswith(prefix) and "/" in name[len(prefix) :]:
            key, stat = name[len(prefix) :].split("/")
            stats.setdefault(key, {})[stat] = np.asarray(value)
    first, valid = out[prefix + "first"], out[prefix + "first_valid"] > 0.5
    units = first.shape[-1] // len(names)
    padded = np.broadcast_to(~valid[..., None], (*valid.shape, units))
    stats["first"] = {
        k: np.ma.masked_array(first[..., j * units : (j + 1) * units], mask=padded)
        for j, k in enumerate(names)
        if k in keys
    }
    stats["nonfinite"] = int(round(float(out[prefix + "nonfinite"])))
    return stats
