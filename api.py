"""The Python API (``from latentgraph import Executor, load_workflow``): the executor and the
workflow reader with this package's own node pack and version filled in.

``latentgraph.executor`` knows no nodes (nodes sit above it); this is where the two meet for a
library user. A registry passed in replaces the node pack, as at the executor layer.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import __version__
from .executor import run, workflow
from .executor.node import NodeRegistry
from .nodes import default_registry


class Executor(run.Executor):
    """:class:`latentgraph.executor.Executor` running the installed node pack (unless given
    ``registry``), with the pack's version in ``info``."""

    def __init__(self, *args: Any, registry: NodeRegistry | None = None,
                 pack_version: str | None = __version__, **kwargs: Any) -> None:
        super().__init__(*args, registry=default_registry() if registry is None else registry,
                         pack_version=pack_version, **kwargs)


def load_workflow(source: str | Path | Mapping[str, Any] | workflow.Workflow,
                  registry: NodeRegistry | None = None) -> workflow.Workflow:
    """:func:`latentgraph.executor.load_workflow`, converting a UI-format graph through the
    installed node pack's schemas unless given ``registry``."""
    return workflow.load_workflow(source, default_registry() if registry is None else registry)
