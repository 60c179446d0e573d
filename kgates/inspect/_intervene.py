"""Gate interventions: change a gate, c or h inside the recurrence of the user's own
model, for chosen units and steps, and see what the model outputs.

Each edited layer runs, for the one call, as its kgates equivalent with the same
weights, stepping a cell that applies the edits as each value is computed; later
steps, later layers and the model's head all see the change. The edits travel
with the input sequence as extra features, so masks, `go_backwards` and every
backend's loop treat them as they treat the input.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import keras
import numpy as np
from keras import ops

from kgates.cells._equivalent import equivalent_cell
from kgates.cells._lstm import LSTMCell
from kgates.inspect._walk import KeptStates, ModelWalk, RecurrentPart, carried_state

_UNIT_RANGE = ("sigmoid", "hard_sigmoid")  # activations with values in [0, 1]
_SIGNED_RANGE = ("tanh", "soft_sign", "hard_tanh")  # in [-1, 1]


@dataclasses.dataclass
class Edit:
    """A change to one gate (or c, h) of one layer, for some units and steps.

    Args:
        value: what the gate is set to: a number, or an array that broadcasts to
            `(batch, time, units)`; a NumPy masked array leaves its masked
            entries unchanged. Default: None (give `source`).
        units: the units changed: an int, a list of ints, a slice, or None for
            all. Default: None.
        steps: the steps changed, in the input's time order: an int, a list, a
            slice, or None for all. Default: None.
        source: another input batch (shaped like `x`): the gate takes the values
            it has when the model runs on `source` (activation patching).
            Default: None.

    Example:

    >>> kgates.Edit(0.0, units=[12], steps=slice(10, None))   # gate shut from step 10
    >>> kgates.Edit(source=x_clean)                            # values from another input
    """

    value: object = None
    units: object = None
    steps: object = None
    source: object = None

    def __post_init__(self):
        if (self.value is None) == (self.source is None):
            raise ValueError("kgates.Edit: give exactly one of `value` and `source`.")


def _gate_names(cell, twin) -> tuple[str, ...]:
    """What an edit may name: `cell`'s gates (its kgates `twin`'s), c and h."""
    if isinstance(cell, keras.layers.SimpleRNNCell):
        return ("h",)  # its kgates twin's gates are constants, not the layer's
    names = tuple(n for n in twin.gate_names if n != "c")
    return (*names, "c", "h") if isinstance(twin, LSTMCell) else (*names, "h")


def _value_range(cell, gate: str):
    """The range of a gate's values, or None where it has none to check."""
    if gate in ("c", "h"):
        return None
    activation = cell.activation if gate == "g" else cell.recurrent_activation
    name = keras.activations.serialize(activation)
    name = name if isinstance(name, str) else getattr(activation, "__name__", "")
    if name in _UNIT_RANGE:
        return 0.0, 1.0
    if name in _SIGNED_RANGE:
        return -1.0, 1.0
    return None


def _selection(selector, size: int, what: str, where: str) -> np.ndarray:
    """A boolean array of `size` for an int, list, slice or None."""
    chosen = np.zeros(size, bool)
    if selector is None:
        chosen[:] = True
    elif isinstance(selector, slice):
        chosen[selector] = True
    else:
        index = np.atleast_1d(np.asarray(selector))
        if index.dtype.kind not in "iu" or index.ndim != 1 or not index.size:
            raise ValueError(
                f"kgates.intervene: {where}: `{what}` must be an int, a list of ints or a "
                f"slice, got {selector!r}."
            )
        if index.min() < -size or index.max() >= size:
            raise ValueError(
                f"kgates.intervene: {where}: `{what}` {selector!r} is out of range (the "
                f"layer has {size} {what})."
            )
        chosen[index] = True
    return chosen


