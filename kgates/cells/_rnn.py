"""`GatedRNN`: a `keras.layers.RNN` that returns the gates by name."""

from __future__ import annotations

import functools
import types

import keras
from keras import ops

from kgates.cells._gates import split_gates


def stepped_with_last_real_step(inner_loop, layer, sequences, initial_state, mask, training):
    """Runs `inner_loop`; with a mask, the last output is that of the last real step,
    and padded steps output zeros."""
    if mask is None:
        return inner_loop(sequences, initial_state, mask, training)
    if isinstance(mask, (list, tuple)):
        mask = mask[0]
    if layer.unroll:  # padded steps carry outputs there, zeroed below
        inner_loop = functools.partial(_unrolled, layer)
    # every step's output is needed to find it (TensorFlow keeps only the last
    # one when return_sequences is False)
    saved, layer.return_sequences = layer.return_sequences, True
    try:
        last, outputs, states = inner_loop(sequences, initial_state, mask, training)
    finally:
        layer.return_sequences = saved
    if layer.unroll:
        real = ops.flip(mask, axis=1) if layer.go_backwards else mask  # processing order
        outputs = ops.where(ops.cast(real, "bool")[..., None], outputs, ops.zeros_like(outputs))
    return last_real_step(outputs, mask, layer.go_backwards, last), outputs, states


def _unrolled(layer, sequences, initial_state, mask, training):
    """Keras's unrolled loop, carrying the last output over padded steps as Keras's own
    layers do: asked for zeros there, TensorFlow's masks the outputs of `go_backwards`
    in the input's order, and JAX's ignores the request (`stepped_with_last_real_step`
    zeros them). Keras's loop reads these settings from the layer."""
    settings = types.SimpleNamespace(
        cell=layer.cell,
        stateful=layer.stateful,
        go_backwards=layer.go_backwards,
        unroll=True,
        zero_output_for_mask=False,
        return_sequences=True,
    )
    return keras.layers.RNN.inner_loop(settings, sequences, initial_state, mask, training)


def last_real_step(outputs, mask, go_backwards: bool, last):
    """The output of the last unpadded step of each sequence.

    With `zero_output_for_mask=True` Keras returns the (zero) output of the
    final step as the last output, also when that step is padding; a packed
    gate output has to come from the last real step instead, as h does.
    """
    if isinstance(mask, (list, tuple)):
        mask = mask[0]
    if mask is None:
        return last
    if go_backwards:  # outputs are in processing order
        mask = ops.flip(mask, axis=1)
    steps = ops.shape(outputs)[1]
    index = ops.arange(steps, dtype="int32")[None, :]
    last_index = ops.max(ops.where(ops.cast(mask, "bool"), index, 0), axis=1)
    picked = ops.take_along_axis(outputs, last_index[:, None, None], axis=1)
    return ops.cast(picked[:, 0], last.dtype)


@keras.saving.register_keras_serializable(package="kgates")
class GatedRNN(keras.layers.RNN):
    """Recurrent layer that returns `h` and every gate of its cell as a dict.

    It is `keras.layers.RNN` with the cell's `return_gates` turned on and the
    packed output split by name (`kgates.split_gates`). Masked steps carry the
    state and report zeros for every gate: `zero_output_for_mask` is always
    True here; without `return_sequences` the output is that of each
    sequence's last real step. (A plain `keras.layers.RNN` around a
    `return_gates` cell needs `zero_output_for_mask=True` when masks are used,
    else Keras's JAX backend reuses the first state as the previous output,
    which is narrower than the packed output; it then returns the zeros of a
    padded final step as its last output.)

    Args:
        cell: a kgates cell (`LSTMCell`, `GRUCell`); its `return_gates` is set
            to True.
        return_sequences, return_state, go_backwards, stateful, unroll: as in
            `keras.layers.RNN`. Default: False.
        zero_output_for_mask: must be True (the default): gates at masked steps
            are zeros.

    Call arguments:
        sequences: `(batch, time, features)`.
        initial_state, mask, training: as in `keras.layers.RNN`.

    Returns:
        `{"h": ..., gate: ...}` in `cell.gate_names` order, each `(batch,
        time, units)` with `return_sequences`, else `(batch, units)`. With
        `return_state`, the list `[gates_dict, *final_states]`.

    Example:

    >>> out = kgates.GatedRNN(kgates.LSTMCell(8), return_sequences=True)(
    ...     np.ones((2, 5, 3)))
    >>> out["f"].shape
    (2, 5, 8)
    """

    def __init__(
        self,
        cell,
        return_sequences: bool = False,
        return_state: bool = False,
        go_backwards: bool = False,
        stateful: bool = False,
        unroll: bool = False,
        zero_output_for_mask: bool = True,
        **kwargs,
    ):
        if not getattr(cell, "gate_names", None):
            raise TypeError(
                "GatedRNN: argument `cell` must be a kgates cell (kgates.LSTMCell, "
                f"kgates.GRUCell), got {cell!r}."
            )
        if not zero_output_for_mask:
            raise ValueError(
                "GatedRNN: `zero_output_for_mask` must be True: gate outputs at "
                "masked steps are zero."
            )
        cell.return_gates = True
        super().__init__(
            cell,
            return_sequences=return_sequences,
            return_state=return_state,
            go_backwards=go_backwards,
            stateful=stateful,
            unroll=unroll,
            zero_output_for_mask=True,
            **kwargs,
        )

    def build(self, sequences_shape, initial_state_shape=None):
        if len(sequences_shape) != 3:
            raise ValueError(
                "GatedRNN: input `sequences` must have rank 3, (batch, time, "
                f"features); got shape {tuple(sequences_shape)}."
            )
        super().build(sequences_shape, initial_state_shape)

    def inner_loop(self, sequences, initial_state, mask, training=False):
        return stepped_with_last_real_step(
            super().inner_loop, self, sequences, initial_state, mask, training
        )

    def call(self, sequences, initial_state=None, mask=None, training=False):
        result = super().call(sequences, initial_state=initial_state, mask=mask, training=training)
        if self.return_state:
            return [split_gates(result[0], self.cell), *result[1:]]
        return split_gates(result, self.cell)

    def compute_output_shape(self, sequences_shape, initial_state_shape=None):
        shapes = super().compute_output_shape(sequences_shape, initial_state_shape)
        output_shape = shapes[0] if self.return_state else shapes
        names = ("h",) + self.cell.gate_names
        gates = {name: tuple(output_shape[:-1]) + (self.cell.units,) for name in names}
        if self.return_state:
            return [gates, *shapes[1:]]
        return gates
