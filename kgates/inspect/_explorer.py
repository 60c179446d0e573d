"""The gate explorer's data: what the "Gates" tab, `kgates explore`
and `kgates.show` show, and the select -> match search they share.

One explorer record is a bounded slice of a probe's trace: at most `sequences`
sequences x `steps` steps x `units` units per layer, float16. In a TensorBoard
run it is a set of tensor summaries under the plugin name `kgates`:

- `explorer/meta`: JSON (layers, their keys, units and direction, tokens,
  per-unit quantiles, the unit table);
- `explorer/valid`: `(sequences, steps)` uint8, 1 at real steps;
- `explorer/inputs`: `(sequences, steps, features)` float16, when there are
  no tokens (at most `FEATURES` features);
- `explorer/{layer}/{key}`: `(sequences, steps, units)` float16, every traced
  gate, `c` and `h`.
"""

from __future__ import annotations

import json
import math

import numpy as np
from tensorboard.compat.proto.summary_pb2 import DATA_CLASS_TENSOR, Summary, SummaryMetadata
from tensorboard.compat.proto.tensor_pb2 import TensorProto
from tensorboard.compat.proto.tensor_shape_pb2 import TensorShapeProto
from tensorboard.util import tensor_util

from kgates.inspect._stats import has_memory, same_steps

PLUGIN_NAME = "kgates"
SEQUENCES = 32  # default bounds of one record
STEPS = 200
UNITS = 256
FEATURES = 8
QUANTILES = (0.5, 0.75, 0.9, 0.95, 0.99)  # per unit, to help choose a threshold
MATCHES = 50  # matches listed, at most


def _plugin_value(tag: str, array: np.ndarray) -> Summary.Value:
    metadata = SummaryMetadata(
        plugin_data=SummaryMetadata.PluginData(plugin_name=PLUGIN_NAME),
        data_class=DATA_CLASS_TENSOR,
    )
    if array.dtype == object:  # the JSON string
        tensor = tensor_util.make_tensor_proto(array)
    else:  # raw bytes (make_tensor_proto writes float16 as one int per value: 15x slower)
        tensor = TensorProto(
            dtype=tensor_util.dtypes.as_dtype(array.dtype).as_datatype_enum,
            tensor_shape=TensorShapeProto(dim=[TensorShapeProto.Dim(size=d) for d in array.shape]),
            tensor_content=np.ascontiguousarray(array).tobytes(),
        )
    return Summary.Value(tag=tag, metadata=metadata, tensor=tensor)


def _bounded(name: str, value, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"`{name}` must be an integer >= {low}, got {value!r}.")
    return int(value)


def tokens_of(text, x, sequences: int, steps: int) -> list[list[str]] | None:
    """The probe's tokens: `text` is a function from one input sequence to its list of
    tokens (strings), or a list of such lists, or None."""
    if text is None:
        return None
    rows = np.asarray(x)[:sequences]
    tokens = [text(row) for row in rows] if callable(text) else list(text)[:sequences]
    if len(tokens) < len(rows):
        raise ValueError(
            f"`probe_text` must give the tokens of every probe sequence: got {len(tokens)} "
            f"lists for {len(rows)} sequences."
        )
    out = []
    for n, row in enumerate(tokens):
        row = [str(token) for token in row]
        if len(row) < min(steps, np.asarray(x).shape[1]):
            raise ValueError(
                "`probe_text` must give one token per step: sequence "
                f"{n} has {np.asarray(x).shape[1]} steps but {len(row)} tokens."
            )
        out.append(row[:steps])
    return out


def probe_notes(text, annotations, first, keep, sequences: int, steps: int) -> tuple:
    """`kgates.TensorBoard`'s `probe_text` and `annotations`, checked and taken at the
    rows `keep` of the probe (its subsample): (tokens or None, annotations or None)."""
    where = "kgates.TensorBoard: "
    if annotations is not None and not isinstance(annotations, dict):
        raise ValueError(
            f"{where}`annotations` must be a dict {{name: (batch, time) array}} of the "
            f"probe, got {type(annotations).__name__}."
        )
    if first is None:
        return None, None
    tokens = None
    if text is not None:
        if not callable(text) and len(text) != keep[-1] + 1:
            raise ValueError(
                f"{where}`probe_text` must be a function or one list of tokens per probe "
                f"sequence ({keep[-1] + 1}), got {len(text)} lists."
            )
        try:
            tokens = tokens_of(
                text if callable(text) else [text[k] for k in keep], first, sequences, steps
            )
        except ValueError as error:
            raise ValueError(where + str(error)) from None
    notes = None
    if annotations:
        notes, expected = {}, (int(keep[-1]) + 1, int(first.shape[1]))
        for name, values in annotations.items():
            values = np.asarray(values)
            if values.shape != expected:
                raise ValueError(
                    f"{where}`annotations[{name!r}]` must be a (batch, time) array of the "
                    f"probe, shape {expected}; got {values.shape}."
                )
            notes[name] = values[keep]
    return tokens, notes


