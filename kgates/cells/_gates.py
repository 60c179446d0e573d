"""What every kgates cell shares: gate pinning, packing gates into the output,
and splitting them back out by name."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import keras
import numpy as np
from keras import ops


def check_units(units: Any, cls_name: str) -> int:
    """`units` as an int (NumPy integers too, as Keras's cells accept them)."""
    if (
        isinstance(units, (bool, np.bool_))
        or not isinstance(units, (int, np.integer))
        or units <= 0
    ):
        raise ValueError(f"{cls_name}: argument `units` must be a positive integer, got {units!r}.")
    return int(units)


def check_flag(value: Any, name: str, cls_name: str) -> bool:
    """A boolean option: True or False (NumPy's too), never a truthy string."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{cls_name}: argument `{name}` must be True or False, got {value!r}.")
    return bool(value)


def check_rate(value: Any, name: str, cls_name: str) -> float:
    """A dropout rate: a number in [0, 1]."""
    if (
        isinstance(value, (bool, np.bool_))
        or not isinstance(value, (int, float, np.integer, np.floating))
        or not 0.0 <= value <= 1.0
    ):
        raise ValueError(
            f"{cls_name}: argument `{name}` must be a number in [0, 1], got {value!r}."
        )
    return float(value)


def check_pin(pin: Mapping[str, float] | None, pinnable: tuple[str, ...], cls_name: str) -> dict:
    """Validates `pin` and returns it as a plain dict in gate order.

    A pinned gate is a constant in [0, 1], the range of a sigmoid gate.
    """
    if pin is None:
        return {}
    if not isinstance(pin, Mapping):
        raise TypeError(
            f"{cls_name}: argument `pin` must be a dict mapping gate names to "
            f"constants, such as {{'{pinnable[0]}': 1.0}}; got {pin!r}."
        )
    for name, value in pin.items():
        if name not in pinnable:
            raise ValueError(
                f"{cls_name}: unknown gate {name!r} in argument `pin`; "
                f"the gates that can be pinned are {pinnable}."
            )
        if isinstance(value, (bool, np.bool_)) or not isinstance(
            value, (int, float, np.integer, np.floating)
        ):
            raise TypeError(
                f"{cls_name}: `pin[{name!r}]` must be a number in [0, 1], got {value!r}."
            )
        if not (math.isfinite(value) and 0.0 <= value <= 1.0):
            raise ValueError(
                f"{cls_name}: `pin[{name!r}]` must lie in [0, 1], the range of a "
                f"sigmoid gate; got {value!r}."
            )
    return {name: float(pin[name]) for name in pinnable if name in pin}


def check_step_input_shape(input_shape: tuple, cls_name: str) -> None:
    if len(input_shape) != 2:
        raise ValueError(
            f"{cls_name} steps through inputs of shape (batch, features), got a "
            f"step input of shape {tuple(input_shape)}. Wrap the cell in "
            "keras.layers.RNN or kgates.GatedRNN and pass sequences of shape "
            "(batch, time, features)."
        )


class GatedCellMixin:
    """Gate packing and pinning, shared by `LSTMCell` and `GRUCell`.

    A cell sets `gate_names` (what it reports, in order) and `pin`, then calls
    `self._pack(h, gates)` to build its step output.
    """

    gate_names: tuple[str, ...] = ()

    @property
    def return_gates(self) -> bool:
        return self._return_gates

    @return_gates.setter
    def return_gates(self, value: bool) -> None:
        self._return_gates = check_flag(value, "return_gates", type(self).__name__)
        width = 1 + len(self.gate_names) if self._return_gates else 1
        self.output_size = self.units * width

    def _build_kernels(self, input_shape) -> None:
        """`kernel` and `recurrent_kernel`, the weighted gates' columns side by side in
        `weighted_gates` order (Keras's layout; a pinned gate has none)."""
        check_step_input_shape(input_shape, type(self).__name__)
        keras.layers.Layer.build(self, input_shape)  # only records that it is built
        width = self.units * len(self.weighted_gates)
        self.kernel = self.add_weight(
            shape=(input_shape[-1], width),
            name="kernel",
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
            constraint=self.kernel_constraint,
        )
        self.recurrent_kernel = self.add_weight(
            shape=(self.units, width),
            name="recurrent_kernel",
            initializer=self.recurrent_initializer,
            regularizer=self.recurrent_regularizer,
            constraint=self.recurrent_constraint,
        )

    def _cast_to(self, weight, x):
        """`weight` as `x`'s dtype. Inside the cell's own computation that is the
        compute dtype, which Keras's autocasting gives; float32 gates recomputed
        inside a mixed-precision layer need the explicit cast."""
        dtype = keras.backend.standardize_dtype(x.dtype)
        if dtype == self.compute_dtype or not keras.backend.is_float_dtype(dtype):
            return weight  # integer inputs: ops promote them, as in Keras's cells
        return ops.cast(weight, dtype)

    def _dropped(self, inputs, h_tm1, training):
        """The step's inputs and h_tm1 after dropout, with the masks Keras's cells draw:
        one each, or, with recurrent dropout (Keras's implementation 1), one per
        weighted gate; then both come back as lists in `weighted_gates` order."""
        per_gate = self.dropout_mask_count is not None
        x, h = inputs, h_tm1
        if training and 0.0 < self.dropout < 1.0:
            mask = self.get_dropout_mask(inputs)
            x = [inputs * m for m in mask] if per_gate else inputs * mask
        if training and 0.0 < self.recurrent_dropout < 1.0:
            mask = self.get_recurrent_dropout_mask(h_tm1)
            h = [h_tm1 * m for m in mask] if per_gate else h_tm1 * mask
        if isinstance(x, list) or isinstance(h, list):
            n = len(self.weighted_gates)
            x, h = (v if isinstance(v, list) else [v] * n for v in (x, h))
        return x, h

    def _matmul(self, values, weight):
        """`values @ weight`; for a list (one input per gate), each its own columns."""
        if not isinstance(values, list):
            return ops.matmul(values, self._cast_to(weight, values))
        weight = self._cast_to(weight, values[0])
        columns = ops.split(weight, len(values), axis=1)
        return ops.concatenate([ops.matmul(v, w) for v, w in zip(values, columns)], axis=-1)

    def _pinned(self, name: str, like):
        """The constant of a pinned gate, shaped and typed like `like`."""
        return ops.full_like(like, self.pin[name])

    def _pack(self, h, gates: dict):
        if not self._return_gates:
            return h
        return ops.concatenate([h] + [gates[name] for name in self.gate_names], axis=-1)


def _gate_names_of(obj) -> tuple[tuple[str, ...], int]:
    cell = getattr(obj, "cell", obj)
    names = getattr(cell, "gate_names", None)
    if not names:
        raise TypeError(
            "split_gates: argument `cell` must be a kgates cell or a recurrent "
            f"layer built on one (keras.layers.RNN, kgates.GatedRNN); got {obj!r}."
        )
    return tuple(names), cell.units


def split_gates(y, cell) -> dict:
    """Splits a packed `return_gates` output into a dict of named tensors.

    Args:
        y: the output of a recurrent layer whose cell has `return_gates=True`:
            shape `(..., units * (1 + len(cell.gate_names)))`. The output of a
            `keras.layers.Bidirectional` with `merge_mode="concat"` (twice as
            wide) is also accepted.
        cell: the kgates cell, the `keras.layers.RNN` that holds it, or the
            `keras.layers.Bidirectional` wrapper around such a layer.

    Returns:
        `{"h": ..., gate: ...}`, each `(..., units)`, in `cell.gate_names`
        order. For a `Bidirectional` wrapper: `{"forward": {...}, "backward":
        {...}}`.

    Example:

    >>> cell = kgates.LSTMCell(4, return_gates=True)
    >>> y = keras.layers.RNN(cell, return_sequences=True)(np.zeros((2, 3, 5)))
    >>> sorted(kgates.split_gates(y, cell))
    ['c', 'f', 'g', 'h', 'i', 'o']
    """
    if not hasattr(y, "shape"):
        raise TypeError(
            "split_gates: argument `y` must be one tensor or array (a layer's packed "
            f"output), got {type(y).__name__}."
        )
    if isinstance(cell, keras.layers.Bidirectional):
        names, units = _gate_names_of(cell.forward_layer)
        width = units * (1 + len(names))
        if y.shape[-1] != 2 * width:
            raise ValueError(
                f"split_gates: a Bidirectional output of last dimension {2 * width} "
                "(merge_mode='concat', return_gates=True) was expected, got shape "
                f"{tuple(y.shape)}."
            )
        return {
            "forward": split_gates(y[..., :width], cell.forward_layer),
            "backward": split_gates(y[..., width:], cell.backward_layer),
        }
    names, units = _gate_names_of(cell)
    width = units * (1 + len(names))
    if y.shape[-1] != width:
        raise ValueError(
            f"split_gates: argument `y` must have last dimension {width} "
            f"(h and the gates {names}, {units} units each); got shape "
            f"{tuple(y.shape)}. Was the cell built with return_gates=True?"
        )
    return {name: y[..., k * units : (k + 1) * units] for k, name in enumerate(("h",) + names)}
