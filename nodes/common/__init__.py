"""Nodes shared by the latent-diffusion families (SD 1.x, SANA): loaders that recognise any
supported layout, prompt encoding, and autoencoder latents; and the pieces both families use
(file reading, strict loading, schedules, the TEXT_ENCODER / AUTOENCODER interfaces)."""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    # The node modules import both families, and the families import this package's shared
    # modules; building NODES on first access keeps the import order acyclic.
    if name == "NODES":
        from . import latent_nodes, loader_nodes, text_nodes

        return [*loader_nodes.NODES, *text_nodes.NODES, *latent_nodes.NODES]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
