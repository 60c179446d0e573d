"""The one walk over a model's recurrent layers, shared by tracing and gradient flow."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from kgates.cells._equivalent import STOCK_CELLS
from kgates.cells._gates import GatedCellMixin


@dataclass
class RecurrentPart:
    """One recurrent layer of a model (a Bidirectional wrapper has two)."""

    name: str
    layer: keras.layers.RNN
    wrapper: keras.layers.Layer  # the model's layer whose input feeds it

    @property
    def cell(self):
        return self.layer.cell

    @property
    def sequence_input(self):
        """The symbolic sequence fed to the part (a layer given a mask lists it too)."""
        value = self.wrapper.input
        return value[0] if isinstance(value, (list, tuple)) else value

    @property
    def initial_state(self) -> list | None:
        """The symbolic states the model starts the part from (`initial_state=`, as an
        encoder's final states start a decoder), or None."""
        nodes = getattr(self.wrapper, "_inbound_nodes", None)
        if not nodes:
            return None
        arguments = nodes[0].arguments
        states = arguments.kwargs.get("initial_state")
        if states is None and len(arguments.args) > 1:
            states = arguments.args[1]
        if states is None:
            return None
        states = keras.tree.flatten(states)
        if self.wrapper is not self.layer:  # Bidirectional: forward's, then backward's
            half = len(states) // 2
            states = states[:half] if self.layer is self.wrapper.forward_layer else states[half:]
        return states


def _supported(layer: keras.layers.RNN) -> bool:
    return isinstance(layer.cell, (GatedCellMixin, *STOCK_CELLS))


def recurrent_parts(model: keras.Model, names=None) -> list[RecurrentPart]:
    """The recurrent layers of `model` (top level) that kgates can look into.

    Args:
        model: a Keras model.
        names: optional layer names to keep (the wrapper's name for
            `Bidirectional`); an unknown name is an error.
    """
    parts = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.Bidirectional) and isinstance(
            layer.forward_layer, keras.layers.RNN
        ):
            candidates = [
                RecurrentPart(f"{layer.name}/forward", layer.forward_layer, layer),
                RecurrentPart(f"{layer.name}/backward", layer.backward_layer, layer),
            ]
        elif isinstance(layer, keras.layers.RNN):
            candidates = [RecurrentPart(layer.name, layer, layer)]
        else:
            continue
        for part in candidates:
            if _supported(part.layer):
                parts.append(part)
            else:
                warnings.warn(
                    f"kgates: layer {part.name!r} has a cell kgates cannot trace "
                    f"({type(part.cell).__name__}); it is left out.",
                    stacklevel=2,
                )
    if names is not None:
        names = [names] if isinstance(names, str) else list(names)
        known = {p.wrapper.name for p in parts} | {p.name for p in parts}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ValueError(
                f"kgates: no recurrent layer named {unknown} in model {model.name!r}; "
                f"its recurrent layers are {sorted(known)}."
            )
        parts = [p for p in parts if p.name in names or p.wrapper.name in names]
    if not parts:
        nested = [
            layer.name
            for layer in model.layers
            if isinstance(layer, keras.Model) and recurrent_layers_within(layer)
        ]
        hint = (
            f" Its layers {nested} are models holding recurrent layers, and kgates looks "
            f"at a model's own layers: pass model.get_layer({nested[0]!r}), or a model "
            "built from their layers."
            if nested
            else ""
        )
        raise ValueError(
            f"kgates: model {model.name!r} has no recurrent layer to trace "
            "(keras.layers.LSTM, GRU, SimpleRNN, RNN with a kgates or Keras cell, "
            f"or Bidirectional around one).{hint}"
        )
    return parts


def recurrent_layers_within(model: keras.Model) -> bool:
    """Whether `model` holds a recurrent layer, at any depth."""
    return any(
        isinstance(layer, (keras.layers.RNN, keras.layers.Bidirectional))
        or (isinstance(layer, keras.Model) and recurrent_layers_within(layer))
        for layer in model.layers
    )


