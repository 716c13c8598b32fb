"""Structural mutations of JSON documents, for fuzzing what the server and the CLI read.

A mutation walks down a random path of the document and, where it stops, swaps a value's type,
deletes or adds a key, wraps or flattens a container, or puts in one of :data:`NASTY` values:
huge and non-finite numbers, deep nesting, ids as lists, links to nowhere, hostile strings.
JSON text that Python's ``json.dumps`` cannot write (``NaN`` is written, but not ``1e400``, a
5,000-digit integer or 10,000 levels of nesting) is put in as a :func:`raw` placeholder and
spliced in by :func:`dumps`.

Every random choice goes through one ``pick(n) -> 0..n-1`` function, so the same mutations run
under hypothesis (``pick`` draws integers and shrinks) and in a long seeded campaign
(``pick`` is ``random.Random(seed).randrange``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

# Documents here are raw JSON on purpose: a mutation's whole point is a shape no builder makes.
Pick = Callable[[int], int]

_RAW_TEXT = {
    "nan": "NaN", "inf": "Infinity", "-inf": "-Infinity", "1e400": "1e400", "-1e400": "-1e400",
    "digits": "9" * 5000, "deep_list": "[" * 10_000 + "]" * 10_000,
    "deep_object": '{"a":' * 5000 + "1" + "}" * 5000,
}


def raw(name: str) -> str:
    """A placeholder :func:`dumps` replaces with the raw JSON text ``_RAW_TEXT[name]``."""
    return f"\x00raw:{name}\x00"


def dumps(value: Any) -> bytes:
    text = json.dumps(value)  # NaN and Infinity floats come out as bare NaN / Infinity
    for name, replacement in _RAW_TEXT.items():
        text = text.replace(json.dumps(raw(name)), replacement)
    return text.encode()


def nested_list(depth: int, leaf: Any = 1) -> Any:
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


def nested_object(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"a": value}
    return value


NASTY: list[Any] = [
    None, True, False, 0, -1, 7, 2**63, -(2**63) - 1, 10**400, 0.5, -0.0, 1e308,
    float("nan"), float("inf"), float("-inf"),
    "", "x", "1", "LG_Int", "Reroute", "\x00", "\ud800", "../../etc/passwd", "a" * 5000,
    [], {}, [5], [None], ["1", 0], ["2", 0], ["999", 0], ["1", -1], ["1", 10**30], [True, 0], [["1"], 0],
    [1, 0, 2, 0, "INT"], {"id": 1}, {"__value__": [1, 2]}, {"__value__": 5},
    nested_list(60), nested_object(60), nested_list(150), nested_object(150),
    *(raw(name) for name in _RAW_TEXT),
]

# Whole bodies that are not a prompt at all.
BAD_BODIES: list[bytes] = [
    b"{", b"[]", b"null", b"5", b'"prompt"', b"\xff\xfe\x00", b"{\"prompt\": }", b"NaN",
    b"[" * 10_000 + b"]" * 10_000, b'{"prompt": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    b'{"prompt": {}, "number": 1e400}', b'{"prompt": {"1": {"class_type": "LG_Int"}}, "number": ' + b"9" * 5000 + b"}",
]


def _retype(value: Any, pick: Pick) -> Any:
    """The same content in another JSON type."""
    if isinstance(value, dict):
        choice = pick(3)
        return list(value.values()) if choice == 0 else list(value) if choice == 1 else [list(i) for i in value.items()]
    if isinstance(value, list):
        choice = pick(3)
        return {str(i): v for i, v in enumerate(value)} if choice == 0 else value[:1] if choice == 1 else (
            value[0] if value else None)
    if isinstance(value, bool):
        return [int(value), str(value).lower(), None][pick(3)]
    if isinstance(value, int | float):
        choice = pick(4)
        if choice == 2:  # int <-> float, where the other type can hold it
            try:
                return float(value) if isinstance(value, int) else int(value)
            except (OverflowError, ValueError):
                return str(value)
        return [str(value), [value], None, -value][choice]
    if isinstance(value, str):
        choice = pick(4)
        if choice == 0:
            return int(value) if value.isdigit() and len(value) < 100 else len(value)
        return [None, [value], {value: value}, value * 3][choice]
    return NASTY[pick(len(NASTY))]


def _change(value: Any, pick: Pick) -> Any:
    op = pick(8)
    if op == 0:
        return NASTY[pick(len(NASTY))]
    if op == 1:
        return _retype(value, pick)
    if op == 2:
        return [value]
    if op == 3:
        return {"a": value}
    if op == 4 and isinstance(value, dict) and value:  # drop a key
        keys = list(value)
        drop = keys[pick(len(keys))]
        return {k: v for k, v in value.items() if k != drop}
    if op == 4 and isinstance(value, list) and value:  # drop an item
        at = pick(len(value))
        return value[:at] + value[at + 1:]
    if op == 5 and isinstance(value, dict):  # add a key
        name = ["inputs", "class_type", "links", "nodes", "id", "type", "extra", "_meta", "__value__"][pick(9)]
        return {**value, name: NASTY[pick(len(NASTY))]}
    if op == 5 and isinstance(value, list):
        return [*value, NASTY[pick(len(NASTY))]]
    if op == 6 and isinstance(value, list) and value:  # repeat an item many times
        return value + [value[pick(len(value))]] * 50
    if op == 7:
        return type(value)() if isinstance(value, dict | list | str) else None
    return NASTY[pick(len(NASTY))]


def mutate(value: Any, pick: Pick) -> Any:
    """One mutation somewhere in ``value`` (a new document; ``value`` is not changed)."""
    if isinstance(value, dict | list) and value and pick(4) != 0:  # go one level down, usually
        keys = list(value) if isinstance(value, dict) else list(range(len(value)))
        key = keys[pick(len(keys))]
        copy: Any = dict(value) if isinstance(value, dict) else list(value)
        copy[key] = mutate(value[key], pick)
        return copy
    return _change(value, pick)


def mutated_body(bases: list[Any], pick: Pick) -> bytes:
    """A ``POST /prompt`` body: one of ``bases`` with one to four mutations, or (rarely) a body
    that is not a prompt at all."""
    if pick(25) == 0:
        return BAD_BODIES[pick(len(BAD_BODIES))]
    body = bases[pick(len(bases))]
    for _ in range(1 + pick(4)):
        body = mutate(body, pick)
    return dumps(body)
