"""Routing keys: what a prompt's nodes are, independent of the machine that will run them.

The executor keys its cache by a signature that includes the fingerprint of each file a node
reads (path, size, mtime), which is a fact about one machine's disk. The router decides before
any worker sees the prompt, so it keys nodes by what the prompt says alone: a hash of the class,
the literal inputs (canonical JSON) and the keys of the upstream outputs read, as the executor's
signature is built but without fingerprints. Two prompts that load the same checkpoint share the
loader's key; the sampler of a new seed gets a new key. Each worker maps the keys of the prompts it
ran to its executor's own signatures to say which it still holds (``worker.py``).

A key never decides correctness: a worker that holds nothing still runs the prompt, only slower.
So a malformed prompt (a dangling link, a cycle) gets keys for what can be keyed and no error;
the executor on the worker reports its problems as it always does.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any


def _is_link(value: Any) -> bool:
    return (isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)
            and isinstance(value[1], int) and not isinstance(value[1], bool))


def routing_keys(prompt: Mapping[str, Any]) -> dict[str, str]:
    """``node id -> key`` for every top-level node of an API-format prompt."""
    keys: dict[str, str] = {}
    visiting: set[str] = set()

    def key_of(node_id: str) -> str | None:
        if node_id in keys:
            return keys[node_id]
        call = prompt.get(node_id)
        if not isinstance(call, Mapping) or node_id in visiting:
            return None  # dangling or cyclic: the executor will say so
        visiting.add(node_id)
        literals: dict[str, Any] = {}
        links: dict[str, str] = {}
        inputs = call.get("inputs")
        for name, value in (inputs.items() if isinstance(inputs, Mapping) else ()):
            if _is_link(value):
                links[str(name)] = f"{key_of(value[0])}:{value[1]}"
            else:
                literals[str(name)] = value
        visiting.discard(node_id)
        text = json.dumps([call.get("class_type"), literals, links], sort_keys=True, default=repr)
        keys[node_id] = key = hashlib.blake2b(text.encode(), digest_size=12).hexdigest()
        return key

    for node_id in prompt:
        key_of(str(node_id))
    return keys
