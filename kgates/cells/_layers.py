"""`kgates.LSTM` and `kgates.GRU`: Keras's fused layers that can return their gates.

h comes from the backend's fused kernel (cuDNN where the backend and device
allow it). When gates are asked for, they are recomputed exactly and in
parallel from (x, h): one batched matmul over all B*T rows, and a scan for the
LSTM's cell state. Where no fused kernel runs (a CPU, or
options the kernel cannot do), the kgates cell steps and returns its gates as
it goes.
"""

from __future__ import annotations

import keras

from kgates.cells._gru import GRUCell
from kgates.cells._lstm import LSTMCell
from kgates.cells._paths import GatePaths, keep_gates_off_the_fused_bidirectional_kernel
from kgates.cells._recompute import gru_gates, lstm_gates

keep_gates_off_the_fused_bidirectional_kernel()


def _check_use_cudnn(layer, use_cudnn) -> None:
    if use_cudnn not in ("auto", True, False):
        raise ValueError(
            f"{type(layer).__name__}: `use_cudnn` must be 'auto', True or False, got {use_cudnn!r}."
        )
    layer.use_cudnn = use_cudnn


@keras.saving.register_keras_serializable(package="kgates")
class LSTM(GatePaths, keras.layers.LSTM):
    """`keras.layers.LSTM` that can return its gates at the fused kernel's price.

    Same arguments as `keras.layers.LSTM`, plus:

    Args:
        return_gates: If True, the output is `h` followed by the gates
            `i f g o c` (packed as in `kgates.LSTMCell`; split with
            `kgates.split_gates(y, layer)`). Default: False.
        gate_path: how gates are obtained: `"recompute"` (fused kernel for h,
            then exact parallel recomputation), `"step"` (the kgates cell
            steps and returns them), or `"auto"`: recompute where Keras runs
            a fused kernel (a GPU) and in torch's forward passes, step
            elsewhere (see `chosen_path`).
            Default: `"auto"`.
        variant, peephole, pin, coupled, input_activation, output_activation,
            gate_recurrence: kgates cell options (see `kgates.LSTMCell`). The
            fused kernel only runs Keras's own LSTM (variant NP); other
            options step the kgates cell, transparently.

    Example:

    >>> layer = kgates.LSTM(32, return_sequences=True, return_gates=True)
    >>> gates = kgates.split_gates(layer(np.ones((8, 20, 5))), layer)
    >>> gates["f"].shape
    (8, 20, 32)
    """

    family = "lstm"

    def __init__(
        self,
        units: int,
        activation="tanh",
        recurrent_activation="sigmoid",
        use_bias: bool = True,
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        bias_initializer="zeros",
        unit_forget_bias: bool = True,
        kernel_regularizer=None,
        recurrent_regularizer=None,
        bias_regularizer=None,
        activity_regularizer=None,
        kernel_constraint=None,
        recurrent_constraint=None,
        bias_constraint=None,
        dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        seed: int | None = None,
        return_sequences: bool = False,
        return_state: bool = False,
        go_backwards: bool = False,
        stateful: bool = False,
        unroll: bool = False,
        use_cudnn="auto",
        return_gates: bool = False,
        gate_path: str = "auto",
        variant: str | None = None,
        peephole: bool | None = None,
        pin=None,
        coupled: bool | None = None,
        input_activation="default",
        output_activation="default",
        gate_recurrence: bool | None = None,
        **kwargs,
    ):
        cell = LSTMCell(
            units,
            activation=activation,
            recurrent_activation=recurrent_activation,
            use_bias=use_bias,
            kernel_initializer=kernel_initializer,
            unit_forget_bias=unit_forget_bias,
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
            dtype=kwargs.get("dtype"),
            trainable=kwargs.get("trainable", True),
            name="lstm_cell",
            seed=seed,
            implementation=kwargs.pop("implementation", 2),
            variant=variant,
            peephole=peephole,
            pin=pin,
            coupled=coupled,
            input_activation=input_activation,
            output_activation=output_activation,
            gate_recurrence=gate_recurrence,
        )
        # keras.layers.LSTM.__init__ would build Keras's own cell: set up as it does.
        keras.layers.RNN.__init__(
            self,
            cell,
            return_sequences=return_sequences,
            return_state=return_state,
            go_backwards=go_backwards,
            stateful=stateful,
            unroll=unroll,
            activity_regularizer=activity_regularizer,
            **kwargs,
        )
        self.input_spec = keras.layers.InputSpec(ndim=3)
        _check_use_cudnn(self, use_cudnn)
        self._init_gates(return_gates, gate_path, fusable=cell.variant == "NP")

    def _recompute(self, x, h, mask, initial_state):
        return lstm_gates(self.cell, x, h, mask, initial_state)

    def get_config(self) -> dict:
        cell = self.cell.get_config()
        options = ("peephole", "pin", "coupled", "input_activation", "output_activation")
        return {
            **super().get_config(),
            "return_gates": self.return_gates,
            "gate_path": self.gate_path,
            **{k: cell[k] for k in (*options, "gate_recurrence")},
        }


@keras.saving.register_keras_serializable(package="kgates")
class GRU(GatePaths, keras.layers.GRU):
    """`keras.layers.GRU` that can return its gates at the fused kernel's price.

    Same arguments as `keras.layers.GRU`, plus `return_gates` (output `h`
    then `z r g`), `gate_path` (as in `kgates.LSTM`) and `pin` (a pinned GRU
    steps the kgates cell; the fused kernel needs Keras's own GRU, and cuDNN
    also needs `reset_after=True`).
    """

    family = "gru"

    def __init__(
        self,
        units: int,
        activation="tanh",
        recurrent_activation="sigmoid",
        use_bias: bool = True,
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        bias_initializer="zeros",
        kernel_regularizer=None,
        recurrent_regularizer=None,
        bias_regularizer=None,
        activity_regularizer=None,
        kernel_constraint=None,
        recurrent_constraint=None,
        bias_constraint=None,
        dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        seed: int | None = None,
        return_sequences: bool = False,
        return_state: bool = False,
        go_backwards: bool = False,
        stateful: bool = False,
        unroll: bool = False,
        reset_after: bool = True,
        use_cudnn="auto",
        return_gates: bool = False,
        gate_path: str = "auto",
        pin=None,
        **kwargs,
    ):
        cell = GRUCell(
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
            dtype=kwargs.get("dtype"),
            trainable=kwargs.get("trainable", True),
            name="gru_cell",
            seed=seed,
            implementation=kwargs.pop("implementation", 2),
            pin=pin,
        )
        keras.layers.RNN.__init__(
            self,
            cell,
            return_sequences=return_sequences,
            return_state=return_state,
            go_backwards=go_backwards,
            stateful=stateful,
            unroll=unroll,
            activity_regularizer=activity_regularizer,
            **kwargs,
        )
        self.input_spec = keras.layers.InputSpec(ndim=3)
        _check_use_cudnn(self, use_cudnn)
        self._init_gates(return_gates, gate_path, fusable=not cell.pin)

    def _recompute(self, x, h, mask, initial_state):
        return gru_gates(self.cell, x, h, mask, initial_state)

    def _has_torch_loop(self) -> bool:
        return self.cell.reset_after  # Keras's torch kernel needs it too (else it steps)

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "return_gates": self.return_gates,
            "gate_path": self.gate_path,
            "pin": dict(self.cell.pin),
        }
