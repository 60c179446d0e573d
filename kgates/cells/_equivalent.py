"""Any recurrent cell kgates knows as the kgates cell or layer that computes the same,
and the chrono initialisation of an LSTM's biases."""

from __future__ import annotations

import keras
import numpy as np

from kgates.cells._gates import GatedCellMixin
from kgates.cells._gru import GRUCell
from kgates.cells._layers import GRU, LSTM
from kgates.cells._lstm import LSTMCell

STOCK_CELLS = (keras.layers.LSTMCell, keras.layers.GRUCell, keras.layers.SimpleRNNCell)
NOT_OPTIONS = ("name", "trainable", "return_gates", "implementation")


def equivalent_cell(cell, build: bool = True) -> GatedCellMixin:
    """A kgates cell computing what `cell` computes (with its weights when `build`).

    A kgates cell gives a copy without `return_gates`; Keras's `LSTMCell` and
    `GRUCell` their kgates twins; a `SimpleRNNCell` a GRU with r = 1 and z = 0,
    which is a plain RNN with the candidate's weights.
    """
    if isinstance(cell, GatedCellMixin):
        clone = type(cell).from_config({**cell.get_config(), "return_gates": False})
    elif isinstance(cell, keras.layers.LSTMCell):
        clone = LSTMCell.from_config(cell.get_config())
    elif isinstance(cell, keras.layers.GRUCell):
        clone = GRUCell.from_config(cell.get_config())
    elif isinstance(cell, keras.layers.SimpleRNNCell):
        clone = GRUCell(
            cell.units,
            activation=cell.activation,
            use_bias=cell.use_bias,
            reset_after=False,
            pin={"z": 0.0, "r": 1.0},
        )
    else:
        raise TypeError(
            f"kgates: no kgates equivalent for cell {type(cell).__name__}; expected a "
            "kgates cell or keras.layers.LSTMCell, GRUCell or SimpleRNNCell."
        )
    if build:
        if not cell.built:
            raise ValueError(
                f"kgates: cell {cell.name!r} is not built, so it has no weights to copy; "
                "call its layer on an input first (or pass build=False)."
            )
        clone.build((None, cell.kernel.shape[0]))
        copy_weights(cell, clone)
    return clone


def equivalent_layer(layer: keras.layers.RNN, input_shape, **options) -> keras.layers.RNN:
    """A built `kgates.LSTM`/`GRU` with the weights of `layer`'s cell (see
    `equivalent_cell`), its direction, and `options` (e.g. `return_gates=True`)."""
    cell = equivalent_cell(layer.cell, build=False)
    config = {k: v for k, v in cell.get_config().items() if k not in NOT_OPTIONS}
    kind = LSTM if isinstance(cell, LSTMCell) else GRU
    twin = kind(**config, go_backwards=layer.go_backwards, **options)
    twin.build(tuple(input_shape))
    copy_weights(layer.cell, twin.cell)
    return twin


def copy_weights(source, target) -> None:
    """Assigns `source`'s weights to `target`'s, on the device (no host round trip)."""
    if len(source.weights) != len(target.weights):
        raise ValueError(
            f"kgates: {type(source).__name__} has {len(source.weights)} weights, its "
            f"kgates equivalent {len(target.weights)}."
        )
    for variable, value in zip(target.weights, source.weights):
        # a copy: two variables must not share a buffer (JAX donates them to jit)
        variable.assign(keras.ops.copy(keras.ops.cast(value, variable.dtype)))


def set_chrono_bias(cell, timescale: int, seed: int = 0) -> None:
    """Chrono initialisation (Tallec & Ollivier 2018) of a built LSTM's biases.

    b_f = log(u), u ~ U(1, timescale - 1), and b_i = -b_f, so that units start
    with forget times spread up to `timescale` steps (with timescale <= 2, b_f = 0).

    Args:
        cell: a built LSTM cell with a forget gate and a bias (a kgates or Keras
            `LSTMCell`), or a `keras.layers.LSTM` / `kgates.LSTM` holding one.
        timescale: the longest dependency expected, in steps (T_max).
        seed: seed of the draw of u. Default: 0.

    Example:

    >>> layer = kgates.LSTM(32)
    >>> layer.build((None, 100, 4))
    >>> kgates.set_chrono_bias(layer, timescale=100)
    """
    cell = getattr(cell, "cell", cell)
    gates = list(getattr(cell, "weighted_gates", "ifgo"))
    if not isinstance(cell, keras.layers.LSTMCell) or getattr(cell, "bias", None) is None:
        raise ValueError(
            f"set_chrono_bias: argument `cell` must be a built LSTM cell or layer with a "
            f"bias; got {cell!r}."
        )
    if "f" not in gates:
        raise ValueError("set_chrono_bias: the cell has no forget gate of its own to set.")
    if isinstance(timescale, bool) or not isinstance(timescale, (int, np.integer)) or timescale < 1:
        raise ValueError(
            f"set_chrono_bias: `timescale` must be a positive integer, got {timescale!r}."
        )
    units = cell.units
    bias = keras.ops.convert_to_numpy(cell.bias).copy()
    rng = np.random.default_rng(seed)
    b_f = np.log(rng.uniform(1.0, max(timescale - 1.0, 1.0 + 1e-6), units))
    bias[gates.index("f") * units : (gates.index("f") + 1) * units] = b_f
    if "i" in gates:
        bias[gates.index("i") * units : (gates.index("i") + 1) * units] = -b_f
    cell.bias.assign(bias)
