"""`kgates.LSTM` and `kgates.GRU`: Keras's fused layers that can return their gates.

h comes from the backend's fused kernel (cuDNN where the backend and device
allow it). When gates are asked for, they are recomputed exactly and in
parallel from (x, h): one batched matmul over all B*T rows, and a scan for the
LSTM's cell state (DESIGN.md §4). Where no fused kernel runs (a CPU, or
options the kernel cannot do), the kgates cell steps and returns its gates as
it goes.
"""

from __future__ import annotations

import keras
from keras import ops

from kgates.gru import GRUCell
from kgates.lstm import LSTMCell
from kgates.recompute import accelerator_available, gru_gates, lstm_gates
from kgates.rnn import last_real_step, stepped_with_last_real_step

GATE_PATHS = ("auto", "recompute", "step")


class _FusedGates:
    """The gate logic shared by `LSTM` and `GRU` (mixed in before the Keras layer)."""

    def _init_gates(self, return_gates: bool, gate_path: str, fusable: bool) -> None:
        if gate_path not in GATE_PATHS:
            raise ValueError(
                f"{type(self).__name__}: `gate_path` must be one of {GATE_PATHS}, "
                f"got {gate_path!r}."
            )
        if not fusable:
            if self.use_cudnn is True:
                raise ValueError(
                    f"{type(self).__name__}: use_cudnn=True, but the fused kernel cannot "
                    f"run this cell's options ({self.cell.get_config().get('pin')}, variant "
                    f"{getattr(self.cell, 'variant', None)}); pass use_cudnn='auto'."
                )
            self.use_cudnn = False  # the kgates cell steps instead
        if gate_path == "recompute" and not fusable:
            raise ValueError(
                f"{type(self).__name__}: gate_path='recompute' needs the options of "
                "Keras's own layer (no variant, pins or peepholes)."
            )
        self.gate_path = gate_path
        self.fusable = fusable
        self.return_gates = return_gates
        self.cell.return_gates = return_gates
        if return_gates:
            self.zero_output_for_mask = True  # a packed output is not a state

    def _recomputes(self) -> bool:
        if self.gate_path == "auto":
            # Keras's LSTM/GRU run cuDNN on a GPU. On a CPU stepping the kgates
            # cell trains faster than recomputing, on every backend
            # (experiments/BENCHMARKS.md).
            return self.use_cudnn is not False and accelerator_available()
        return self.gate_path == "recompute"

    def inner_loop(self, sequences, initial_state, mask, training=False):
        if not self.return_gates or not self._recomputes():
            # No gates, or no fused kernel to gain from: the cell steps (and
            # returns its gates as it goes when asked).
            if self.return_gates:
                stepped = keras.layers.RNN.inner_loop.__get__(self)
                return stepped_with_last_real_step(
                    stepped, self, sequences, initial_state, mask, training
                )
            return self._fused_loop(sequences, initial_state, mask, training)
        if isinstance(mask, (list, tuple)):
            mask = mask[0]
        self.cell.return_gates = False  # the fused kernel, or its fallback, gives h alone
        saved, self.return_sequences = self.return_sequences, True
        try:
            _, h, states = self._fused_loop(sequences, initial_state, mask, training)
        finally:
            self.return_sequences = saved
            self.cell.return_gates = True
        x, m = sequences, mask
        if self.go_backwards:  # h is in processing order
            x = ops.flip(x, axis=1)
            m = None if m is None else ops.flip(m, axis=1)
        h = ops.cast(h, "float32")
        gates = self._recompute(ops.cast(x, "float32"), h, m)
        packed = ops.concatenate([h] + [gates[n] for n in self.cell.gate_names], axis=-1)
        if m is not None:  # zeros at padded steps
            packed = packed * ops.cast(m, "float32")[..., None]
        last = last_real_step(packed, mask, self.go_backwards, packed[:, -1])
        packed = ops.cast(packed, self.compute_dtype)
        return ops.cast(last, self.compute_dtype), packed, states

    def _fused_loop(self, sequences, initial_state, mask, training):
        """Keras's layer's loop for h; on torch without CUDA, kgates's linear-time one.

        Keras's torch kernel for a CPU indexes its projected input step by
        step, whose backward zero-fills the whole sequence once per step
        (kgates/torch_loops.py); kgates runs the same equations over the
        sequence unbound once, where Keras would run that kernel: no mask,
        no recurrent dropout, use_cudnn not False.
        """
        if isinstance(mask, (list, tuple)):
            mask = mask[0]
        if (
            keras.backend.backend() == "torch"
            and self.use_cudnn in ("auto", True)
            and not self.recurrent_dropout
            and mask is None
            and self._torch_loop_ok()
            and ops.convert_to_tensor(sequences).device.type != "cuda"
        ):
            if training and self.dropout:  # one input mask for every step, as Keras
                sequences = sequences * self.cell.get_dropout_mask(sequences[:, 0, :])[:, None]
            return self._torch_loop(sequences, initial_state)
        return super().inner_loop(sequences, initial_state, mask, training)

    def _torch_loop_ok(self) -> bool:
        return self.fusable


