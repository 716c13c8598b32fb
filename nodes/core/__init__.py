"""Core nodes: primitives, arithmetic, image I/O."""

from . import image_io, primitives

NODES = [*primitives.NODES, *image_io.NODES]
