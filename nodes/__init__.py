"""The node library, one sub-package per family. Knows nothing about HTTP."""

from __future__ import annotations

import functools
import importlib

from ..executor.node import NodeRegistry

# Families in load order; each sub-package exposes NODES.
FAMILIES = ("core", "diffusion", "shapes", "var", "ldm", "sana", "common")


@functools.cache
def default_registry() -> NodeRegistry:
    """Every node latentgraph ships, registered once."""
    registry = NodeRegistry()
    for family in FAMILIES:
        for node in importlib.import_module(f"{__name__}.{family}").NODES:
            registry.register(node)
    return registry
