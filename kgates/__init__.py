"""kgates: recurrent cells for Keras 3 that show their gates.

The one public surface. The cells (tier 1) load with the package; the
inspection tools (tier 2) and the studies (tier 3, Keras Tuner, scikit-learn,
matplotlib) load on first use.
"""

from importlib import import_module
from typing import Any

from kgates.cells._backend import SCANS as SCAN_METHODS
from kgates.cells._backend import accelerator_available as accelerator_available
from kgates.cells._equivalent import equivalent_cell as equivalent_cell
from kgates.cells._equivalent import set_chrono_bias as set_chrono_bias
from kgates.cells._gates import split_gates as split_gates
from kgates.cells._gru import GRUCell as GRUCell
from kgates.cells._layers import GRU as GRU
from kgates.cells._layers import LSTM as LSTM
from kgates.cells._lstm import LSTMCell as LSTMCell
from kgates.cells._recompute import linear_scan as linear_scan
from kgates.cells._rnn import GatedRNN as GatedRNN
from kgates.cells._variants import VARIANTS as VARIANTS

__version__ = "0.1.0"

_LAZY = {
    # tier 2: inspection
    "trace": "kgates.inspect._trace",
    "Tracer": "kgates.inspect._trace",
    "gradient_flow": "kgates.inspect._gradflow",
    "GradientFlow": "kgates.inspect._gradflow",
    "reach": "kgates.inspect._gradflow",
    "gate_statistics": "kgates.inspect._stats",
    "TensorBoard": "kgates.inspect._callback",
    # tier 3: studies
    "adding_problem": "kgates.study._tasks",
    "make_task": "kgates.study._tasks",
    "GateHyperModel": "kgates.study._hypermodel",
    "tune": "kgates.study._tune",
    "load_trials": "kgates.study._report",
    "write_report": "kgates.study._report",
}

__all__ = [
    "GRU",
    "LSTM",
    "SCAN_METHODS",
    "VARIANTS",
    "GRUCell",
    "GatedRNN",
    "LSTMCell",
    "accelerator_available",
    "equivalent_cell",
    "linear_scan",
    "set_chrono_bias",
    "split_gates",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'kgates' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
