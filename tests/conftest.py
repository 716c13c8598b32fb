"""Shared fixtures: a test node registry, an executor factory, and the graph builder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from latentgraph.executor import Executor, Folders
from latentgraph.executor.graph_builder import GraphBuilder

# The read-only golden data beside the repository (LATENTGRAPH_SHARED points elsewhere).
SHARED = Path(os.environ.get("LATENTGRAPH_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))


@pytest.fixture
def folders(tmp_path: Path) -> Folders:
    f = Folders.under(tmp_path)
    for d in (f.input, f.output, f.temp, f.models):
        d.mkdir(parents=True)
    return f


@pytest.fixture
def builder() -> GraphBuilder:
    return GraphBuilder()


@pytest.fixture
def make_executor(folders: Folders):
    def make(**kwargs) -> Executor:
        kwargs.setdefault("device", "cpu")
        kwargs.setdefault("folders", folders)
        return Executor(**kwargs)

    return make
