"""Which loop a `kgates.LSTM`/`GRU` call runs: one pure function that chooses, and
the mixin that runs the chosen path."""

from __future__ import annotations

import contextlib
import functools

import keras
from keras import ops

from kgates.cells import _backend
from kgates.cells._rnn import last_real_step, stepped_with_last_real_step

GATE_PATHS = ("auto", "recompute", "step")


def choose_path(
    *,
    backend: str,
    device: str,
    return_gates: bool,
    gate_path: str,
    fusable: bool,
    use_cudnn,
    recurrent_dropout: float,
    masked: bool,
    training: bool,
    has_torch_loop: bool,
) -> str:
    """The path of one call of a `kgates.LSTM`/`GRU`.

    - "keras": Keras's layer's own loop (cuDNN where it can run, else Keras
      steps the cell); h only.
    - "torch loop": kgates's linear-time torch loop, where Keras would run its
      torch CPU kernel (`_torch.py`); h only.
    - "step": the kgates cell steps through `keras.layers.RNN`'s loop,
      returning its gates as it goes when asked.
    - "recompute": h from the path chosen for `return_gates=False`, then every
      gate recomputed exactly, in parallel.

    Args:
        backend: the Keras backend's name.
        device: "gpu" or "cpu", where the sequences are.
        return_gates, gate_path, use_cudnn, recurrent_dropout: the layer's options.
        fusable: whether the cell's options are those of Keras's own layer (no
            variant, pins or peepholes), the only ones a fused kernel runs.
        masked: whether the call has a mask.
        training: whether the call trains.
        has_torch_loop: whether kgates has a torch loop for these options
            (an LSTM; a GRU with reset_after=True, as Keras's torch kernel).
    """
    if not fusable:
        return "step"
    if return_gates:
        if gate_path == "auto":
            # A fused kernel plus the recomputation beats stepping where Keras
            # runs one (a GPU), and in torch's forward passes on a CPU too;
            # stepping trains faster on every CPU (experiments/BENCHMARKS.md).
            fused = use_cudnn is not False and device == "gpu"
            forward = not training and _backend.recomputes_forward_passes(backend)
            return "recompute" if fused or forward else "step"
        return gate_path
    if use_cudnn is False:
        return "step"
    if has_torch_loop and _backend.has_own_loop(backend, device):
        if not recurrent_dropout and not masked:
            return "torch loop"
    return "keras"