class ModelWalk:
    """A model's recurrent parts, and the inputs and mask that reach them.

    Args:
        model: a functional or Sequential Keras model built on `keras.Input`.
        layers: optional name or names of the recurrent layers to keep.
    """

    def __init__(self, model: keras.Model, layers=None):
        if not isinstance(model, keras.Model):
            raise TypeError(f"kgates: `model` must be a keras.Model, got {model!r}.")
        self.model = model
        self.parts = recurrent_parts(model, layers)
        try:
            inputs = model.inputs
        except (AttributeError, ValueError):
            inputs = None
        if not inputs:
            raise ValueError(
                f"kgates: model {model.name!r} has no symbolic inputs. Build it "
                "with keras.Input (functional or Sequential API) first."
            )
        # keep the structure of the model's inputs (a dict, a list...); a Sequential
        # model's `input` is that of where it was last called, as a layer of another
        self.structure = inputs[0] if len(inputs) == 1 else inputs
        if not isinstance(model, keras.Sequential):
            try:
                self.structure = model.input
            except (AttributeError, ValueError):
                pass
        self._maskers = [
            layer
            for layer in model.layers
            if isinstance(layer, keras.layers.Masking)
            or (isinstance(layer, keras.layers.Embedding) and layer.mask_zero)
        ]
        self._features = None
        self._starts = None  # the model of the parts' given initial states
        self._sequence_index = None  # of `sequence_of`, found on first use

    @property
    def has_maskers(self) -> bool:
        """Whether the model makes its own mask (`Masking`, `Embedding(mask_zero=True)`)."""
        return bool(self._maskers)

    def check_inputs(self, x, who: str = "kgates"):
        """`x` as the model takes it. For a model with one input, a (nested) list
        becomes an array of the input's dtype; its rank must be the input's."""
        if isinstance(self.structure, (list, tuple, dict)):
            return x  # several inputs: Keras checks their structure
        if isinstance(x, (list, tuple)) and len(x) == 1 and hasattr(x[0], "shape"):
            x = x[0]  # the one input, in a list
        if isinstance(x, (list, tuple)):
            try:
                x = np.asarray(x, dtype=self.structure.dtype)
            except (TypeError, ValueError):
                raise ValueError(
                    f"{who}: argument `x` must be one array for this model's one input, "
                    f"got a {type(x).__name__} that is not an array."
                ) from None
        shape = tuple(self.structure.shape)
        if len(getattr(x, "shape", ())) != len(shape):
            raise ValueError(
                f"{who}: argument `x` must be a batch shaped like the model's input "
                f"{shape}, got shape {tuple(getattr(x, 'shape', ()))}."
            )
        return x

    def check_mask(self, mask, x, who: str = "kgates", name: str = "mask"):
        """`mask` as a `(batch, time)` boolean NumPy array, checked against the batch `x`
        and the time axis of the recurrent layers (None passes through)."""
        if mask is None:
            return None
        mask = np.asarray(ops.convert_to_numpy(mask))
        batch = tuple(keras.tree.flatten(x)[0].shape)
        steps = {p.sequence_input.shape[1] for p in self.parts} - {None}
        if not steps and len(batch) >= 2:
            steps = {batch[1]}
        if mask.ndim != 2 or mask.shape[0] != batch[0] or (steps and mask.shape[1] not in steps):
            wanted = f"({batch[0]}, {' or '.join(map(str, sorted(steps))) or 'time'})"
            raise ValueError(
                f"{who}: argument `{name}` must be a (batch, time) array of shape {wanted} "
                f"for inputs of shape {batch}; got shape {mask.shape}."
            )
        return mask.astype(bool)

    def sequence_of(self, x):
        """The input of the batch `x` that the first traced layer reads its sequence
        from (of a model with several inputs): the one tokens and pictures show."""
        values = keras.tree.flatten(x)
        if len(values) == 1:
            return values[0]
        if self._sequence_index is None:
            self._sequence_index = 0
            target = self.parts[0].sequence_input
            for k, symbolic in enumerate(keras.tree.flatten(self.structure)):
                try:
                    keras.Model(symbolic, target)  # needs no other input
                except ValueError:
                    continue
                self._sequence_index = k
                break
        return values[self._sequence_index]

    def layer_inputs(self, x, mask=None):
        """The input sequence of every part, and the (B, T) mask (or None)."""
        if self._features is None:
            wrappers = list(dict.fromkeys(p.wrapper for p in self.parts))
            outputs = [RecurrentPart("", w, w).sequence_input for w in wrappers]
            outputs += [m.input for m in self._maskers]
            self._features = (wrappers, keras.Model(self.structure, outputs))
        wrappers, features = self._features
        values = features(x)
        values = values if isinstance(values, (list, tuple)) else [values]
        by_wrapper = dict(zip(wrappers, values[: len(wrappers)]))
        if mask is None:
            for layer, value in zip(self._maskers, values[len(wrappers) :]):
                mask = layer.compute_mask(value)
                if mask is not None:
                    break
        if mask is not None:
            mask = ops.convert_to_tensor(ops.convert_to_numpy(mask).astype(bool))
        return {p.name: by_wrapper[p.wrapper] for p in self.parts}, mask

    def initial_states(self, x) -> dict:
        """`{part name: [state, ...]}`, where each part's recurrence starts for the batch
        `x`: the states the model passes it (`initial_state=`), else those a stateful
        layer carries (for a batch of its size). Parts starting from zeros are left out."""
        given = [p for p in self.parts if p.initial_state is not None]
        starts = {}
        if given:
            if self._starts is None:
                flat = [s for p in given for s in p.initial_state]
                self._starts = keras.Model(self.structure, flat)
            with KeptStates(self.model):
                values = keras.tree.flatten(self._starts(x))
            for part in given:
                count = len(part.initial_state)
                starts[part.name], values = values[:count], values[count:]
        batch = keras.tree.flatten(x)[0].shape[0]
        for part in self.parts:
            state = None if part.name in starts else carried_state(part.layer, batch)
            if state is not None:
                starts[part.name] = state
        return starts


def carried_state(layer, batch: int) -> list | None:
    """The states a stateful `layer` carries, where they fit a batch of `batch`
    sequences; None otherwise (it starts from zeros)."""
    states = layer.states if getattr(layer, "stateful", False) else None
    if not states or states[0].shape[0] != batch:
        return None
    return [ops.convert_to_tensor(s) for s in states]


class KeptStates:
    """Stateful layers' states as they were before the block: kgates asks what the
    model would do, and moves no layer on."""

    def __init__(self, model: keras.Model):
        layers = []
        for layer in model.layers:
            if isinstance(layer, keras.layers.Bidirectional):
                layers += [layer.forward_layer, layer.backward_layer]
            else:
                layers.append(layer)
        self.layers = [x for x in layers if getattr(x, "stateful", False) and x.states]

    def __enter__(self):
        self.saved = [[ops.convert_to_numpy(s) for s in x.states] for x in self.layers]

    def __exit__(self, *exc):
        for layer, values in zip(self.layers, self.saved):
            for state, value in zip(layer.states, values):
                state.assign(value)
