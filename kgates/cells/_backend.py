"""Everything in kgates that asks which Keras backend runs: one module.

The rest of kgates is written in `keras.ops`. What cannot be: which device a
tensor lives on, the fastest scan per backend, torch's own loops (a speed
copy of the cell equations, `_torch.py`, and its scan as a Triton kernel,
`_triton.py`), and a compiled gradient with respect to extra inputs (each
backend's autodiff).
"""

from __future__ import annotations

import functools
import importlib.util
import os
from collections.abc import Callable

import keras
from keras import ops

SCAN_METHODS = ("associative", "doubling", "sequential")


def name() -> str:
    """The running Keras backend: "tensorflow", "jax" or "torch"."""
    return keras.backend.backend()


@functools.cache
def accelerator_available() -> bool:
    """Whether the Keras backend sees a GPU (where fused kernels run); asked once per
    process (the layers' path choice asks at every call)."""
    backend = name()
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            return bool(tf.config.list_logical_devices("GPU"))
        if backend == "jax":
            import jax

            return jax.default_backend() == "gpu"
        if backend == "torch":
            import torch

            return torch.cuda.is_available()
    except Exception:  # noqa: BLE001 - no device query: no accelerator
        return False
    return False


def device_of(x) -> str:
    """ "gpu" or "cpu": where `x` is computed (torch: its device; others: the default)."""
    if name() == "torch":
        return "gpu" if ops.convert_to_tensor(x).device.type == "cuda" else "cpu"
    return "gpu" if accelerator_available() else "cpu"


def default_scan() -> str:
    """The faster `linear_scan` method here (experiments/BENCHMARKS.md): sequential on
    torch (whose associative scan builds its intermediates on the CPU) and on
    TensorFlow without a GPU, associative elsewhere."""
    backend = name()
    if backend == "torch" or (backend == "tensorflow" and not accelerator_available()):
        return "sequential"
    return "associative"


# torch's sequential scan on CUDA tensors as one Triton kernel each way (`_triton.py`)
# instead of one addcmul launch a step (23 µs a step on an H200). Off until measured
# on a GPU: experiments/bench.py times both, experiments/gpu_checks.py checks it.
FUSED_SCAN = False


def fused_scan_available(x) -> bool:
    """Whether Triton can run the fused scan on `x`: a torch tensor on CUDA, or any
    torch tensor under Triton's interpreter (TRITON_INTERPRET=1), where Triton is
    installed."""
    if name() != "torch" or not _triton_installed():
        return False
    return x.device.type == "cuda" or os.environ.get("TRITON_INTERPRET") == "1"


@functools.cache
def _triton_installed() -> bool:
    return importlib.util.find_spec("triton") is not None


def native_sequential_scan(a, b, initial=None):
    """torch's sequential scan (one addcmul a step, the reverse recurrence as its
    backward; fused into one kernel each way where `FUSED_SCAN` is on and Triton
    runs), or None where `keras.ops.scan` is the right loop."""
    if name() != "torch":
        return None
    from kgates.cells import _torch

    return _torch.linear_scan(a, b, initial, fused=FUSED_SCAN and fused_scan_available(b))


# How `bucket_counts` counts. "scatter": one scatter-add of the entries into their
# buckets (torch: `bincount`). "spread": the same over `SPREAD` copies of the
# buckets, entry k into copy k % SPREAD, then summed: on a GPU, millions of atomic
# adds into a few dozen buckets queue on the same addresses, and neighbouring
# entries into different copies should not. "compare": for every bucket, a sum
# of (index == bucket): no scatter and no atomics, `bins` times the arithmetic,
# which XLA fuses into one pass over the entries (eagerly, on TensorFlow or
# torch, it would hold entries x bins booleans). None: "scatter". The other two
# are candidates for GPUs, not yet measured there: `experiments/bench.py` times
# them beside the default.
COUNTING: str | None = None
COUNTING_METHODS = ("scatter", "spread", "compare")
SPREAD = 256


def counting() -> str:
    """The way `bucket_counts` counts now (`COUNTING`, default "scatter")."""
    method = COUNTING or "scatter"
    if method not in COUNTING_METHODS:
        raise ValueError(
            f"kgates.cells._backend.COUNTING must be one of {COUNTING_METHODS} or None, "
            f"got {method!r}."
        )
    return method


def _scatter_count(index, total: int):
    """How many entries of the flat int32 `index` fall in each of `total` buckets."""
    if name() == "torch":
        import torch

        return torch.bincount(index, minlength=total)[:total].to(torch.int32)
    return ops.segment_sum(ops.ones_like(index), index, total)