def _set_use_cudnn(layer, use_cudnn) -> None:
    if use_cudnn not in ("auto", True, False):
        raise ValueError(
            f"{type(layer).__name__}: `use_cudnn` must be 'auto', True or False, got {use_cudnn!r}."
        )
    layer.use_cudnn = use_cudnn
    if keras.backend.backend() == "tensorflow" and use_cudnn in ("auto", True):
        layer.supports_jit = False  # as Keras's layers: cuDNN kernels do not XLA-compile


@keras.saving.register_keras_serializable(package="kgates")
class LSTM(_FusedGates, keras.layers.LSTM):
    """`keras.layers.LSTM` that can return its gates at the fused kernel's price.

    Same arguments as `keras.layers.LSTM`, plus:

    Args:
        return_gates: If True, the output is `h` followed by the gates
            `i f g o c` (packed as in `kgates.LSTMCell`; split with
            `kgates.split_gates(y, layer)`). Default: False.
        gate_path: how gates are obtained: `"recompute"` (fused kernel for h,
            then exact parallel recomputation), `"step"` (the kgates cell
            steps and returns them), or `"auto"`: recompute where Keras runs
            a fused kernel (a GPU), step elsewhere.
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
        _set_use_cudnn(self, use_cudnn)
        self._init_gates(return_gates, gate_path, fusable=cell.variant == "NP")

    def _recompute(self, x, h, mask):
        return lstm_gates(self.cell, x, h, mask)

    def _torch_loop(self, sequences, initial_state):
        from kgates import torch_loops

        h, c = initial_state
        return torch_loops.lstm(
            sequences, h, c, self.cell, self.return_sequences, self.go_backwards
        )

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
class GRU(_FusedGates, keras.layers.GRU):
    """`keras.layers.GRU` that can return its gates at the fused kernel's price.

    Same arguments as `keras.layers.GRU`, plus `return_gates` (output `h`
    then `z r g`), `gate_path` (as in `kgates.LSTM`) and `pin` (a pinned GRU
    steps the kgates cell; the fused kernel needs Keras's own GRU, and cuDNN
    also needs `reset_after=True`).
    """

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
        _set_use_cudnn(self, use_cudnn)
        self._init_gates(return_gates, gate_path, fusable=not cell.pin)

    def _recompute(self, x, h, mask):
        return gru_gates(self.cell, x, h, mask)

    def _torch_loop_ok(self) -> bool:
        return self.fusable and self.cell.reset_after  # Keras steps the cell otherwise

    def _torch_loop(self, sequences, initial_state):
        from kgates import torch_loops

        if isinstance(initial_state, (list, tuple)):
            initial_state = initial_state[0]
        return torch_loops.gru(
            sequences, initial_state, self.cell, self.return_sequences, self.go_backwards
        )

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "return_gates": self.return_gates,
            "gate_path": self.gate_path,
            "pin": dict(self.cell.pin),
        }
