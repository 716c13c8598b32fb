"""The node library, one sub-package per family. Knows nothing about HTTP.

This is where the node pack is assembled: which sub-packages contribute nodes, and which model
families the shared loaders (``common``) read. Everything is imported when first asked for, so
importing one sub-package (``nodes.common`` from a family) never imports the others.
"""

from __future__ import annotations

import functools
import importlib
from types import ModuleType
from typing import TYPE_CHECKING

from ..executor.node import NodeRegistry

if TYPE_CHECKING:
    from .common.families import Families

# Sub-packages in load order; each exposes NODES.
FAMILIES = ("core", "diffusion", "shapes", "var", "ldm", "sana", "stylegan", "mmdit", "sd3", "flux", "adm")
# Model families the shared loaders read, in the order they are asked about a file; each
# sub-package exposes FAMILY (a ``common.families.Family``). SD3 comes before SD 1.x so that the
# MM-DiT text encoders' and 16-channel VAE's single files go to their loaders; FLUX after it, so
# that CLIPTextModel and AutoencoderKL folders on their own stay SD 1.x's.
MODEL_FAMILIES = ("sd3", "ldm", "sana", "var", "stylegan", "flux", "adm")


def _package(name: str) -> ModuleType:
    return importlib.import_module(f"{__name__}.{name}")


@functools.cache
def default_families() -> Families:
    """The model families latentgraph ships, as the shared loaders' registry."""
    from .common.families import Families

    return Families(_package(name).FAMILY for name in MODEL_FAMILIES)


@functools.cache
def default_registry() -> NodeRegistry:
    """Every node latentgraph ships, registered once."""
    from . import common

    registry = NodeRegistry()
    for family in FAMILIES:
        for node in _package(family).NODES:
            registry.register(node)
    for node in common.nodes(default_families()):
        registry.register(node)
    return registry
