"""VAR (Tian et al. 2024) as nodes: loaders, VQVAE tokenizer, next-scale prediction steps, and
samplers that expand into one cached node per scale. The model code lives in ``model/``;
``FAMILY`` (``family.py``) lets the shared loaders recognise VAR files and point to these."""

from . import loaders, samplers, scale_nodes, tokenizer_nodes
from .family import FAMILY

__all__ = ["FAMILY", "NODES"]

NODES = [*loaders.NODES, *tokenizer_nodes.NODES, *scale_nodes.NODES, *samplers.NODES]
