"""A built wheel (what a non-editable `pip install .` installs) carries what the package finds
beside its code: the shipped weights, the graphs and their input pictures, and nothing a user
downloaded into models/."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from latentgraph.nodes.common.files import SHIPPED_MODELS

REPO = Path(__file__).resolve().parents[2]
SKIP = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", "output", "temp")


@pytest.fixture(scope="module")
def wheel_names(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    source = tmp_path_factory.mktemp("source") / "latentgraph"
    shutil.copytree(REPO, source, ignore=SKIP)
    (source / "models" / "sd").mkdir(exist_ok=True)
    (source / "models" / "sd" / "downloaded.safetensors").write_bytes(b"not ours")
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(out), str(source)], check=True, capture_output=True)
    (wheel,) = out.glob("latentgraph-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


def test_the_wheel_ships_the_default_models_graphs_and_inputs(wheel_names):
    for folder in SHIPPED_MODELS:
        shipped = [p.relative_to(REPO).as_posix() for p in (REPO / "models" / folder).rglob("*") if p.is_file()]
        assert shipped and {f"latentgraph/{name}" for name in shipped} <= wheel_names
    graphs = {f"latentgraph/graphs/{p.name}" for p in (REPO / "graphs").glob("*.json")}
    assert graphs <= wheel_names
    assert {"latentgraph/input/example.png", "latentgraph/input/var_inpaint_source.png"} <= wheel_names


def test_the_wheel_leaves_out_downloaded_checkpoints(wheel_names):
    assert not [n for n in wheel_names if n.startswith("latentgraph/models/sd/")]


def test_the_shipped_weights_stay_small():
    """Every shipped model is there, and all of them together stay within 40 MB (the wheel's
    and a fresh clone's weight)."""
    total = 0
    for folder in SHIPPED_MODELS:
        files = [p for p in (REPO / "models" / folder).rglob("*") if p.is_file()]
        assert any(p.suffix == ".safetensors" for p in files), folder
        total += sum(p.stat().st_size for p in files)
    assert total <= 40e6
