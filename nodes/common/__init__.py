"""Nodes shared by the latent-diffusion families (SD 1.x, SANA): loaders that recognise any
layout of the families they are given, prompt encoding, and autoencoder latents; and the pieces
the families use (file reading, strict loading, schedules, the family records of ``families``,
the TEXT_ENCODER / AUTOENCODER interfaces).

This package imports no family: the families import it, and the node pack's assembly
(``nodes/__init__.py``) hands their records to :func:`nodes`.
"""

from __future__ import annotations

from ...executor.node import Node
from . import latent_nodes, loader_nodes, text_nodes
from .families import Families


def nodes(families: Families) -> list[type[Node]]:
    """The shared nodes, their loaders reading the families of ``families``."""
    return [*loader_nodes.loader_nodes(families), *text_nodes.NODES, *latent_nodes.NODES]