class _EditingCell(keras.layers.Layer):
    """Steps a kgates cell, applying edits that arrive as extra input features:
    for each edited gate, its value then a 0/1 flag, `units` wide each."""

    def __init__(self, cell, gates: tuple[str, ...], **kwargs):
        super().__init__(**kwargs)
        self.cell = cell
        self.gates = gates
        self.state_size = cell.state_size
        self.output_size = cell.output_size
        self.built = True

    def call(self, inputs, states, training=False):
        units, width = self.cell.units, 2 * self.cell.units * len(self.gates)
        x, extra = inputs[:, :-width], inputs[:, -width:]
        edits = {}
        for k, gate in enumerate(self.gates):
            value = extra[:, 2 * k * units : (2 * k + 1) * units]
            where = extra[:, (2 * k + 1) * units : (2 * k + 2) * units]
            edits[gate] = (value, where)

        def edit(name, current):
            if name not in edits:
                return current
            value, where = edits[name]
            return where * ops.cast(value, current.dtype) + (1.0 - where) * current

        return self.cell.call(x, states, training=False, edit=edit)


class _Intervention:
    """While active, the edited parts' layers run their edited twins."""

    def __init__(self, parts: dict[str, RecurrentPart], features: dict[str, np.ndarray]):
        self.parts, self.features = parts, features
        self.twins = {}
        for name, part in parts.items():
            cell = equivalent_cell(part.cell)
            layer = part.layer
            gates = tuple(features[name][1])
            self.twins[name] = keras.layers.RNN(
                _EditingCell(cell, gates),
                return_sequences=layer.return_sequences,
                return_state=layer.return_state,
                go_backwards=layer.go_backwards,
                zero_output_for_mask=getattr(layer, "zero_output_for_mask", False),
            )

    def _call(self, name):
        twin, (extra, _) = self.twins[name], self.features[name]
        layer = self.parts[name].layer

        def call(sequences, initial_state=None, mask=None, training=False):
            if initial_state is None:  # a stateful layer's: where it is now
                initial_state = carried_state(layer, sequences.shape[0])
            extra_ = ops.cast(ops.convert_to_tensor(extra), sequences.dtype)
            joined = ops.concatenate([sequences, extra_], axis=-1)
            return twin(joined, initial_state=initial_state, mask=mask, training=False)

        return call

    def __enter__(self):
        for name, part in self.parts.items():
            part.layer.call = self._call(name)
        return self

    def __exit__(self, *exc):
        for part in self.parts.values():
            del part.layer.call  # back to the class's method


def intervene(model: keras.Model, x, edits: Mapping) -> object:
    """The model's outputs on `x` with gates (or c, h) changed inside the recurrence.

    Works on the model as it is (stock `keras.layers.LSTM`/`GRU`/`SimpleRNN`,
    kgates layers, stacked, Bidirectional, with layers around them), on every
    backend, with the model's own masks. Each edit applies where it is computed
    within a step, so the rest of the step, later steps and later layers see it.
    A stateful layer starts from the state it carries, and keeps it: asking what
    the model would output moves no layer on.

    Args:
        model: a functional or Sequential Keras model built on `keras.Input`.
        x: a batch of model inputs.
        edits: `{layer: {gate: edit}}`; a layer by name (a Bidirectional's
            `"name/forward"`, `"name/backward"`, or its name for both); a gate
            one of the LSTM's `i f g o c h`, the GRU's `z r g h` or a SimpleRNN's
            `h`; an edit a number (for every unit and step) or a `kgates.Edit`.

    Returns:
        The model's outputs (NumPy), as `model.predict` gives them.

    Example:

    >>> y = kgates.intervene(model, x, {"lstm": {"f": 1.0}})   # every forget gate open
    >>> y = kgates.intervene(model, x, {"lstm": {"i": kgates.Edit(0.0, units=[3])}})
    """
    walk = ModelWalk(model)
    x = walk.check_inputs(x, "kgates.intervene")
    if not isinstance(edits, Mapping):
        raise ValueError(
            "kgates.intervene: argument `edits` must be a dict {layer: {gate: edit}}, "
            f"got {type(edits).__name__}."
        )
    by_name = {p.name: p for p in walk.parts}
    wrappers = {}
    for p in walk.parts:
        wrappers.setdefault(p.wrapper.name, []).append(p)
    batch = keras.tree.flatten(x)[0].shape[0]
    parts, features, sources, steps = {}, {}, {}, {}
    for layer_name, gate_edits in edits.items():
        chosen = [by_name[layer_name]] if layer_name in by_name else wrappers.get(layer_name)
        if not chosen:
            known = sorted(set(by_name) | set(wrappers))
            raise ValueError(
                f"kgates.intervene: no recurrent layer named {layer_name!r}; the model's "
                f"recurrent layers are {known}."
            )
        if not isinstance(gate_edits, Mapping):
            raise ValueError(
                f"kgates.intervene: edits[{layer_name!r}] must be a dict {{gate: edit}}, "
                f"got {type(gate_edits).__name__}."
            )
        for part in chosen:
            if gate_edits:
                if part.sequence_input.shape[1] is None and not steps:  # as this x makes it
                    steps = {k: v.shape[1] for k, v in walk.layer_inputs(x)[0].items()}
                parts[part.name] = part
                features[part.name] = _part_features(
                    part, gate_edits, (batch, steps.get(part.name)), model, sources
                )
    with KeptStates(model):
        if not parts:
            return _numpy(model(x, training=False))
        with _Intervention(parts, features):
            return _numpy(model(x, training=False))


