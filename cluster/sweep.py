"""``--sweep NODE_ID.INPUT=VALUES``: the prompts of a batch.

VALUES is one of

* ``A..B``  -- the integers from A to B, both included (``5.seed=1..1000``);
* ``@FILE`` -- one value per line of a text file, blank lines skipped (``2.text=@prompts.txt``);
* ``[...]`` -- a JSON list (``5.cfg=[3.5, 4, 7.5]``).

Each value is read as ``--set`` reads one (JSON when it parses, else text; a text input keeps
what was typed). Several sweeps combine as a cartesian product, the first flag outermost, as
nested loops written in the order of the flags: ``--sweep 2.text=@p.txt --sweep 5.seed=1..3``
runs every prompt of the file with seeds 1, 2 and 3 before the next line.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_RANGE = re.compile(r"^\s*(-?\d+)\s*\.\.\s*(-?\d+)\s*$")
#: A batch of more prompts than this is surely a typo (1..10000000000).
MAX_PROMPTS = 10_000_000


class SweepError(ValueError):
    """A ``--sweep`` flag that cannot be used; the message names the flag and what was expected."""


@dataclass(frozen=True)
class Sweep:
    node_id: str
    input: str
    values: tuple[Any, ...]


ParseValue = Callable[[str, Mapping[str, Any], str], Any]


def _plain(text: str, call: Mapping[str, Any], name: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_sweep(text: str, nodes: Mapping[str, Any], input_names: Callable[[str], Sequence[str] | None],
                parse_value: ParseValue = _plain, base: Path | None = None) -> Sweep:
    """One flag against the workflow's nodes. ``input_names(class_type)`` gives a class's inputs
    (None for a class it does not know: the workflow's validation will say so)."""
    flag = f"--sweep {text!r}"
    target, sep, spec = text.partition("=")
    node_id, dot, name = target.partition(".")
    if not sep or not dot or not node_id or not name or not spec:
        raise SweepError(f"{flag}: expected NODE_ID.INPUT=VALUES (A..B, @FILE or a JSON list)")
    call = nodes.get(node_id)
    if not isinstance(call, Mapping):
        raise SweepError(f"{flag}: there is no node '{node_id}' in the workflow")
    class_type = str(call.get("class_type"))
    names = input_names(class_type)
    if names is not None and name not in names:
        raise SweepError(f"{flag}: node {node_id} ({class_type}) has no input '{name}'; "
                         f"its inputs are {', '.join(names) or 'none'}")
    values = _values(flag, spec, call, name, parse_value, base or Path.cwd())
    if not values:
        raise SweepError(f"{flag}: no values to sweep")
    return Sweep(node_id, name, tuple(values))


def _values(flag: str, spec: str, call: Mapping[str, Any], name: str, parse_value: ParseValue,
            base: Path) -> list[Any]:
    if spec.startswith("@"):
        path = base / spec[1:]
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as err:
            reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
            raise SweepError(f"{flag}: cannot read '{spec[1:]}': {reason}"
                             " (expected a UTF-8 text file, one value per line)") from None
        return [parse_value(line, call, name) for line in lines if line.strip()]
    if spec.lstrip().startswith("["):
        try:
            items = json.loads(spec)
        except json.JSONDecodeError as err:
            raise SweepError(f"{flag}: not a JSON list ({err.msg} at character {err.pos})") from None
        if not isinstance(items, list):
            raise SweepError(f"{flag}: expected a JSON list")
        return items
    match = _RANGE.match(spec)
    if match is None:
        raise SweepError(f"{flag}: expected A..B (integers, A <= B), @FILE or a JSON list, got {spec!r}")
    low, high = int(match.group(1)), int(match.group(2))
    if low > high:
        raise SweepError(f"{flag}: the range {low}..{high} is empty (expected A <= B)")
    if high - low + 1 > MAX_PROMPTS:
        raise SweepError(f"{flag}: {high - low + 1:,} values is more than {MAX_PROMPTS:,}")
    return list(range(low, high + 1))


def count(sweeps: Sequence[Sweep]) -> int:
    return math.prod(len(s.values) for s in sweeps)


def check_size(sweeps: Sequence[Sweep]) -> None:
    total = count(sweeps)
    if total > MAX_PROMPTS:
        raise SweepError(f"the sweeps make {total:,} prompts, more than {MAX_PROMPTS:,}")


def prompts(nodes: Mapping[str, Any], sweeps: Sequence[Sweep]) -> Iterator[dict[str, Any]]:
    """Every combination as a workflow of its own (the first sweep outermost); lazily."""
    for combo in itertools.product(*(s.values for s in sweeps)):
        prompt = copy.deepcopy(dict(nodes))
        for sweep, value in zip(sweeps, combo, strict=True):
            prompt[sweep.node_id].setdefault("inputs", {})[sweep.input] = value
        yield prompt