def bucket_counts(index, on, bins: int, method: str | None = None):
    """`(rows, bins)` int32: how many entries of each row of `index` `(rows, n)`, int32
    with 0 <= index < bins, fall in each bucket, counting only where `on` (bool,
    the same shape) holds, by `method` (default `counting()`). Integers: float32
    sums of ones stop growing at 2**24 (16.8 M), which a GPU probe's gate passes
    (int32 holds a row of up to 2**31 - 1 entries)."""
    method = method or counting()
    rows = index.shape[0]
    if method == "compare":
        hits = ops.logical_and(on[..., None], index[..., None] == ops.arange(bins, dtype="int32"))
        return ops.sum(ops.cast(hits, "int32"), axis=1)
    flat = ops.where(on, index + ops.arange(rows, dtype="int32")[:, None] * bins, rows * bins)
    total = rows * bins + 1  # off: into one spare bucket
    if method == "spread":
        lane = ops.arange(ops.shape(index)[1], dtype="int32") % SPREAD
        counts = _scatter_count(ops.reshape(flat * SPREAD + lane, (-1,)), total * SPREAD)
        counts = ops.sum(ops.reshape(counts, (total, SPREAD)), axis=1)
    else:
        counts = _scatter_count(ops.reshape(flat, (-1,)), total)
    return ops.reshape(counts[:-1], (rows, bins))


def has_own_loop(backend: str, device: str) -> bool:
    """Whether kgates runs its own loop for h where Keras would run its kernel: torch
    without CUDA, whose kernel indexes the sequence step by step (`_torch.py`)."""
    return backend == "torch" and device == "cpu"


def compiles_one_off_calls() -> bool:
    """Whether even a single call of a model is faster compiled than eager: JAX, whose
    eager ops are each compiled for their shapes, so that a first eager trace and its
    dashboard numbers cost several times one compile of the whole model."""
    return name() == "jax"


def recomputes_forward_passes(backend: str) -> bool:
    """Whether a forward pass (inference, a trace) is faster as Keras's kernel plus the
    recomputation than stepping the cell, also without a GPU: torch, whose CPU kernel
    is fused too (experiments/BENCHMARKS.md)."""
    return backend == "torch"


def torch_loop(family: str) -> Callable:
    """kgates's torch loop for "lstm" or "gru" (see `_torch.py`)."""
    from kgates.cells import _torch

    return {"lstm": _torch.lstm, "gru": _torch.gru}[family]


def cudnn_blocks_jit(cell, unroll: bool, use_cudnn) -> bool:
    """Whether a layer must be marked not XLA-compilable at construction, as Keras
    marks its own LSTM/GRU: on TensorFlow, where cuDNN can run (a GPU, Keras's
    activations, a bias, no unrolling; a GRU with reset_after=True)."""
    if name() != "tensorflow" or use_cudnn not in ("auto", True):
        return False
    supported = (
        cell.activation is keras.activations.tanh
        and cell.recurrent_activation is keras.activations.sigmoid
        and cell.use_bias
        and not unroll
        and getattr(cell, "reset_after", True)
    )
    return bool(supported) and accelerator_available()


def tensorflow_summary():
    """`tf.summary` where TensorFlow is installed (Keras's TensorBoard callback writes
    its own logs with it, whatever the backend), else None."""
    try:
        import tensorflow.summary as summary
    except ImportError:
        return None
    return summary


def compiled_gradient(fn: Callable, owner, then: Callable | None = None) -> Callable:
    """`grad(deltas, *args)`: d fn(deltas, *args) / d deltas, compiled by the backend.

    `deltas` is a list of tensors; `owner` is the layer or model whose
    variables `fn` reads (JAX reads them statelessly, so new weights need no
    recompilation). With `then`, `grad` returns `then(gradients, *args)`,
    compiled with it.
    """
    backend = name()
    finish = then or (lambda grads, *args: grads)
    if backend == "tensorflow":
        import tensorflow as tf

        @tf.function(reduce_retracing=True)
        def grad(deltas, *args):
            with tf.GradientTape() as tape:
                tape.watch(deltas)
                value = fn(deltas, *args)
            return finish(tape.gradient(value, deltas, unconnected_gradients="zero"), *args)

        return grad
    if backend == "jax":
        import jax

        variables = list(owner.variables)

        def stateless(values, deltas, *args):
            with keras.StatelessScope(state_mapping=list(zip(variables, values))):
                return fn(deltas, *args)

        def finished(values, deltas, *args):
            grads = jax.grad(stateless, argnums=1)(values, deltas, *args)
            with keras.StatelessScope(state_mapping=list(zip(variables, values))):
                return finish(grads, *args)  # (reading the weights passed in, too)

        jitted = jax.jit(finished)
        return lambda deltas, *args: jitted([v.value for v in variables], deltas, *args)
    if backend == "torch":
        import torch

        def grad(deltas, *args):
            deltas = [d.detach().requires_grad_(True) for d in deltas]
            grads = torch.autograd.grad(fn(deltas, *args), deltas, allow_unused=True)
            grads = [torch.zeros_like(d) if g is None else g for d, g in zip(deltas, grads)]
            with torch.no_grad():
                return finish(grads, *args)

        return grad
    raise NotImplementedError(f"kgates: gradients need autodiff; backend {backend!r} has none.")
