"""Bidirectional around kgates layers with gates, on the device: both directions' h
and every gate against the float64 references of the test suite, for LSTM and GRU,
with and without a padding mask, returning sequences or the last step. On a GPU,
Keras's Bidirectional would take its fused two-direction kernel for an LSTM/GRU
pair; this checks that gated kgates layers keep their gates there.

    KERAS_BACKEND=jax python experiments/gpu_checks.py --json $OUT/checks_jax.json

Prints one row per case (the largest |difference|, within 1e-4 in float32: on a
GPU with TF32 off, see TOLERANCE) and exits 1 if any case fails.
`experiments/gpu.sh` runs it with the timings.

On torch where Triton runs, the cases run again with the c scan as one Triton
kernel (`kgates.cells._backend.FUSED_SCAN`), after a check of that scan alone
against a float64 loop, values and gradients. Before that, an LSTM's gradient
flow in one pass of its layer (the fused kernel, what a GPU takes) against the
cell unrolled step by step, on the device, and the dashboards' bucket counts by
every way of counting (`kgates.cells._backend.COUNTING`) against NumPy, exactly.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import os
import sys
import time
from unittest import mock

import keras
import numpy as np

import kgates

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from reference import gru_reference, lstm_reference  # noqa: E402 (the suite's float64 cells)

# float32: on a GPU, run with TF32 off (NVIDIA_TF32_OVERRIDE=0 and, on JAX,
# JAX_DEFAULT_MATMUL_PRECISION=highest, as experiments/gpu.sh does); under TF32 these
# N(0, 0.5) weights gave differences up to 7e-3 on an H200 (experiments/BENCHMARKS.md).
TOLERANCE = 1e-4


def _weights(layer, rng) -> dict:
    values = [rng.normal(0.0, 0.5, w.shape).astype("float32") for w in layer.weights]
    layer.set_weights(values)
    return {w.path.split("/")[-1]: v for w, v in zip(layer.weights, values)}


def case(family: str, return_sequences: bool, masked: bool, rng) -> dict:
    layer_cls, reference = (
        (kgates.LSTM, lstm_reference) if family == "lstm" else (kgates.GRU, gru_reference)
    )
    x = rng.normal(size=(16, 40, 8)).astype("float32")
    lengths = rng.integers(1, 41, 16)
    lengths[0] = 40
    mask = np.arange(40)[None] < lengths[:, None] if masked else None
    if masked:
        x = x * mask[..., None]
    bidi = keras.layers.Bidirectional(
        layer_cls(32, return_sequences=return_sequences, return_gates=True)
    )
    bidi(x, mask=mask)
    forward, backward = _weights(bidi.forward_layer, rng), _weights(bidi.backward_layer, rng)
    y = bidi(x, mask=mask)
    result = {"family": family, "return_sequences": return_sequences, "masked": masked}
    result["shape_ok"] = tuple(y.shape) == tuple(bidi.compute_output_shape(x.shape))
    if not result["shape_ok"]:
        result.update(max_difference=None, ok=False)
        return result
    got = kgates.split_gates(keras.ops.convert_to_numpy(y), bidi)
    want = {"forward": reference(x, forward, 32, mask=mask)}
    back = reference(x[:, ::-1], backward, 32, mask=None if mask is None else mask[:, ::-1])
    want["backward"] = {k: v[:, ::-1] for k, v in back.items()}
    if not return_sequences:
        last = np.arange(40)[None] if mask is None else np.where(mask, np.arange(40)[None], -1)
        rows = np.arange(16)
        want["forward"] = {k: v[rows, last.max(axis=1)] for k, v in want["forward"].items()}
        want["backward"] = {k: v[:, 0] for k, v in want["backward"].items()}
    difference = max(float(np.max(np.abs(got[d][k] - want[d][k]))) for d in want for k in want[d])
    result.update(max_difference=difference, ok=difference <= TOLERANCE)
    return result


def scan_case(rng) -> dict:
    """torch's c scan as one Triton kernel each way, on the device, against the
    stepped scan in float64 (tests/test_scan.py holds that to float64 differences):
    s and the gradients of a weighted sum, largest |difference| over largest |value|."""
    import torch

    from kgates.cells import _torch

    shape = (64, 300, 200)  # 200 units: a partial second block of the kernel
    a, b, w = rng.uniform(0.5, 1.0, shape), rng.normal(size=shape), rng.normal(size=shape)
    s0 = rng.normal(size=(64, 200))
    result = {}
    here = keras.ops.zeros((1,)).device  # Keras's device (CUDA on a GPU)
    for fused, dtype, device in ((True, torch.float32, here), (False, torch.float64, "cpu")):
        values = [
            torch.tensor(v, dtype=dtype, device=device, requires_grad=True) for v in (a, b, s0)
        ]
        s = _torch.linear_scan(*values, fused=fused)
        grads = torch.autograd.grad(
            torch.sum(torch.tensor(w, dtype=dtype, device=device) * s), values
        )
        result[fused] = [v.detach().double().cpu().numpy() for v in (s, *grads)]
    relative = max(
        float(np.max(np.abs(got - want)) / np.max(np.abs(want)))
        for got, want in zip(result[True], result[False])
    )
    return {
        "family": "c scan (Triton)",
        "return_sequences": None,
        "masked": None,
        "shape_ok": True,
        "max_difference": relative,
        "ok": relative <= TOLERANCE,
    }


def counting_case(method: str, entries: int, rng) -> dict:
    """The dashboards' bucket counts made on the device by `method`
    (`kgates.cells._backend.COUNTING`) against NumPy's bincount, exactly: two rows
    of `entries` (on a GPU past 2**24, where float32 sums of ones stop), most of
    them in one bucket, a few left out."""
    from kgates.cells import _backend

    family = f"bucket counts, {method}"
    row = {"family": family, "return_sequences": None, "masked": None, "shape_ok": True}
    index = np.where(rng.random((2, entries)) < 0.99, 7, rng.integers(0, 30, (2, entries)))
    on = rng.random((2, entries)) < 0.999
    count = functools.partial(_backend.bucket_counts, bins=30, method=method)
    if keras.backend.backend() == "jax":  # compiled, as in the dashboards
        import jax

        count = jax.jit(count)
    try:
        args = keras.ops.convert_to_tensor(index.astype("int32")), keras.ops.convert_to_tensor(on)
        got = keras.ops.convert_to_numpy(count(*args))
        seconds = []
        for _ in range(3):  # what it takes (the result on the host: the device is done)
            start = time.perf_counter()
            keras.ops.convert_to_numpy(count(*args))
            seconds.append(time.perf_counter() - start)
    except Exception as error:  # e.g. out of device memory: a failed case, the rest go on
        message = f"{type(error).__name__}: {(str(error) or '-').splitlines()[0][:200]}"
        print(f"{family}: {message}")
        return {**row, "max_difference": None, "ok": False, "error": message}
    want = np.stack([np.bincount(i[k], minlength=30) for i, k in zip(index, on)])
    difference = float(np.max(np.abs(got.astype(np.int64) - want)))
    row.update(max_difference=difference, ok=difference == 0.0)
    return {**row, "seconds": float(np.median(seconds))}


def flow_case(masked: bool, rng) -> dict:
    """kgates.gradient_flow of a Keras LSTM on the device, one pass of the layer (what
    a GPU takes) against the cell unrolled step by step (tests/test_onepass.py holds
    the two together, tests/test_gradflow.py the unrolled one to finite differences):
    largest |difference| of the norms over the largest norm, h and c."""
    from kgates.inspect import _gradflow

    x = rng.normal(size=(16, 40, 8)).astype("float32")
    if masked:
        x[np.arange(40)[None] >= rng.integers(1, 41, 16)[:, None]] = 0.0
    inputs = keras.Input((40, 8))
    layer = keras.layers.LSTM(32, return_sequences=True, go_backwards=masked)
    model = keras.Model(inputs, keras.layers.Dense(2)(layer(keras.layers.Masking(0.0)(inputs))))
    model.compile("sgd", "mse")
    _weights(layer, rng)
    y = rng.normal(size=(16, 40, 2)).astype("float32")
    flows = {}
    for one_pass in (True, False):
        with mock.patch.object(_gradflow, "ONE_PASS", one_pass):
            flows[one_pass] = kgates.gradient_flow(model, x, y)[layer.name]
    relative = max(
        float(np.max(np.abs(flows[True][k] - flows[False][k])) / np.max(flows[False][k]))
        for k in ("h", "c")
    )
    return {
        "family": "gradient flow, one pass" + (", backwards" if masked else ""),
        "return_sequences": True,
        "masked": masked,
        "shape_ok": True,
        "max_difference": relative,
        "ok": relative <= TOLERANCE,
    }


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    device = kgates.cells._backend.device_of(keras.ops.zeros((1,)))
    cases = list(itertools.product(("lstm", "gru"), (True, False), (False, True)))
    results = [case(*c, rng) for c in cases]
    results += [flow_case(masked, rng) for masked in (False, True)]
    entries = 2**24 + 7 if device == "gpu" else 10_007  # past float32's integers on a GPU
    results += [counting_case(m, entries, rng) for m in kgates.cells._backend.COUNTING_METHODS]
    if kgates.cells._backend.fused_scan_available(keras.ops.zeros((1,))):
        results.append(scan_case(rng))
        kgates.cells._backend.FUSED_SCAN = True
        try:
            for r in (case(*c, rng) for c in cases if c[0] == "lstm"):
                results.append({**r, "family": "lstm, Triton scan"})
        finally:
            kgates.cells._backend.FUSED_SCAN = False
    tf32 = os.environ.get("NVIDIA_TF32_OVERRIDE")
    print(
        f"Bidirectional(kgates layer, return_gates=True) and gradient flow, "
        f"{keras.backend.backend()} on {device}, NVIDIA_TF32_OVERRIDE={tf32}:"
    )
    print("| layer | return_sequences | mask | shape | largest difference | ok |")
    print("| --- | --- | --- | --- | ---: | --- |")
    for r in results:
        difference = "-" if r["max_difference"] is None else f"{r['max_difference']:.1e}"
        print(
            f"| {r['family']} | {r['return_sequences']} | {r['masked']} | "
            f"{'ok' if r['shape_ok'] else 'WRONG'} | {difference} | {'yes' if r['ok'] else 'NO'} |"
        )
    counted = [r for r in results if "seconds" in r]
    print(
        f"bucket counts of 2 x {entries} entries into 30 buckets (median of 3): "
        + ", ".join(
            f"{r['family'][len('bucket counts, ') :]} {r['seconds'] * 1e3:.2f} ms" for r in counted
        )
    )
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json + ".part", "w") as f:  # whole or not at all
            json.dump(
                {
                    "backend": keras.backend.backend(),
                    "device": device,
                    "tf32_override": tf32,
                    "cases": results,
                },
                f,
                indent=1,
            )
        os.replace(args.json + ".part", args.json)
    if not all(r["ok"] for r in results):
        raise SystemExit(1)
    return results


if __name__ == "__main__":
    main()
