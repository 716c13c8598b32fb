"""Socket types: the names that travel on links, and how Python annotations map to them.

Types shared with ComfyUI keep its names and layouts (IMAGE is B,H,W,C float in 0..1, MASK is
B,H,W, LATENT is ``{"samples": tensor, ...}``); our own objects get names of their own so they
never meet a ComfyUI object of another layout.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import torch

# Widget types: a literal in the workflow, or a link from an output of the same type.
INT = "INT"
FLOAT = "FLOAT"
STRING = "STRING"
BOOLEAN = "BOOLEAN"
COMBO = "COMBO"
WIDGET_TYPES = frozenset({INT, FLOAT, STRING, BOOLEAN, COMBO})

# Wildcard accepted by inputs that take anything (ComfyUI spells it "*").
ANY = "*"


@dataclass(frozen=True)
class Socket:
    """Marks an annotation with the socket type it travels as: ``Annotated[T, Socket("LATENT")]``."""

    name: str


Image = Annotated[torch.Tensor, Socket("IMAGE")]
Mask = Annotated[torch.Tensor, Socket("MASK")]
Latent = Annotated[dict, Socket("LATENT")]

_PRIMITIVES: dict[Any, str] = {int: INT, float: FLOAT, str: STRING, bool: BOOLEAN}


@dataclass(frozen=True)
class SocketSpec:
    """What an annotation means on the graph: its type name and, for combos, the choices."""

    type: str
    choices: tuple[Any, ...] | None = None
    optional: bool = False

    @property
    def is_widget(self) -> bool:
        return self.type in WIDGET_TYPES


def socket_of(annotation: Any, metadata: Sequence[Any] = ()) -> SocketSpec:
    """Translate a Python annotation into its socket type; raise TypeError for unusable ones.

    ``metadata`` is Annotated metadata kept apart from its annotation (pydantic moves a field's
    there): the socket is that of ``Annotated[annotation, *metadata]``.
    """
    if metadata:
        if typing.get_origin(annotation) is Annotated:  # nested Annotated is flat, inner first
            annotation, *inner = typing.get_args(annotation)
            metadata = (*inner, *metadata)
        return _annotated(annotation, metadata, False)
    optional = False
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) != 1:
            raise TypeError(f"only Optional[X] unions are supported, got {annotation!r}")
        optional = True
        annotation = args[0]
        origin = typing.get_origin(annotation)
    if origin is Annotated:
        base, *meta = typing.get_args(annotation)
        return _annotated(base, meta, optional)
    if origin is Literal:
        return SocketSpec(COMBO, tuple(typing.get_args(annotation)), optional)
    if annotation in _PRIMITIVES:
        return SocketSpec(_PRIMITIVES[annotation], optional=optional)
    raise TypeError(
        f"cannot map annotation {annotation!r} to a socket type: use int/float/str/bool, "
        "Literal[...], or Annotated[T, Socket('NAME')]"
    )


def _annotated(base: Any, metadata: Sequence[Any], optional: bool) -> SocketSpec:
    """``Annotated[base, *metadata]``: the first Socket marker names it, else ``base`` does."""
    for m in metadata:
        if isinstance(m, Socket):
            return SocketSpec(m.name, optional=optional)
    spec = socket_of(base)
    return SocketSpec(spec.type, spec.choices, optional or spec.optional)


def accepts(input_type: str, output_type: str) -> bool:
    """Whether a link from an output of ``output_type`` may feed an input of ``input_type``."""
    if input_type == ANY or output_type == ANY or input_type == output_type:
        return True
    # A combo input is fed by a STRING (ComfyUI's primitive nodes do this).
    return input_type == COMBO and output_type == STRING
