"""StyleGAN2 (Karras et al. 2020) as nodes: loaders of NVlabs network pickles (read as data)
and state dicts, the mapping network with the truncation trick, style mixing, the synthesis
network, and BigGAN's truncated noise. The generator code is ``model.py`` and ``ops.py``;
``FAMILY`` (``family.py``) lets the shared loaders recognise StyleGAN2 files and point here."""

from . import nodes
from .family import FAMILY

__all__ = ["FAMILY", "NODES"]

NODES = nodes.NODES
