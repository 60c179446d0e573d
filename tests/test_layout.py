"""The package's shape: three tiers importing only downwards, backend
checks in one module, short modules, and a light `import kgates`."""

import ast
import json
import pathlib
import re
import subprocess
import sys

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "kgates"
TIERS = ("cells", "inspect", "study")
BACKEND_MODULES = {"cells/_backend.py", "cells/_torch.py", "cells/_triton.py"}
BACKEND_CODE = re.compile(
    r"backend\.backend\(\)|^\s*(import|from) (torch|jax|tensorflow)\b"
    r"|[=!]= \"(torch|jax|tensorflow)\""
)


def _modules():
    return sorted(p for p in PACKAGE.rglob("*.py"))


def _kgates_imports(path: pathlib.Path) -> set[str]:
    """Every kgates module `path` imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("kgates")}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("kgates"):
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return found


def _tier(dotted_or_path: str) -> int | None:
    parts = dotted_or_path.replace("/", ".").split(".")
    return next((TIERS.index(p) for p in parts if p in TIERS), None)


def test_imports_run_only_downwards():
    upward = []
    for path in _modules():
        here = _tier(str(path.relative_to(PACKAGE)))
        if here is None:  # kgates/__init__.py and cli.py sit on top
            continue
        for name in _kgates_imports(path):
            there = _tier(name)
            if there is None or there > here:
                upward.append(f"{path.relative_to(PACKAGE)} imports {name}")
    assert upward == []


def test_the_layout_check_sees_an_upward_import(tmp_path):
    planted = tmp_path / "cells" / "_x.py"
    planted.parent.mkdir()
    planted.write_text("def f():\n    from kgates.study._tune import tune\n")
    assert _tier("cells/_x.py") == 0 and _tier("kgates.study._tune.tune") == 2
    assert _kgates_imports(planted) == {"kgates.study._tune.tune"}


def test_backend_specific_code_lives_in_one_module():
    offenders = []
    for path in _modules():
        relative = str(path.relative_to(PACKAGE))
        if relative in BACKEND_MODULES:
            continue
        for line in path.read_text().splitlines():
            if BACKEND_CODE.search(line):
                offenders.append(f"{relative}: {line.strip()}")
    assert offenders == []


def test_no_module_is_long():
    lengths = {str(p.relative_to(PACKAGE)): len(p.read_text().splitlines()) for p in _modules()}
    assert {name: n for name, n in lengths.items() if n > 350} == {}


SCRIPT = """
import json, sys
import keras
before = set(sys.modules)
import kgates
from kgates import LSTM, LSTMCell, GRU, GRUCell, GatedRNN, split_gates
added = sorted({m.split(".")[0] for m in set(sys.modules) - before})
lazy = "kgates.inspect._trace" in sys.modules or "kgates.study._tune" in sys.modules
kgates.trace  # tier 2 on first use, without tier 3
print(json.dumps({"added": added, "lazy": lazy, "tuner": "keras_tuner" in sys.modules}))
"""


@pytest.mark.processes
def test_import_kgates_is_light():
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    # keras itself may load scikit-learn and matplotlib (its wrappers); kgates adds none.
    assert set(result["added"]) & {"keras_tuner", "sklearn", "matplotlib"} == set()
    assert result["lazy"] is False and result["tuner"] is False
