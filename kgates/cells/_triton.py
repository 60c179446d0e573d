"""torch's sequential scan as one Triton kernel each way, for CUDA tensors.

`_torch.linear_scan` launches one `addcmul` a step, and on a GPU each launch
costs more than its arithmetic: on an H200 the LSTM's c scan took 23 µs a
step at B=256, units=128, 1.12x a whole cuDNN forward pass at T=500
(experiments/BENCHMARKS.md). Here one program per (batch row, block of units)
walks the steps in a register, reading a_t and b_t and writing s_t once;
the backward walks back the same way. Imported only by `_torch.py`, where
Triton is installed (with torch for CUDA); Triton's interpreter
(TRITON_INTERPRET=1) runs the same kernels on CPU tensors, as the tests do.
"""

from __future__ import annotations

import contextlib

import torch
import triton
import triton.language as tl
from torch.autograd.function import once_differentiable

BLOCK = 128  # units per program: one per thread of 4 warps


@triton.jit
def _forward(a_ptr, b_ptr, s0_ptr, s_ptr, steps, units, ACC: tl.constexpr, BLOCK: tl.constexpr):
    """s_t = a_t * s_tm1 + b_t for one batch row and BLOCK units, t = 0 .. steps-1."""
    unit = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    row = tl.program_id(0).to(tl.int64)
    keep = unit < units
    first = row * steps * units + unit  # (row, 0, unit) in a contiguous (B, T, units)
    s = tl.load(s0_ptr + row * units + unit, mask=keep, other=0.0).to(ACC)
    for t in range(steps):
        at = first + t * units
        a = tl.load(a_ptr + at, mask=keep, other=0.0).to(ACC)
        b = tl.load(b_ptr + at, mask=keep, other=0.0).to(ACC)
        s = a * s + b
        tl.store(s_ptr + at, s.to(s_ptr.dtype.element_ty), mask=keep)


@triton.jit
def _backward(
    a_ptr,
    s_ptr,
    s0_ptr,
    grad_ptr,
    da_ptr,
    db_ptr,
    ds0_ptr,
    steps,
    units,
    ACC: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """From the last step back: d_t = grad_t + a_{t+1} * d_{t+1} (= dL/db_t),
    dL/da_t = d_t * s_{t-1} (s_0 before the first step), dL/ds_0 = a_0 * d_0."""
    unit = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    row = tl.program_id(0).to(tl.int64)
    keep = unit < units
    first = row * steps * units + unit
    s0 = tl.load(s0_ptr + row * units + unit, mask=keep, other=0.0).to(ACC)
    d = tl.full([BLOCK], 0.0, ACC)  # (builtins only: the interpreter runs no library jit)
    a_next = tl.full([BLOCK], 0.0, ACC)
    for k in range(steps):
        t = steps - 1 - k
        at = first + t * units
        d = tl.load(grad_ptr + at, mask=keep, other=0.0).to(ACC) + a_next * d
        tl.store(db_ptr + at, d.to(db_ptr.dtype.element_ty), mask=keep)
        later = at > first  # t > 0 as a tensor: Triton 3.9's interpreter masks by no bool
        s_prev = tl.load(s_ptr + at - units, mask=keep & later, other=0.0).to(ACC)
        s_prev = tl.where(later, s_prev, s0)
        tl.store(da_ptr + at, (d * s_prev).to(da_ptr.dtype.element_ty), mask=keep)
        a_next = tl.load(a_ptr + at, mask=keep, other=0.0).to(ACC)
    tl.store(ds0_ptr + row * units + unit, (a_next * d).to(ds0_ptr.dtype.element_ty), mask=keep)


def _launch(kernel, like, *args) -> None:
    """`kernel` over the (batch, time, units) tensor `like`: a program per row and block."""
    batch, _, units = like.shape
    acc = tl.float64 if like.dtype == torch.float64 else tl.float32  # halves add in float32
    grid = (batch, triton.cdiv(units, BLOCK))  # rows first: up to 2**31 - 1
    with torch.cuda.device(like.device) if like.is_cuda else contextlib.nullcontext():
        kernel[grid](*args, units, ACC=acc, BLOCK=BLOCK)  # on the tensors' GPU


class _LinearScan(torch.autograd.Function):
    """As `_torch._LinearScan` on contiguous (B, T, units) tensors of one dtype, s_0
    (B, units): one kernel launch each way."""

    @staticmethod
    def forward(ctx, a, b, s_0):
        s = torch.empty_like(b)
        if s.numel():
            _launch(_forward, s, a, b, s_0, s, s.shape[1])
        ctx.save_for_backward(a, s, s_0)
        return s

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        a, s, s_0 = ctx.saved_tensors
        da, db, ds_0 = torch.empty_like(a), torch.empty_like(s), torch.zeros_like(s_0)
        if s.numel():
            _launch(_backward, s, a, s, s_0, grad.contiguous(), da, db, ds_0, s.shape[1])
        return da, db, ds_0


def linear_scan(a, b, s_0):
    """s_t = a_t * s_tm1 + b_t along axis 1 of (B, T, ...) tensors `a` and `b` (one
    dtype; `a` and `s_0` may broadcast to `b`'s shape, as a mask does) from `s_0`
    (B, ...), by the kernels above."""
    batch, steps = b.shape[:2]
    a, s_0 = a.expand(b.shape), s_0.expand(b.shape[:1] + b.shape[2:])
    flat = [v.reshape(batch, steps, -1).contiguous() for v in (a, b)]
    s = _LinearScan.apply(*flat, s_0.reshape(batch, -1).contiguous())
    return s.reshape(b.shape)
