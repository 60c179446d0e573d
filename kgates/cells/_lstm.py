"""The LSTM cell and the variants of Greff et al., "LSTM: A Search Space Odyssey"."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import keras
from keras import activations, initializers, ops

from kgates.cells._gates import (
    GatedCellMixin,
    check_flag,
    check_pin,
    check_rate,
    check_units,
)
from kgates.cells._variants import OPTION_DEFAULTS, VARIANTS, resolve_options


@keras.saving.register_keras_serializable(package="kgates")
class LSTMCell(GatedCellMixin, keras.layers.LSTMCell):
    """LSTM cell that can return its gates, with Greff et al.'s variants.

    A drop-in replacement for `keras.layers.LSTMCell`: same arguments,
    defaults, weights (`kernel`, `recurrent_kernel`, `bias`, gate order
    i, f, c, o) and results. One step computes:

        i = sigma(x W_i + h_tm1 U_i + b_i [+ p_i * c_tm1])
        f = sigma(x W_f + h_tm1 U_f + b_f [+ p_f * c_tm1])       or 1 - i
        g = input_activation(x W_g + h_tm1 U_g + b_g)
        c = f * c_tm1 + i * g
        o = sigma(x W_o + h_tm1 U_o + b_o [+ p_o * c])
        h = o * output_activation(c)

    Peephole terms `[...]` are present with `peephole=True`. A pinned gate is
    a constant and owns no weight columns: the kernel holds only the gates
    that are computed, in the order i, f, g, o.

    Args:
        units: Positive integer, dimensionality of the output space.
        activation, recurrent_activation, use_bias, kernel_initializer,
        recurrent_initializer, bias_initializer, unit_forget_bias,
        kernel_regularizer, recurrent_regularizer, bias_regularizer,
        kernel_constraint, recurrent_constraint, bias_constraint, dropout,
        recurrent_dropout, seed: as in `keras.layers.LSTMCell`, with the same
            defaults. `unit_forget_bias` adds 1 to the bias of a computed
            forget gate.
        return_gates: If True, the step output is `h` followed by the gates in
            `gate_names` order (`i f g o c`), each `units` wide. Default: False.
        variant: Greff et al.'s preset, one of `V NP NIG NFG NOG NIAF NOAF CIFG
            FGR` (see `kgates.VARIANTS`), or None. Default: None (= NP, Keras's
            LSTM).
        peephole: If True, i and f see `c_tm1` and o sees `c` through
            per-unit peephole weights. Default: False.
        pin: dict pinning gates `i`, `f` or `o` to constants in [0, 1], e.g.
            `{"f": 1.0}`. Default: None (no gate pinned).
        coupled: If True, `f = 1 - i` (CIFG) and f owns no weights. Default:
            False.
        input_activation: activation of the candidate g; None for linear.
            Default: `activation`.
        output_activation: activation applied to c in `h`; None for linear.
            Default: `activation`.
        gate_recurrence: If True, the gates i, f, o also see the previous
            step's i, f, o (FGR); the previous gates become a third state.
            Default: False.

    Call arguments:
        inputs: A 2D tensor, `(batch, features)`.
        states: `[h_tm1, c_tm1]` (plus the previous gates with
            `gate_recurrence`), each `(batch, units)`.
        training: Python boolean; only relevant with dropout.
        c_delta: optional tensor added to c before o and h are computed; its
            gradient is dL/dc (used by `kgates.gradient_flow`). Default: None.
        edit: optional function `(name, value) -> value` applied to each of
            i, f, g, c, o, h as soon as it is computed, so that what follows in
            the step, and later steps, see the result (`kgates.intervene`).
            Default: None.

    Returns:
        `(output, new_states)`; `output` is `h`, or `h` and the gates packed
        along the last axis when `return_gates=True` (see `kgates.split_gates`).

    Example:

    >>> cell = kgates.LSTMCell(32, variant="CIFG", return_gates=True)
    >>> y = keras.layers.RNN(cell, return_sequences=True)(np.ones((8, 20, 5)))
    >>> kgates.split_gates(y, cell)["f"].shape
    (8, 20, 32)
    """

    gate_names = ("i", "f", "g", "o", "c")

    def __init__(
        self,
        units: int,
        activation: str | Callable | None = "tanh",
        recurrent_activation: str | Callable | None = "sigmoid",
        use_bias: bool = True,
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        bias_initializer="zeros",
        unit_forget_bias: bool = True,
        kernel_regularizer=None,
        recurrent_regularizer=None,
        bias_regularizer=None,
        kernel_constraint=None,
        recurrent_constraint=None,
        bias_constraint=None,
        dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        seed: int | None = None,
        return_gates: bool = False,
        variant: str | None = None,
        peephole: bool | None = None,
        pin: Mapping[str, float] | None = None,
        coupled: bool | None = None,
        input_activation: str | Callable | None = "default",
        output_activation: str | Callable | None = "default",
        gate_recurrence: bool | None = None,
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
            unit_forget_bias=unit_forget_bias,
            kernel_regularizer=kernel_regularizer,
            recurrent_regularizer=recurrent_regularizer,
            bias_regularizer=bias_regularizer,
            kernel_constraint=kernel_constraint,
            recurrent_constraint=recurrent_constraint,
            bias_constraint=bias_constraint,
            dropout=dropout,
            recurrent_dropout=recurrent_dropout,
            seed=seed,
            **kwargs,
        )
        options = resolve_options(
            variant,
            {
                "peephole": peephole,
                "pin": pin,
                "coupled": coupled,
                "input_activation": input_activation,
                "output_activation": output_activation,
                "gate_recurrence": gate_recurrence,
            },
        )
        self.peephole = check_flag(options["peephole"], "peephole", "LSTMCell")
        self.pin = check_pin(options["pin"], ("i", "f", "o"), "LSTMCell")
        self.coupled = check_flag(options["coupled"], "coupled", "LSTMCell")
        if self.coupled and ("i" in self.pin or "f" in self.pin):
            raise ValueError(
                "LSTMCell: `coupled=True` sets f = 1 - i, so neither i nor f can be "
                f"pinned; got pin={self.pin}."
            )
        self.input_activation = self._activation_option(options["input_activation"])
        self.output_activation = self._activation_option(options["output_activation"])
        self.gate_recurrence = check_flag(options["gate_recurrence"], "gate_recurrence", "LSTMCell")
        # Gates computed from weights (kernel column order), and the sigmoid
        # gates among them that feed the gate recurrence.
        self.weighted_gates = tuple(
            g for g in "ifgo" if g not in self.pin and not (g == "f" and self.coupled)
        )
        self.recurrent_gates = tuple(g for g in self.weighted_gates if g != "g")
        # As Keras's cell: a dropout mask per gate where it steps gate by gate.
        self.dropout_mask_count = len(self.weighted_gates) if self.implementation == 1 else None
        if self.gate_recurrence:
            self.state_size = [units, units, units * len(self.recurrent_gates)]
        self.return_gates = return_gates

    def _activation_option(self, value):
        if isinstance(value, str) and value == "default":
            return self.activation
        return activations.get(value)

    @property
    def variant(self) -> str | None:
        """The name of the Greff preset this cell's options equal, else None."""
        linear = activations.get("linear")
        current = {
            "peephole": self.peephole,
            "pin": self.pin,
            "coupled": self.coupled,
            "input_activation": None if self.input_activation is linear else "default",
            "output_activation": None if self.output_activation is linear else "default",
            "gate_recurrence": self.gate_recurrence,
        }
        for name, preset in VARIANTS.items():
            if current == {**OPTION_DEFAULTS, **preset}:
                return name
        return None

    def build(self, input_shape):
        self._build_kernels(input_shape)
        units, n = self.units, len(self.weighted_gates)
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(
                shape=(units * n,),
                name="bias",
                initializer=self._bias_initializer,
                regularizer=self.bias_regularizer,
                constraint=self.bias_constraint,
            )
        if self.peephole:
            for gate in self.recurrent_gates:
                weight = self.add_weight(
                    shape=(units,),
                    name=f"peephole_{gate}",
                    initializer=self.kernel_initializer,
                )
                setattr(self, f"peephole_{gate}", weight)
        if self.gate_recurrence:
            width = units * len(self.recurrent_gates)
            self.gate_recurrent_kernel = self.add_weight(
                shape=(width, width),
                name="gate_recurrent_kernel",
                initializer=self.recurrent_initializer,
                regularizer=self.recurrent_regularizer,
                constraint=self.recurrent_constraint,
            )

    def _bias_initializer(self, shape, dtype=None):
        if not (self.unit_forget_bias and "f" in self.weighted_gates):
            return self.bias_initializer(shape, dtype=dtype)
        # As Keras's cell: one call for the gates before f, ones for f, one call
        # for the gates after it (a seeded initializer called twice with the
        # same shape would give each gate the same biases).
        k = self.weighted_gates.index("f")
        before, after = k, len(self.weighted_gates) - k - 1
        parts = [self.bias_initializer((self.units * before,), dtype=dtype)] if before else []
        parts.append(initializers.get("ones")((self.units,), dtype=dtype))
        if after:
            parts.append(self.bias_initializer((self.units * after,), dtype=dtype))
        return ops.concatenate(parts)

    def project(self, x, h_tm1, gates_tm1=None) -> dict:
        """`z = x W + h_tm1 U + b`, split by weighted gate (`{"i": ..., "f": ...}`).

        Broadcasts over leading axes: `x` `(batch, features)` for one step or
        `(batch, time, features)` for all steps at once (given every h_tm1).
        `x` and `h_tm1` may be lists, one per weighted gate (per-gate dropout).
        With `gate_recurrence`, `gates_tm1` (the previous i, f, o) adds its term.
        """
        z = self._matmul(x, self.kernel) + self._matmul(h_tm1, self.recurrent_kernel)
        if self.use_bias:
            z = z + self._cast_to(self.bias, z)
        z = dict(zip(self.weighted_gates, ops.split(z, len(self.weighted_gates), axis=-1)))
        if self.gate_recurrence:
            extra = self._matmul(gates_tm1, self.gate_recurrent_kernel)
            for name, term in zip(
                self.recurrent_gates, ops.split(extra, len(self.recurrent_gates), axis=-1)
            ):
                z[name] = z[name] + term
        return z

    def write_gates(self, z: dict, c_tm1=None) -> tuple:
        """`(i, f, g)` from the projection: what is written into c, and what is kept.

        `c_tm1` is read only by peepholes, so without them this runs over all
        steps at once.
        """
        i = self._sigmoid_gate("i", z, c_tm1)
        f = 1.0 - i if self.coupled else self._sigmoid_gate("f", z, c_tm1)
        return i, f, self.input_activation(z["g"])

    def output_gate(self, z: dict, c):
        """`o` from the projection (and `c` through its peephole)."""
        return self._sigmoid_gate("o", z, c)

    def _sigmoid_gate(self, name: str, z: dict, peep):
        """A sigmoid gate: pinned constant, or activation of its pre-activation."""
        if name in self.pin:
            return self._pinned(name, z["g"])
        if self.peephole:
            return self.recurrent_activation(z[name] + getattr(self, f"peephole_{name}") * peep)
        return self.recurrent_activation(z[name])

    def call(self, inputs, states, training=False, c_delta=None, edit=None):
        c_tm1 = states[1]
        inputs, h_tm1 = self._dropped(inputs, states[0], training)
        z = self.project(inputs, h_tm1, states[2] if self.gate_recurrence else None)
        i, f, g = self.write_gates(z, c_tm1)
        if edit is not None:
            i, f, g = edit("i", i), edit("f", f), edit("g", g)
        c = f * c_tm1 + i * g
        if c_delta is not None:  # a probe for dL/dc_t (kgates.gradient_flow)
            c = c + c_delta
        if edit is not None:
            c = edit("c", c)
        o = self.output_gate(z, c)
        if edit is not None:
            o = edit("o", o)
        h = o * self.output_activation(c)
        if edit is not None:
            h = edit("h", h)

        gates = {"i": i, "f": f, "g": g, "o": o, "c": c}
        new_states = [h, c]
        if self.gate_recurrence:
            new_states.append(ops.concatenate([gates[n] for n in self.recurrent_gates], axis=-1))
        return self._pack(h, gates), new_states

    def get_config(self) -> dict:
        config = {
            "return_gates": self.return_gates,
            "peephole": self.peephole,
            "pin": dict(self.pin),
            "coupled": self.coupled,
            "input_activation": activations.serialize(self.input_activation),
            "output_activation": activations.serialize(self.output_activation),
            "gate_recurrence": self.gate_recurrence,
        }
        return {**super().get_config(), **config}