def explorer_record(
    traced: dict,
    backwards: dict | None = None,
    x=None,
    tokens: list[list[str]] | None = None,
    units_table: list[dict] | None = None,
    sequences: int = SEQUENCES,
    steps: int = STEPS,
    units: int = UNITS,
) -> tuple[dict, dict]:
    """(meta, arrays) of one explorer record from `kgates.trace`'s output.

    Args:
        traced: `{layer: {key: (batch, time, units) masked array}}`; layers that
            step along another time axis than the first are left out (named in
            the record's `other_steps`).
        backwards: `{layer: reads the input from its end}`.
        x: the traced inputs (drawn as lines when there are no tokens).
        tokens: one list of tokens per sequence (see `tokens_of`).
        units_table: rows of `kgates.find_units` (dicts), shown as the unit table.
        sequences, steps, units: the bounds of the record.
    """
    sequences = _bounded("sequences", sequences)
    steps = _bounded("steps", steps)
    units = _bounded("units", units)
    traced, other = same_steps(traced)  # one sequence's steps: the first layer's
    first = next(iter(next(iter(traced.values())).values()))
    n, t = min(first.shape[0], sequences), min(first.shape[1], steps)
    valid = ~np.ma.getmaskarray(first)[:n, :t, 0]
    arrays = {"valid": valid.astype(np.uint8)}
    layers = []
    for name, gates in traced.items():
        size = next(iter(gates.values())).shape[-1]
        kept = min(size, units)
        quantiles, keys = {}, []
        for key, values in gates.items():
            data = np.ma.getdata(values)[:n, :t, :kept].astype(np.float16)
            data = np.where(valid[..., None], data, np.float16(0))
            arrays[f"{name}/{key}"] = data
            keys.append(key)
            quantiles[key] = _unit_quantiles(data[valid].astype(np.float32), kept)
        kind = None
        if has_memory(gates):
            kind = "lstm" if "c" in gates else "gru"
        layers.append(
            {
                "name": name,
                "keys": keys,
                "units": kept,
                "total_units": int(size),
                "backwards": bool((backwards or {}).get(name, False)),
                "memory": kind,
                "quantiles": quantiles,
            }
        )
    meta = {
        "version": 1,
        "sequences": int(n),
        "steps": int(t),
        "layers": layers,
        "quantile_levels": list(QUANTILES),
        "tokens": None if tokens is None else [row[:t] for row in tokens[:n]],
        "features": 0,
        "units_table": units_table or [],
        "other_steps": other,  # layers left out: they step along another time axis
    }
    if tokens is None and x is not None:
        inputs = np.asarray(x)
        if inputs.ndim == 2:
            inputs = inputs[..., None]
        same_time = inputs.ndim == 3 and inputs.shape[1] == first.shape[1]  # not pooled
        if same_time and np.issubdtype(inputs.dtype, np.number):
            inputs = inputs[:n, :t, :FEATURES].astype(np.float16)
            arrays["inputs"] = np.where(valid[..., None], inputs, np.float16(0))
            meta["features"] = int(inputs.shape[-1])
    return meta, arrays


