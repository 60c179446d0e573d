"""kgates: recurrent cells for Keras 3 that show their gates.

The one public surface. The cells (tier 1) load with the package; the
inspection tools (tier 2) and the studies (tier 3, Keras Tuner, scikit-learn,
matplotlib) load on first use (PEP 562).
"""

import os
from importlib import import_module
from typing import Any

# The `kgates` command (kgates_cli) parses its arguments before Keras loads;
# every other import loads the cells here, which registers them with Keras's
# serialization: `import kgates` is all a saved model needs.
if not os.environ.get("KGATES_DEFER_IMPORTS"):
    from kgates.cells._backend import SCAN_METHODS as SCAN_METHODS
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
    # tier 1, when the command deferred it
    "SCAN_METHODS": "kgates.cells._backend",
    "accelerator_available": "kgates.cells._backend",
    "equivalent_cell": "kgates.cells._equivalent",
    "set_chrono_bias": "kgates.cells._equivalent",
    "split_gates": "kgates.cells._gates",
    "GRUCell": "kgates.cells._gru",
    "GRU": "kgates.cells._layers",
    "LSTM": "kgates.cells._layers",
    "LSTMCell": "kgates.cells._lstm",
    "linear_scan": "kgates.cells._recompute",
    "GatedRNN": "kgates.cells._rnn",
    "VARIANTS": "kgates.cells._variants",
    # tier 2: inspection
    "trace": "kgates.inspect._trace",
    "Tracer": "kgates.inspect._trace",
    "gradient_flow": "kgates.inspect._gradflow",
    "GradientFlow": "kgates.inspect._gradflow",
    "reach": "kgates.inspect._gradflow",
    "gate_statistics": "kgates.inspect._stats",
    "TensorBoard": "kgates.inspect._callback",
    "memory": "kgates.inspect._memory",
    "Memory": "kgates.inspect._memory",
    "intervene": "kgates.inspect._intervene",
    "Edit": "kgates.inspect._intervene",
    "ablate": "kgates.inspect._ablate",
    "Ablation": "kgates.inspect._ablate",
    "find_units": "kgates.inspect._units",
    "Units": "kgates.inspect._units",
    "show": "kgates.inspect._plugin",
    "Explorer": "kgates.inspect._plugin",
    "find_matches": "kgates.inspect._explorer",
    "pattern_units": "kgates.inspect._explorer",
    # tier 3: studies
    "adding_problem": "kgates.study._data",
    "annotate_code": "kgates.study._code",
    "code_annotations": "kgates.study._code",
    "make_task": "kgates.study._tasks",
    "load_data": "kgates.study._own_data",
    "task_from_arrays": "kgates.study._own_data",
    "GateHyperModel": "kgates.study._hypermodel",
    "tune": "kgates.study._tune",
    "load_trials": "kgates.study._report",
    "write_report": "kgates.study._report",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'kgates' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
