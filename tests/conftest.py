"""Shared fixtures: a test node registry, an executor factory, and the graph builder."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from graph_helpers import Graph
from latentgraph import Executor
from latentgraph.executor import Folders

# The read-only golden data beside the repository (LATENTGRAPH_SHARED points elsewhere).
SHARED = Path(os.environ.get("LATENTGRAPH_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))


GRAPHS = Path(__file__).resolve().parents[1] / "graphs"


@pytest.fixture(scope="session")
def shipped_graph():
    """A graph from graphs/ with some literals replaced: shipped_graph("sd_txt2img", {"5": {"steps": 3}})."""

    def load(name: str, changes: dict | None = None) -> dict:
        graph = json.loads((GRAPHS / f"{name}.json").read_text())
        for node_id, inputs in (changes or {}).items():
            graph[node_id]["inputs"].update(inputs)
        return graph

    return load


@pytest.fixture
def folders(tmp_path: Path) -> Folders:
    f = Folders.under(tmp_path)
    for d in (f.input, f.output, f.temp, f.models):
        d.mkdir(parents=True)
    return f


@pytest.fixture
def builder() -> Graph:
    """A fresh graph builder (graph_helpers.Graph); a test that needs several makes more with Graph()."""
    return Graph()


@pytest.fixture
def make_executor(folders: Folders):
    def make(**kwargs) -> Executor:
        kwargs.setdefault("device", "cpu")
        kwargs.setdefault("folders", folders)
        return Executor(**kwargs)

    return make
