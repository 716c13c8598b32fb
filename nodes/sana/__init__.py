"""SANA: linear-attention DiT denoiser, Gemma-2 text encoder, DC-AE autoencoder, and the NVlabs /
MIT efficientvit checkpoint layouts. Its nodes are the shared ones in ``nodes.common``, which read
this family through ``FAMILY`` (``family.py``)."""

from .family import FAMILY

__all__ = ["FAMILY", "NODES"]

NODES: list = []
