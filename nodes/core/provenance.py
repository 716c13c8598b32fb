"""Which models made an image, for the "latentgraph" chunk of a saved PNG: the dtypes of the
models upstream of the saving node, as the nodes that loaded them recorded them.

A loader node records what it returns under its call (class and inputs, as the prompt has them)
in the executor's info, which lives as long as the executor and its cache: a later run that takes
the loader from the cache finds the record as well. The saving node walks its prompt upstream and
reads, of each recorded call it depends on, the outputs that path reads. Nothing is inferred from
the device, so the PNG says what the models were: bf16 SANA and fp16 SD alike. (A host that keeps
no info between nodes, or a loader inside an expansion, leaves no record; the PNG then names no
models.)
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from torch import nn

from ...executor.node import Node
from ...executor.workflow import is_link

#: where the records live in ``Context.executor_info``
INFO_KEY = "model_dtypes"
#: records kept per executor: one per distinct loader call, the oldest dropped first
MAX_RECORDS = 256

__all__ = ["dtype_name", "dtypes_summary", "record_models", "upstream_models"]


def modules_of(model: Any) -> list[nn.Module]:
    """The torch modules a graph object holds: itself, or those its ``_modules`` names
    (``HoldsModules``)."""
    if isinstance(model, nn.Module):
        return [model]
    held = (getattr(model, name, None) for name in getattr(model, "_modules", ()))
    return [m for m in held if isinstance(m, nn.Module)]


def dtype_name(model: Any) -> str | None:
    """'float32', or 'bfloat16+float32' where its floating-point parameters differ; None for an
    object without parameters."""
    dtypes = {
        str(p.dtype).removeprefix("torch.")
        for module in modules_of(model)
        for p in module.parameters()
        if p.is_floating_point()
    }
    return "+".join(sorted(dtypes)) or None


def _key(class_type: Any, inputs: Any) -> str:
    return json.dumps([class_type, inputs], sort_keys=True, default=repr)


def record_models(node: Node, models: Mapping[str, Any]) -> None:
    """Called by a loader node: the dtypes of the models it returns, by output name."""
    ctx = node.ctx
    call = ctx.run.prompt.get(ctx.node_id)
    if not isinstance(call, dict):
        return  # not a node of the prompt (an expanded one): nothing could find the record
    dtypes = {name: d for name, model in models.items() if (d := dtype_name(model)) is not None}
    records = ctx.executor_info.setdefault(INFO_KEY, {})
    key = _key(ctx.class_type, call.get("inputs"))
    records.pop(key, None)  # most recent last
    records[key] = (type(node).spec.output_names, dtypes)
    while len(records) > MAX_RECORDS:
        del records[next(iter(records))]


def _read_upstream(prompt: Mapping[str, Any], node_id: str) -> dict[str, set[int] | None]:
    """Every node ``node_id`` depends on, with the output indices the way there reads (None:
    all of them, for every node of the prompt when ``node_id`` is not one of them)."""
    if node_id not in prompt:  # an expanded node: where its subgraph's inputs came from is unknown
        return dict.fromkeys(prompt)
    read: dict[str, set[int] | None] = {}
    stack, seen = [node_id], {node_id}
    while stack:
        call = prompt.get(stack.pop())
        inputs = call.get("inputs") if isinstance(call, dict) else None
        for value in (inputs or {}).values():
            if not is_link(value):
                continue
            source = str(value[0])
            outputs = read.setdefault(source, set())
            if outputs is not None:
                outputs.add(value[1])
            if source not in seen:
                seen.add(source)
                stack.append(source)
    return read


def upstream_models(node: Node) -> dict[str, dict[str, str]]:
    """For a saving node: {loader node id: {output: dtype}} of the recorded models it depends on."""
    ctx = node.ctx
    records = ctx.executor_info.get(INFO_KEY) or {}
    prompt = ctx.run.prompt
    found = {}
    for node_id, indices in sorted(_read_upstream(prompt, ctx.node_id).items()):
        call = prompt.get(node_id)
        record = (
            records.get(_key(call.get("class_type"), call.get("inputs")))
            if isinstance(call, dict)
            else None
        )
        if record is None:
            continue
        names, dtypes = record
        read = (
            names if indices is None else [names[i] for i in sorted(indices) if 0 <= i < len(names)]
        )
        models = {name: dtypes[name] for name in read if name in dtypes}
        if models:
            found[node_id] = models
    return found


def dtypes_summary(models: Mapping[str, Mapping[str, str]]) -> str | None:
    """The models' dtypes in one string: 'bfloat16', 'float16, float32' where they differ, None
    where no model was recorded."""
    names = sorted({d for parts in models.values() for d in parts.values()})
    return ", ".join(names) or None
