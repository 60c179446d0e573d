"""The GRU cell."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import keras
from keras import ops

from kgates.cells._gates import (
    GatedCellMixin,
    check_flag,
    check_pin,
    check_rate,
    check_units,
)


@keras.saving.register_keras_serializable(package="kgates")
class GRUCell(GatedCellMixin, keras.layers.GRUCell):
    """GRU cell that can return its gates.

    A drop-in replacement for `keras.layers.GRUCell`: same arguments,
    defaults, weights (`kernel`, `recurrent_kernel`, `bias`, gate order z, r,
    h) and results. One step computes:

        z = sigma(x W_z + h_tm1 U_z + b_z)
        r = sigma(x W_r + h_tm1 U_r + b_r)
        g = tanh(x W_g + r * (h_tm1 U_g) + b)      reset_after=True (default)
        g = tanh(x W_g + (r * h_tm1) U_g + b)      reset_after=False
        h = z * h_tm1 + (1 - z) * g

    A pinned gate is a constant and owns no weight columns. With
    `pin={"r": 1.0, "z": 0.0}` the cell is a plain tanh RNN
    (`keras.layers.SimpleRNNCell`) with kernel W_g and recurrent kernel U_g.

    Args:
        units: Positive integer, dimensionality of the output space.
        activation, recurrent_activation, use_bias, kernel_initializer,
        recurrent_initializer, bias_initializer, kernel_regularizer,
        recurrent_regularizer, bias_regularizer, kernel_constraint,
        recurrent_constraint, bias_constraint, dropout, recurrent_dropout,
        reset_after, seed: as in `keras.layers.GRUCell`, with the same
            defaults.
        return_gates: If True, the step output is `h` followed by the gates in
            `gate_names` order (`z r g`), each `units` wide. Default: False.
        pin: dict pinning gates `z` or `r` to constants in [0, 1]. Default:
            None (no gate pinned).

    Call arguments:
        inputs: A 2D tensor, `(batch, features)`.
        states: `h_tm1`, `(batch, units)` (or a one-element list of it).
        training: Python boolean; only relevant with dropout.
        edit: optional function `(name, value) -> value` applied to each of z,
            r, g, h as soon as it is computed (`kgates.intervene`). Default: None.

    Returns:
        `(output, new_states)`; `output` is `h`, or `h` and the gates packed
        along the last axis when `return_gates=True` (see `kgates.split_gates`).

    Example:

    >>> out = kgates.GatedRNN(kgates.GRUCell(16))(np.ones((8, 20, 5)))
    >>> sorted(out)
    ['g', 'h', 'r', 'z']
    """

    gate_names = ("z", "r", "g")

    def __init__(
        self,
        units: int,
        activation: str | Callable | None = "tanh",
        recurrent_activation: str | Callable | None = "sigmoid",
        use_bias: bool = True,
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        bias_initializer="zeros",
        kernel_regularizer=None,
        recurrent_regularizer=None,
        bias_regularizer=None,
        kernel_constraint=None,
        recurrent_constraint=None,
        bias_constraint=None,
        dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        reset_after: bool = True,
        seed: int | None = None,
        return_gates: bool = False,
        pin: Mapping[str, float] | None = None,
        **kwargs,
    ):
        units = check_units(units, type(self).__name__)
        dropout = check_rate(dropout, "dropout", type(self).__name__)
        recurrent_dropout = check_rate(recurrent_dropout, "recurrent_dropout", type(self).__name__)
        super().__init__(
            units,
            activation=activation,
            recurrent_activation=recurrent_activation,
            use_bias=use_bias,
            kernel_initializer=kernel_initializer,
            recurrent_initializer=recurrent_initializer,
            bias_initializer=bias_initializer,
            kernel_regularizer=kernel_regularizer,
            recurrent_regularizer=recurrent_regularizer,
            bias_regularizer=bias_regularizer,
            kernel_constraint=kernel_constraint,
            recurrent_constraint=recurrent_constraint,
            bias_constraint=bias_constraint,
            dropout=dropout,
            recurrent_dropout=recurrent_dropout,
            reset_after=reset_after,
            seed=seed,
            **kwargs,
        )
        check_flag(reset_after, "reset_after", "GRUCell")
        self.pin = check_pin(pin, ("z", "r"), "GRUCell")
        self.weighted_gates = tuple(g for g in "zrg" if g not in self.pin)
        # As Keras's cell: a dropout mask per gate where it steps gate by gate.
        self.dropout_mask_count = len(self.weighted_gates) if self.implementation == 1 else None
        self.return_gates = return_gates

    def build(self, input_shape):
        self._build_kernels(input_shape)
        units, n = self.units, len(self.weighted_gates)
        self.bias = None
        if self.use_bias:
            # reset_after keeps separate input and recurrent biases, as Keras.
            self.bias = self.add_weight(
                shape=(2, units * n) if self.reset_after else (units * n,),
                name="bias",
                initializer=self.bias_initializer,
                regularizer=self.bias_regularizer,
                constraint=self.bias_constraint,
            )

    def project(self, x, h_tm1) -> tuple[dict, dict]:
        """`(x W + b, h_tm1 U [+ b_rec])`, each split by weighted gate.

        Broadcasts over leading axes (one step, or all steps given every
        h_tm1). Without `reset_after`, g's recurrent part comes after the
        reset (`candidate`), so the second dict holds the sigmoid gates' only.
        """
        n = len(self.weighted_gates)
        xw = self._matmul(x, self.kernel)
        if self.use_bias:
            xw = xw + self._cast_to(self.bias[0] if self.reset_after else self.bias, xw)
        xw = dict(zip(self.weighted_gates, ops.split(xw, n, axis=-1)))
        if self.reset_after:
            hu = self._matmul(h_tm1, self.recurrent_kernel)
            if self.use_bias:
                hu = hu + self._cast_to(self.bias[1], hu)
            return xw, dict(zip(self.weighted_gates, ops.split(hu, n, axis=-1)))
        if n == 1:
            return xw, {}
        if isinstance(h_tm1, list):  # the sigmoid gates' own inputs
            h_tm1 = h_tm1[:-1]
        recurrent = self.recurrent_kernel[:, : self.units * (n - 1)]
        hu = ops.split(self._matmul(h_tm1, recurrent), n - 1, axis=-1)
        return xw, dict(zip(self.weighted_gates, hu))

    def step_gates(self, xw: dict, hu: dict, h_tm1, edit=None) -> tuple:
        """`(z, r, g)` from the projections and the previous state (each through
        `edit`, if given, before the candidate reads r)."""
        edit = edit or (lambda name, value: value)
        z = edit("z", self._sigmoid_gate("z", xw, hu))
        r = edit("r", self._sigmoid_gate("r", xw, hu))
        if self.reset_after:
            return z, r, edit("g", self.activation(xw["g"] + r * hu["g"]))
        n = len(self.weighted_gates)
        recurrent = self._cast_to(self.recurrent_kernel, h_tm1)[:, self.units * (n - 1) :]
        return z, r, edit("g", self.activation(xw["g"] + ops.matmul(r * h_tm1, recurrent)))

    def _sigmoid_gate(self, name: str, xw: dict, hu: dict):
        if name in self.pin:
            return self._pinned(name, xw["g"])
        return self.recurrent_activation(xw[name] + hu[name])

    def call(self, inputs, states, training=False, edit=None):
        h_tm1 = states[0] if isinstance(states, (list, tuple)) else states
        inputs, h_rec = self._dropped(inputs, h_tm1, training)
        z, r, g = self.step_gates(
            *self.project(inputs, h_rec), h_rec[-1] if isinstance(h_rec, list) else h_rec, edit
        )
        h = z * h_tm1 + (1.0 - z) * g
        if edit is not None:
            h = edit("h", h)

        new_state = [h] if isinstance(states, (list, tuple)) else h
        return self._pack(h, {"z": z, "r": r, "g": g}), new_state

    def get_config(self) -> dict:
        config = {"return_gates": self.return_gates, "pin": dict(self.pin)}
        return {**super().get_config(), **config}