def _part_features(part, gate_edits, shape, model, sources) -> tuple:
    """The extra input features of one part's edits, and the gates they edit; `shape`
    is (batch, steps), steps None where the layer's input has a fixed length."""
    cell = part.cell
    units = cell.units
    batch, steps = shape
    steps = part.sequence_input.shape[1] or steps
    twin = equivalent_cell(cell, build=False)  # its activations say the gates' ranges
    valid = _gate_names(cell, twin)
    blocks, gates = [], []
    for gate, edit in gate_edits.items():
        if gate not in valid:
            raise ValueError(
                f"kgates.intervene: layer {part.name!r} has no gate {gate!r}; it has "
                f"{', '.join(valid)}."
            )
        if not isinstance(edit, Edit):
            edit = Edit(edit)
        where = f"{part.name}/{gate}"
        if edit.source is not None:
            from kgates.inspect._trace import trace  # the source's own values

            key = id(edit.source)
            if key not in sources:
                sources[key] = trace(model, edit.source)
            value = np.ma.getdata(sources[key][part.name][gate])
            if value.shape[0] != batch:
                raise ValueError(
                    f"kgates.intervene: {where}: `source` has {value.shape[0]} sequences, "
                    f"`x` {batch}; expected the same."
                )
        else:
            try:  # a masked array leaves its masked entries as they are
                unchanged = np.broadcast_to(np.ma.getmaskarray(edit.value), (batch, steps, units))
                value = np.ma.getdata(edit.value).astype("float64")
                value = np.where(unchanged, 0.0, np.broadcast_to(value, (batch, steps, units)))
            except (TypeError, ValueError):
                raise ValueError(
                    f"kgates.intervene: {where}: the value must be a number or an array "
                    f"that broadcasts to (batch, time, units) = {(batch, steps, units)}."
                ) from None
            bounds = _value_range(twin, gate)
            if not np.isfinite(value).all() or (
                bounds and (value.min() < bounds[0] or value.max() > bounds[1])
            ):
                wanted = f"values in [{bounds[0]:g}, {bounds[1]:g}]" if bounds else "finite values"
                raise ValueError(
                    f"kgates.intervene: {where}: gate {gate!r} takes {wanted}; got "
                    f"values from {value.min():g} to {value.max():g}."
                )
        mask = (
            _selection(edit.steps, steps, "steps", where)[None, :, None]
            & _selection(edit.units, units, "units", where)[None, None, :]
        )
        if edit.source is None:
            mask = mask & ~unchanged
        blocks += [value, np.broadcast_to(mask, (batch, steps, units)).astype("float64")]
        gates.append(gate)
    return np.concatenate(blocks, axis=-1).astype("float32"), gates


def _numpy(outputs):
    return keras.tree.map_structure(lambda t: np.asarray(ops.convert_to_numpy(t)), outputs)
