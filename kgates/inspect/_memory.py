"""What a recurrent layer's memory holds, and from when.

An LSTM's cell state is a sum of what earlier steps wrote, each write shrunk by
every forget gate since:

    c_t = (f_0 ... f_t) c_{-1} + sum_{s<=t} (f_{s+1} ... f_t) i_s g_s

and a GRU's state has the same form with f -> z and i -> 1 - z. The term for
step s is what step s wrote that step t still holds. From the traced gates it
is exact, and cheap: running products, never a log (a gate may be exactly 0).
"""

from __future__ import annotations

import warnings

import keras
import numpy as np
from keras import ops

from kgates.inspect._stats import has_memory, keep_and_write
from kgates.inspect._trace import Tracer


class Memory:
    """One layer's memory (an LSTM's c, a GRU's h) taken apart by the step that wrote it.

    Built by `kgates.memory`, or from traced gates with `Memory.from_gates`. All
    arrays are float64, `(batch, time, units)` in the input's time order; for a
    layer that reads backwards (`go_backwards`, a Bidirectional's backward
    half) "earlier" means later in the input. Padded steps write nothing and
    keep everything (as Keras carries the state over them).

    Attributes:
        keep: the share of the previous state each step keeps (`f`, or `z`).
        write: what each step writes (`i * g`, or `(1 - z) * g`).
        state: the state those sum to (`c`, or `h`), as traced.
        valid: `(batch, time)` True at real steps.
        backwards: whether the layer reads the input from its end.
        initial_state: `(batch, units)`, the state before the first step
            (zeros: kgates traces layers from Keras's default initial state).
    """

    def __init__(
        self,
        keep,
        write,
        state=None,
        valid=None,
        backwards: bool = False,
        initial_state=None,
    ):
        keep, write = np.asarray(keep, "float64"), np.asarray(write, "float64")
        if keep.ndim != 3 or keep.shape != write.shape:
            raise ValueError(
                "Memory: `keep` and `write` must be (batch, time, units) arrays of one "
                f"shape, got {keep.shape} and {write.shape}."
            )
        self.valid = np.ones(keep.shape[:2], bool) if valid is None else np.asarray(valid, bool)
        padded = ~self.valid[..., None]
        self.keep = np.where(padded, 1.0, keep)
        self.write = np.where(padded, 0.0, write)
        self.state = None if state is None else np.asarray(state, "float64")
        self.backwards = backwards
        shape = (keep.shape[0], keep.shape[2])
        self.initial_state = (
            np.zeros(shape) if initial_state is None else np.asarray(initial_state, "float64")
        )

    @classmethod
    def from_gates(cls, gates: dict, backwards: bool = False, initial_state=None) -> Memory:
        """The memory of one layer's traced gates (`kgates.trace(...)[name]`): an LSTM's
        (`f`, `i`, `g`, `c`) or a GRU's (`z`, `g`, `h`); `initial_state` is its c (h)
        before the first step (zeros if None)."""
        valid = None
        first = next(iter(gates.values()))
        if np.ma.is_masked(first):
            valid = ~np.ma.getmaskarray(first)[..., 0]
        plain = {k: np.ma.getdata(v) for k, v in gates.items()}
        if not has_memory(plain):
            raise ValueError(
                "Memory.from_gates: expected an LSTM's gates (f, i, g, c) or a GRU's "
                f"(z, g, h); got {sorted(gates)}. A SimpleRNN has no gates: its state is "
                "not a sum of earlier writes, so it has no memory to take apart."
            )
        keep, write = keep_and_write(plain)
        state = plain["c" if "c" in plain else "h"]
        return cls(keep, write, state, valid, backwards, initial_state)

    # Every method works in processing order (reversed for a backwards layer)
    # and hands results back in input order.
    def _ordered(self, a: np.ndarray) -> np.ndarray:
        return a[:, ::-1] if self.backwards else a

    def _step(self, t: int) -> int:
        steps = self.keep.shape[1]
        if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or not -steps <= t < steps:
            raise ValueError(f"Memory: `t` must be a step from {-steps} to {steps - 1}, got {t!r}.")
        t = int(t) % steps
        return steps - 1 - t if self.backwards else t

    def _held(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        """(share of each step's write still held at step t: (B, T, U); of the initial state)."""
        keep = self._ordered(self.keep)
        t = self._step(t)
        held = np.zeros_like(keep)
        # held[s] = keep_{s+1} ... keep_t: running products from t backwards (no logs)
        held[:, t] = 1.0
        held[:, :t] = np.cumprod(keep[:, t:0:-1], axis=1)[:, ::-1]
        return held, held[:, 0] * keep[:, 0]

    def contributions(self, t: int = -1) -> np.ndarray:
        """`(batch, time, units)`: what each step wrote that the state at step `t` still
        holds (zero after `t`, and at padded steps). With `initial(t)` it sums to the
        state at `t`."""
        held, _ = self._held(t)
        return self._ordered(held * self._ordered(self.write))

    def initial(self, t: int = -1) -> np.ndarray:
        """`(batch, units)`: what is left of the initial state at step `t`."""
        _, running = self._held(t)
        return running * self.initial_state

    def _magnitudes(self) -> tuple[np.ndarray, np.ndarray]:
        """For every step t: sum over s of |term_{s,t}| (A) and of age * |term| (B),
        by the recurrences A_t = |k_t| A_{t-1} + |w_t|, B_t = |k_t| (B_{t-1} + A_{t-1});
        the initial state counts as written one step before the first, and padded
        steps add no age."""
        keep, write = np.abs(self._ordered(self.keep)), np.abs(self._ordered(self.write))
        real = self._ordered(self.valid)[..., None]
        total, aged = np.zeros_like(keep), np.zeros_like(keep)
        a, b = np.abs(self.initial_state), np.zeros_like(self.initial_state)
        for t in range(keep.shape[1]):
            a, b = keep[:, t] * a + write[:, t], keep[:, t] * (b + a * real[:, t])
            total[:, t], aged[:, t] = a, b
        return total, aged

    @property
    def span(self) -> np.ndarray:
        """`(batch, time, units)`: the mean age, in steps, of what each unit's state holds
        at each step (weighted by each term's size): its memory span. 0 where it holds
        nothing; masked at padded steps."""
        total, aged = self._magnitudes()
        span = np.divide(aged, total, out=np.zeros_like(aged), where=total > 0)
        padded = np.broadcast_to(~self.valid[..., None], span.shape)
        return np.ma.masked_array(self._ordered(span), mask=padded)

    def attention(self, t: int = -1) -> np.ndarray:
        """`(batch, time)`: the share of the state's size at step `t` (summed over units)
        written at each step; the rest is what is left of the initial state."""
        contributions = np.abs(self.contributions(t)).sum(axis=2)
        total = contributions.sum(axis=1) + np.abs(self.initial(t)).sum(axis=1)
        return np.divide(
            contributions,
            total[:, None],
            out=np.zeros_like(contributions),
            where=total[:, None] > 0,
        )

    def attention_map(self, sequence: int = 0) -> np.ndarray:
        """`(time, time)`: row t is `attention(t)` of one sequence (for pictures).

        One pass in processing order carries every step's write forward (each step
        scales what came before by its keep): about time x time x units / 2
        products, where running products back from each t took 2 x time x units
        per row, 2 x time x time x units in all."""
        keep, write = self._ordered(self.keep)[sequence], self._ordered(self.write)[sequence]
        steps = keep.shape[0]
        held = np.zeros_like(keep)  # row s: what step s wrote that step p still holds
        initial = np.abs(self.initial_state[sequence])
        shares = np.zeros((steps, steps))
        for p in range(steps):
            held[:p] *= keep[p]
            held[p] = write[p]
            initial = initial * np.abs(keep[p])
            row = np.abs(held[: p + 1]).sum(axis=1)
            total = row.sum() + initial.sum()
            if total > 0:
                shares[p, : p + 1] = row / total
        return shares[::-1, ::-1] if self.backwards else shares


def memory(model: keras.Model, x, mask=None, layers=None) -> dict[str, Memory]:
    """What the memory of each LSTM and GRU layer of `model` holds, and from when.

    Works on the model as it is: stock `keras.layers.LSTM`/`GRU` layers and kgates
    cells and variants (a pinned gate is its constant), stacked or Bidirectional,
    on every backend. Padded steps (masked) write nothing. A layer starts from the
    states the model passes it (`initial_state=`, e.g. an encoder's), or a stateful
    layer from the state it carries (`Memory.initial_state`), as in `kgates.trace`.

    Args:
        model: a functional or Sequential Keras model built on `keras.Input`.
        x: a batch of model inputs.
        mask: optional `(batch, time)` mask of real steps (see `kgates.trace`).
        layers: optional name or names of the layers. Default: every LSTM and GRU
            layer (a SimpleRNN has no memory to take apart; it is left out).

    Returns:
        `{layer_name: Memory}` (a Bidirectional gives `"name/forward"` and
        `"name/backward"`).

    Example:

    >>> m = kgates.memory(model, x)["lstm"]
    >>> m.contributions(t=-1).shape     # what each step wrote that the last c holds
    (4, 20, 8)
    """
    tracer = Tracer(model, layers, compiled=False)
    traced = tracer(x, mask)
    starts = tracer.walk.initial_states(tracer.walk.check_inputs(x, "kgates.memory"))
    result, plain = {}, []
    for part in tracer.parts:
        gates = traced[part.name]
        if not has_memory(gates):  # a SimpleRNN
            plain.append(part.name)
            continue
        initial = starts.get(part.name)  # h, then c for an LSTM
        if initial is not None:
            initial = ops.convert_to_numpy(initial[1 if "c" in gates else 0])
        result[part.name] = Memory.from_gates(gates, part.layer.go_backwards, initial)
    if plain:
        message = (
            f"kgates.memory: {', '.join(plain)} {'is a' if len(plain) == 1 else 'are'} "
            "SimpleRNN: its state is not a sum of earlier writes (no gates), so there "
            "is no memory to take apart"
        )
        if not result:
            raise ValueError(message + "; memory applies to LSTM and GRU layers.")
        warnings.warn(message + "; left out.", stacklevel=2)
    return result
