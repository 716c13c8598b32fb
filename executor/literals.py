"""Validation of literal (widget) input values: type, range, length and choices.

Kept separate from pydantic's per-call validation because the executor checks every literal of
a workflow before anything runs, and needs ComfyUI's error kinds (value_smaller_than_min, ...)
rather than a generic message.
"""

from __future__ import annotations

import math
from typing import Any

from .types import BOOLEAN, COMBO, FLOAT, INT, STRING

# (error type, message) in ComfyUI's vocabulary of validation errors.
Problem = tuple[str, str]


def _coerce_type(type_name: str, value: Any) -> tuple[Any, Problem | None]:
    if type_name == INT:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None, ("invalid_input_type", f"expected an integer, got {type(value).__name__}")
        if isinstance(value, float):
            if not value.is_integer():
                return None, ("invalid_input_type", f"expected an integer, got {value!r}")
            value = int(value)
        return value, None
    if type_name == FLOAT:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None, ("invalid_input_type", f"expected a number, got {type(value).__name__}")
        try:
            value = float(value)
        except OverflowError:  # an integer beyond float range (JSON allows 4300 digits)
            return None, (
                "invalid_input_type",
                "expected a number, got an integer too large for a float",
            )
        if math.isnan(value):
            return None, ("invalid_input_type", "expected a number, got NaN")
        return value, None
    if type_name == STRING:
        if not isinstance(value, str):
            return None, ("invalid_input_type", f"expected a string, got {type(value).__name__}")
        return value, None
    if type_name == BOOLEAN:
        if not isinstance(value, bool):
            return None, ("invalid_input_type", f"expected true or false, got {value!r}")
        return value, None
    return value, None


def coerce_literal(spec: Any, value: Any) -> tuple[Any, Problem | None]:
    """Return the literal as the node will receive it, or the problem with it.

    ``spec`` is an :class:`~latentgraph.executor.node.InputSpec`.
    """
    socket = spec.socket
    if value is None and socket.optional:
        return None, None
    if not socket.is_widget:
        return None, (
            "invalid_input_type",
            f"input takes a link from a {socket.type} output, not a literal value",
        )
    if socket.type == COMBO:
        choices: tuple[Any, ...] = socket.choices or ()
        if value not in choices or isinstance(value, bool) != isinstance(choices[0], bool):
            shown = ", ".join(repr(c) for c in choices)
            return None, ("value_not_in_list", f"{value!r} is not one of {shown}")
        return value, None
    value, problem = _coerce_type(socket.type, value)
    if problem is not None:
        return None, problem
    if spec.ge is not None and value < spec.ge:
        return None, (
            "value_smaller_than_min",
            f"{value!r} is smaller than the minimum {spec.ge!r}",
        )
    if spec.le is not None and value > spec.le:
        return None, ("value_bigger_than_max", f"{value!r} is bigger than the maximum {spec.le!r}")
    if isinstance(value, str):
        if spec.min_length is not None and len(value) < spec.min_length:
            return None, ("value_too_short", f"text is shorter than {spec.min_length} characters")
        if spec.max_length is not None and len(value) > spec.max_length:
            return None, ("value_too_long", f"text is longer than {spec.max_length} characters")
    return value, None


def check_literal(spec: Any, value: Any) -> Problem | None:
    return coerce_literal(spec, value)[1]


_MEMO: dict[tuple[int, type, Any], tuple[Any, Problem | None]] = {}
_MEMO_LIMIT = 65536


def coerce_cached(spec: Any, value: Any) -> tuple[Any, Problem | None]:
    """:func:`coerce_literal`, memoised for hashable values (workflows repeat their literals)."""
    try:
        key = (id(spec), type(value), value)
        hit = _MEMO.get(key)
    except TypeError:  # unhashable, e.g. a literal list
        return coerce_literal(spec, value)
    if hit is None:
        hit = coerce_literal(spec, value)
        if len(_MEMO) >= _MEMO_LIMIT:
            _MEMO.clear()
        _MEMO[key] = hit
    return hit
