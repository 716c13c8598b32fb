"""Reading JSON that comes from outside: request bodies, workflow files, PNG text chunks.

Python's ``json`` accepts more than JSON, and some of what it accepts breaks whatever handles
the data next, far from where it came in:

- ``NaN``, ``Infinity`` and ``-Infinity`` are not JSON; stored and served back bare they break
  every strict client. A number too large for a float (``1e400``) silently becomes infinity.
- An integer longer than the interpreter converts (``sys.get_int_max_str_digits()``) raises a
  ``ValueError`` that is not a ``JSONDecodeError``.
- Deep nesting exhausts the interpreter's stack: in the parser (``RecursionError``), or later
  in anything that walks the data recursively (``copy.deepcopy``, ``json.dumps``, pydantic).

:func:`loads` refuses all of these with :class:`InvalidJson`, so every host (the server's
bodies, the CLI's files, the workflow a PNG carries) reads the same language.
"""

from __future__ import annotations

import json
import sys
from typing import Any

#: Deeper than any workflow (a UI-format graph inside a request's ``extra_data`` is about 12
#: levels) and far enough below the interpreter's recursion limit (1000 frames) that
#: recursive walkers of the parsed data, a few frames per level, stay safe.
MAX_DEPTH = 100


class InvalidJson(ValueError):
    """The text is not JSON, or is JSON this program refuses (see the module's docs)."""


def _refuse_constant(name: str) -> Any:
    raise InvalidJson(f"{name} is not a JSON number (only finite numbers are accepted)")


def _each_object(value: dict[str, Any]) -> dict[str, Any]:
    return value


def loads(
    raw: str | bytes | bytearray, *, max_depth: int = MAX_DEPTH, cooperative: bool = False
) -> Any:
    """Parse ``raw`` (text, or bytes in UTF-8/16/32); raise :class:`InvalidJson` if refused.

    ``cooperative``, for a large body parsed on a worker thread: the C parser holds the GIL
    from start to end (a 30 MB body: the event loop's thread waits that long), but a hook
    written in Python, called for each object, is a point where the interpreter may hand the
    GIL to another thread. The hook returns each object as it is.
    """
    try:
        value = json.loads(
            raw, parse_constant=_refuse_constant, object_hook=_each_object if cooperative else None
        )
    except json.JSONDecodeError as err:
        raise InvalidJson(str(err)) from None
    except UnicodeDecodeError as err:
        raise InvalidJson(f"the text is not UTF-8: {err}") from None
    except RecursionError:
        raise InvalidJson(f"the JSON nests deeper than {max_depth} levels") from None
    except InvalidJson:
        raise
    except ValueError:  # int(): more digits than the interpreter converts
        limit = sys.get_int_max_str_digits() if hasattr(sys, "get_int_max_str_digits") else 4300
        raise InvalidJson(f"a number has more than {limit} digits") from None
    check_tree(value, max_depth)
    return value


def check_tree(value: Any, max_depth: int = MAX_DEPTH, *, finite: bool = True) -> None:
    """Raise :class:`InvalidJson` if ``value`` nests deeper than ``max_depth`` containers or
    (with ``finite``) holds a float that is not finite (``1e400`` parses as infinity).

    One pass without recursion; the second, recursive, pass that names where the problem is
    runs only when there is one (and never deeper than ``max_depth + 1``).
    """
    kind = type(value)
    if kind is float:
        if finite and value - value != 0:  # inf - inf and nan - nan are nan, never 0
            raise InvalidJson(f"{value!r} is not a finite number")
        return
    if kind is not dict and kind is not list:
        return
    stack: list[tuple[Any, int]] = [(value, 1)]
    pop, push = stack.pop, stack.append
    while stack:
        container, depth = pop()
        if depth > max_depth:
            raise InvalidJson(
                f"the JSON nests deeper than {max_depth} levels, at "
                f"{_where(value, max_depth, _too_deep)}"
            )
        for item in container.values() if type(container) is dict else container:
            item_kind = type(item)
            if item_kind is dict or item_kind is list:
                push((item, depth + 1))
            elif item_kind is float and finite and item - item != 0:
                raise InvalidJson(
                    f"the value at {_where(value, max_depth, _not_finite)} is "
                    f"{item!r}, not a finite number"
                )


def _too_deep(item: Any, depth: int, max_depth: int) -> bool:
    return depth > max_depth and type(item) in (dict, list)


def _not_finite(item: Any, depth: int, max_depth: int) -> bool:
    return type(item) is float and item - item != 0


def _where(root: Any, max_depth: int, found: Any) -> str:
    """The path (``prompt.3.inputs.seed``) to the first item ``found`` accepts."""

    def search(item: Any, depth: int) -> list[str] | None:
        if found(item, depth, max_depth):
            return []
        if depth > max_depth:
            return None
        if type(item) is dict:
            pairs: Any = item.items()
        elif type(item) is list:
            pairs = enumerate(item)
        else:
            return None
        for key, child in pairs:
            path = search(child, depth + 1)
            if path is not None:
                return [str(key), *path]
        return None

    path = search(root, 1)
    if not path:
        return "the top level"
    return ".".join(path[:8]) + (".…" if len(path) > 8 else "")
