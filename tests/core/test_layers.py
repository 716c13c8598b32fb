"""The executor is the lowest layer: it imports nothing above it (nodes, web, the package root),
and a host hands it what it needs (the registry, the node pack's version)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
from latentgraph import Executor as PackageExecutor
from latentgraph import __version__
from latentgraph.executor import Executor, NodeRegistry
from latentgraph.nodes import default_registry

ROOT = Path(__file__).resolve().parents[2]
EXECUTOR = ROOT / "executor"


def test_importing_the_executor_loads_nothing_above_it():
    script = (
        "import json, sys\n"
        "import latentgraph.executor\n"
        "import latentgraph.executor.schema, latentgraph.executor.expansion\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('latentgraph'))))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert "latentgraph.executor.run" in loaded  # it did import the executor
    above = [m for m in loaded if m != "latentgraph" and not m.startswith("latentgraph.executor")]
    assert above == []


def relative_imports(path: Path) -> list[tuple[int, str]]:
    """(level, module) of every relative import in a file; ``from .. import x`` as (2, "x")."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level:
            if node.module:
                found.append((node.level, node.module))
            else:
                found.extend((node.level, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom | ast.Import):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
            found.extend((0, n) for n in names if n == "latentgraph" or n.startswith("latentgraph."))
    return found


def imports_above(path: Path, depth: int) -> list[str]:
    """The imports of a module ``depth`` folders inside executor/ that reach above it."""
    bad = []
    for level, module in relative_imports(path):
        if level == 0:  # absolute: only the executor itself
            if not module.startswith("latentgraph.executor"):
                bad.append(module)
        elif level > depth:  # "..": the package root, its modules, nodes, web
            bad.append("." * level + module)
    return bad


@pytest.mark.parametrize("path", sorted(EXECUTOR.rglob("*.py")), ids=lambda p: p.name)
def test_no_executor_module_imports_above_it(path):
    assert imports_above(path, len(path.relative_to(EXECUTOR).parts)) == []


def test_the_check_sees_imports_from_above(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("from ..nodes import default_registry\nfrom .. import __version__\n"
                      "import latentgraph.web\nfrom .node import Node\n\n"
                      "def late():\n    from ..web import app\n")
    assert imports_above(sample, 1) == ["..nodes", "..__version__", "latentgraph.web", "..web"]


def test_the_executor_takes_its_registry_and_version_from_the_host():
    with pytest.raises(TypeError, match="registry"):
        Executor(device="cpu")  # type: ignore[call-arg]
    bare = Executor(device="cpu", registry=NodeRegistry())
    assert "latentgraph" not in bare.info and len(bare.registry) == 0
    assert Executor(device="cpu", registry=NodeRegistry(), pack_version="9.9.9").info["latentgraph"] == "9.9.9"
    # the package's Executor is the same class with the node pack and its version filled in
    ours = PackageExecutor(device="cpu")
    assert isinstance(ours, Executor) and ours.registry is default_registry()
    assert ours.info["latentgraph"] == __version__