class GatePaths:
    """The paths of `LSTM` and `GRU` (mixed in before the Keras layer): options
    checked once, then each call runs what `choose_path` says."""

    family: str  # "lstm" or "gru"

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
        if _backend.cudnn_blocks_jit(self.cell, self.unroll, self.use_cudnn):
            self.supports_jit = False  # as Keras's layer: cuDNN does not XLA-compile
        self.gate_path = gate_path
        self.fusable = fusable
        self.cell.return_gates = return_gates  # checked there: True or False
        self.return_gates = self.cell.return_gates

    @property
    def zero_output_for_mask(self) -> bool:
        """Whether padded steps output zeros: always, with `return_gates` (a packed
        output is not a state to carry; `keras.layers.Bidirectional` sets this to
        `return_sequences` on the layers it wraps)."""
        return self._zero_output_for_mask or getattr(self, "return_gates", False)

    @zero_output_for_mask.setter
    def zero_output_for_mask(self, value: bool) -> None:
        self._zero_output_for_mask = value

    def chosen_path(self, sequences, mask=None, training: bool = False, return_gates=None) -> str:
        """The path a call on `sequences` runs (see `choose_path`)."""
        return choose_path(
            backend=_backend.name(),
            device=_backend.device_of(sequences),
            return_gates=self.return_gates if return_gates is None else return_gates,
            gate_path=self.gate_path,
            fusable=self.fusable,
            use_cudnn=self.use_cudnn,
            recurrent_dropout=self.recurrent_dropout,
            masked=mask is not None,
            training=bool(training),
            has_torch_loop=self._has_torch_loop(),
        )

    def _has_torch_loop(self) -> bool:
        return True

    def inner_loop(self, sequences, initial_state, mask, training=False):
        if isinstance(mask, (list, tuple)):
            mask = mask[0]
        path = self.chosen_path(sequences, mask, training)
        if path == "recompute":
            return self._recomputed(sequences, initial_state, mask, training)
        if path == "torch loop":
            return self._torch_loop(sequences, initial_state, training, self.return_sequences)
        stepped = keras.layers.RNN.inner_loop.__get__(self)
        if path == "step" and self.return_gates:
            return stepped_with_last_real_step(
                stepped, self, sequences, initial_state, mask, training
            )
        if path == "step":
            return stepped(sequences, initial_state, mask, training)
        return super().inner_loop(sequences, initial_state, mask, training)

    def _recomputed(self, sequences, initial_state, mask, training):
        """h from the path chosen without gates, then every gate recomputed from it."""
        h_path = self.chosen_path(sequences, mask, training, return_gates=False)
        x, m = sequences, mask
        if self.go_backwards:  # everything below runs in processing order
            x = ops.flip(x, axis=1)
            m = None if m is None else ops.flip(m, axis=1)
        if h_path == "torch loop":
            _, h, states = self._torch_loop(sequences, initial_state, training, True)
        else:
            keras_loop = super().inner_loop
            stepped = keras.layers.RNN.inner_loop.__get__(self)
            loop = keras_loop if h_path == "keras" else stepped
            with self._h_sequence():  # on the flipped inputs, forwards
                _, h, states = loop(x, initial_state, m, training)
        # at least float32 (a float16 policy's gates would lose their tails), and
        # float64 for a float64 layer
        dtype = "float64" if self.compute_dtype == "float64" else "float32"
        initial = [ops.cast(s, dtype) for s in _as_list(initial_state)]
        h = ops.cast(h, dtype)
        gates = self._recompute(ops.cast(x, dtype), h, m, initial)
        packed = ops.concatenate([h] + [gates[n] for n in self.cell.gate_names], axis=-1)
        if m is not None:  # zeros at padded steps
            packed = packed * ops.cast(m, dtype)[..., None]
        last = last_real_step(packed, mask, self.go_backwards, packed[:, -1])
        packed = ops.cast(packed, self.compute_dtype)
        return ops.cast(last, self.compute_dtype), packed, states

    @contextlib.contextmanager
    def _h_sequence(self):
        """Keras's layer loop reads what it returns from the layer and its cell (no
        public `backend.lstm`): for the recomputation it must give every step's h
        alone, in processing order, so these are set for this one loop. A backward
        layer's inputs are flipped by the caller and run forwards: Keras's fused
        kernels disagree on the order of a backward h (JAX's cuDNN LSTM flips it
        back into time order, its stepped loop and torch's kernel do not)."""
        saved = self.return_sequences, self.cell.return_gates, self.go_backwards
        self.return_sequences, self.cell.return_gates, self.go_backwards = True, False, False
        try:
            yield
        finally:
            self.return_sequences, self.cell.return_gates, self.go_backwards = saved

    def _torch_loop(self, sequences, initial_state, training, return_sequences):
        """kgates's torch loop for h; one input dropout mask for every step, as Keras."""
        if training and self.dropout:
            sequences = sequences * self.cell.get_dropout_mask(sequences[:, 0, :])[:, None]
        states = _as_list(initial_state)
        loop = _backend.torch_loop(self.family)
        return loop(sequences, states, self.cell, return_sequences, self.go_backwards)


def _as_list(states) -> list:
    return list(states) if isinstance(states, (list, tuple)) else [states]


def _unless_gates(can_attempt_fused):
    @functools.wraps(can_attempt_fused)
    def check(bidirectional, *args, **kwargs):
        layers = (bidirectional.forward_layer, bidirectional.backward_layer)
        if any(getattr(layer, "return_gates", False) for layer in layers):
            return False
        return can_attempt_fused(bidirectional, *args, **kwargs)

    check.keeps_gates = True
    return check


def keep_gates_off_the_fused_bidirectional_kernel() -> None:
    """`keras.layers.Bidirectional` runs an `LSTM`/`GRU` pair through the backend's
    fused two-direction kernel where it can (a GPU on JAX and torch), reading
    only the layers' weights: it returns h alone, and a `kgates.LSTM`/`GRU` with
    `return_gates=True` would lose its gates. Its two checks are wrapped once, at
    import, to say no for such layers; each direction then runs its own layer,
    whose path (the fused kernel for h, then the exact recomputation) keeps the
    gates. Every other layer is dispatched as before; a Keras without the fused
    path is left alone."""
    cls = keras.layers.Bidirectional
    for name in ("_can_attempt_fused_lstm", "_can_attempt_fused_gru"):
        method = getattr(cls, name, None)
        if method is not None and not getattr(method, "keeps_gates", False):
            setattr(cls, name, _unless_gates(method))