def _unit_quantiles(real: np.ndarray, units: int) -> list:
    """Each unit's `QUANTILES` over its finite values at real steps `(steps, units)`
    (linear interpolation, as `numpy.quantile`); None where it has none (a diverged
    model's NaN and inf are left out). One sort for all units."""
    finite = np.isfinite(real)
    count = finite.sum(axis=0)
    if not count.any():
        return [[None] * len(QUANTILES)] * units
    # per unit along a contiguous axis (faster than down the columns), finite values first
    ordered = np.sort(np.ascontiguousarray(np.where(finite, real, np.inf).T), axis=1)
    last = np.maximum(count - 1, 0)
    position = np.asarray(QUANTILES)[:, None] * last  # (quantiles, units)
    below = np.floor(position).astype(np.intp)
    above = np.minimum(below + 1, last)
    columns = np.arange(units)
    low = ordered[columns, below].astype(np.float64)
    high = ordered[columns, above].astype(np.float64)
    with np.errstate(invalid="ignore"):  # inf - inf in units without a finite value
        quantiles = np.where(count > 0, low + (high - low) * (position - below), np.nan)
    return finite_json(np.round(quantiles.T, 4).tolist())


def finite_json(value):
    """`value` (dicts, lists, numbers) with NaN and inf as None: strict JSON."""
    if isinstance(value, dict):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def record_summary(meta: dict, arrays: dict) -> Summary:
    """The tensor summaries (plugin `kgates`) of one explorer record."""
    meta = json.dumps(finite_json(meta), allow_nan=False)
    values = [_plugin_value("explorer/meta", np.array(meta.encode(), dtype=object))]
    values += [_plugin_value(f"explorer/{name}", array) for name, array in arrays.items()]
    return Summary(value=values)


def units_rows(units, per_annotation: int = 10) -> list[dict]:
    """The explorer's unit table from a `kgates.Units`."""
    rows = []
    for annotation, ranked in units.rows.items():
        for row in ranked[:per_annotation]:
            rows.append(
                {
                    "annotation": annotation,
                    "kind": units.kinds[annotation],
                    "layer": row["layer"],
                    "key": row["key"],
                    "unit": int(row["unit"]),
                    "r": round(float(row["r"]), 4),
                    "probe": round(float(row["probe"]), 4),
                    "chance": round(float(units.chance[annotation]), 4),
                }
            )
    return rows


# Select -> match, as in LSTMVis (Strobelt et al. 2017). The front end has the
# same two functions in JavaScript (explorer.js); tests hold them to each other.
def pattern_units(values, sequence: int, start: int, end: int, threshold: float) -> np.ndarray:
    """The units whose value is >= `threshold` at every step of `start..end` (inclusive)
    of one sequence: the pattern a selection defines. `values`: (batch, time, units)."""
    window = np.asarray(values, np.float64)[sequence, start : end + 1]
    return np.flatnonzero((window >= threshold).all(axis=0))


def find_matches(
    values,
    valid,
    units,
    threshold: float,
    length: int,
    exclude: tuple[int, int, int] | None = None,
    limit: int = MATCHES,
) -> list[dict]:
    """Places where every unit of a pattern is on (>= `threshold`) together.

    A match is a maximal run of real steps at which all `units` are on. Matches
    are ranked by how close their length is to `length` (the selection's), then
    by their mean margin (the smallest value of the pattern's units minus the
    threshold, averaged over the run, rounded half up to 6 decimals), then by position.
    A run that overlaps `exclude = (sequence, start, end)` (the selection) is left
    out.

    Returns:
        At most `limit` dicts with `sequence`, `start`, `end` (inclusive), `length`
        and `margin`, best first.
    """
    units = np.asarray(units, int)
    if units.size == 0:
        return []
    chosen = np.asarray(values, np.float64)[..., units]
    low = chosen.min(axis=-1)
    on = (chosen >= threshold).all(axis=-1) & np.asarray(valid, bool)
    found = []
    for n, row in enumerate(on):
        edges = np.flatnonzero(np.diff(np.concatenate([[0], row.astype(np.int8), [0]])))
        for start, stop in zip(edges[::2], edges[1::2]):
            end = int(stop) - 1
            if exclude is not None and n == exclude[0]:
                if start <= exclude[2] and end >= exclude[1]:  # overlaps the selection
                    continue
            margin = 0.0  # summed in order, as the front end does
            for value in low[n, start:stop]:
                margin += float(value) - threshold
            margin = math.floor(margin / (stop - start) * 1e6 + 0.5) / 1e6
            found.append(
                {
                    "sequence": n,
                    "start": int(start),
                    "end": end,
                    "length": end - int(start) + 1,
                    "margin": margin,
                }
            )
    found.sort(key=lambda m: (abs(m["length"] - length), -m["margin"], m["sequence"], m["start"]))
    return found[:limit]
