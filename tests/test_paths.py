"""The path chooser of kgates.LSTM/GRU, case by case (no model runs)."""

import pytest

from kgates.cells._paths import choose_path

BASE = {
    "backend": "tensorflow",
    "device": "cpu",
    "return_gates": False,
    "gate_path": "auto",
    "fusable": True,
    "use_cudnn": "auto",
    "recurrent_dropout": 0.0,
    "masked": False,
    "training": True,
    "has_torch_loop": True,
}


@pytest.mark.parametrize(
    ("case", "path"),
    [
        # without gates: Keras's layer (cuDNN or its own fallback) ...
        ({}, "keras"),
        ({"device": "gpu"}, "keras"),
        ({"backend": "jax", "masked": True}, "keras"),
        # ... except torch on a CPU, where kgates's loop replaces Keras's kernel
        ({"backend": "torch"}, "torch loop"),
        ({"backend": "torch", "training": False}, "torch loop"),
        ({"backend": "torch", "masked": True}, "keras"),
        ({"backend": "torch", "recurrent_dropout": 0.2}, "keras"),
        ({"backend": "torch", "has_torch_loop": False}, "keras"),
        ({"backend": "torch", "device": "gpu"}, "keras"),
        # use_cudnn=False and options no fused kernel runs: the cell steps
        ({"use_cudnn": False}, "step"),
        ({"backend": "torch", "use_cudnn": False}, "step"),
        ({"fusable": False, "device": "gpu"}, "step"),
        ({"fusable": False, "return_gates": True, "gate_path": "recompute"}, "step"),
        # with gates, auto: recompute where a fused kernel runs ...
        ({"return_gates": True, "device": "gpu"}, "recompute"),
        ({"return_gates": True, "device": "gpu", "backend": "jax", "masked": True}, "recompute"),
        ({"return_gates": True, "backend": "torch", "training": False}, "recompute"),
        # ... and step where training on a CPU, or without cuDNN
        ({"return_gates": True}, "step"),
        ({"return_gates": True, "training": False}, "step"),
        ({"return_gates": True, "backend": "torch"}, "step"),
        ({"return_gates": True, "device": "gpu", "use_cudnn": False}, "step"),
        # an explicit gate_path is obeyed
        ({"return_gates": True, "gate_path": "recompute"}, "recompute"),
        ({"return_gates": True, "gate_path": "step", "device": "gpu"}, "step"),
    ],
)
def test_choose_path(case, path):
    assert choose_path(**{**BASE, **case}) == path
