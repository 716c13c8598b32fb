"""From a ``POST /prompt`` body to a queue item, or to ComfyUI's ``error`` + ``node_errors``.

Everything is checked before a prompt is queued: the body's shape, the graph (through the
executor's validation, which reports every problem at once) and the files that upload inputs
name, so a typo or a path outside the input folder is a 400 now rather than a failure later.

Nothing here touches the event loop: the route runs a large prompt's checks on a worker thread.
A prompt of more than ``max_nodes`` nodes is refused (413) before it is converted or validated.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..executor import (
    Issue,
    NodeRegistry,
    WorkflowFormatError,
    load_workflow,
    node_errors,
    validate,
)
from ..executor.paths import UnsafePath, confined
from ..executor.workflow import is_ui_format
from .queue_store import QueuedPrompt
from .routing import error_body

_PROMPT_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")


class PromptRejected(Exception):
    """The prompt was not queued; ``body`` is the JSON to answer with, ``status`` the HTTP
    status (400; 413 for a prompt over the size limit)."""

    def __init__(self, body: dict[str, Any], status: int = 400) -> None:
        self.body = body
        self.status = status
        super().__init__(body["error"]["message"])


def rejection(kind: str, message: str, details: str = "", status: int = 400) -> PromptRejected:
    return PromptRejected(error_body(kind, message, details), status)


def format_rejection(err: WorkflowFormatError) -> PromptRejected:
    """A prompt that is not a workflow; when the problem is in one node, it is reported there
    too, in ``node_errors``, as validation reports its issues."""
    if err.node_id is None:
        return rejection("invalid_prompt", str(err))
    body = node_errors([Issue(err.node_id, None, err.input, "invalid_prompt", str(err))])
    body["error"] = error_body("invalid_prompt", str(err))["error"]
    return PromptRejected(body)


def prompt_size(prompt: Any) -> int:
    """How many nodes a ``prompt`` holds as posted (API format, or the UI format's list)."""
    if not isinstance(prompt, Mapping):
        return 0
    return len(prompt["nodes"]) if is_ui_format(prompt) else len(prompt)


def _check_size(count: int, max_nodes: int | None) -> None:
    if max_nodes is not None and count > max_nodes:
        raise rejection("prompt_too_large",
                        f"the prompt has {count:,} nodes, more than this server's limit of {max_nodes:,} "
                        "(start it with --max-prompt-nodes, or ServerConfig(max_prompt_nodes=...), to raise it)",
                        status=413)


def upload_input_issues(nodes: Mapping[str, Any], registry: NodeRegistry, input_dir: Path) -> list[Issue]:
    """A problem for each upload input (``image_upload``) naming no file in the input folder."""
    issues = []
    for node_id, call in nodes.items():
        class_type = call.get("class_type") if isinstance(call, Mapping) else None
        cls = registry.get(class_type) if isinstance(class_type, str) else None
        inputs = call.get("inputs") if cls is not None else None
        if not isinstance(inputs, Mapping):
            continue
        for name, spec in cls.spec.inputs.items():  # type: ignore[union-attr]
            value = inputs.get(name)
            if not spec.hints.get("image_upload") or not isinstance(value, str):
                continue  # links and missing values are the graph validation's business
            try:
                confined(input_dir, value, must_exist=True)
            except UnsafePath as err:
                issues.append(Issue(node_id, class_type, name, "invalid_file_name", str(err), None, value))
            except (FileNotFoundError, OSError):
                issues.append(Issue(node_id, class_type, name, "value_not_in_list",
                                    f"'{value}' is not a file in the input folder", None, value))
    return issues


def _number(body: Mapping[str, Any], take_number: Any) -> float:
    if "number" not in body:
        return take_number(bool(body.get("front")))
    raw = body["number"]
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise rejection("invalid_prompt", "'number' must be a number")
    try:
        number = float(raw)
    except ValueError:
        raise rejection("invalid_prompt", "'number' must be a number") from None
    except OverflowError:  # an integer beyond float range
        raise rejection("invalid_prompt", "'number' must be finite") from None
    if not math.isfinite(number):
        raise rejection("invalid_prompt", "'number' must be finite")
    return number


def _targets(body: Mapping[str, Any]) -> list[str]:
    raw = body.get("partial_execution_targets")
    if raw is None:
        return []
    if not isinstance(raw, list) or not all(isinstance(t, str | int) for t in raw):
        raise rejection("invalid_prompt", "'partial_execution_targets' must be a list of node ids")
    return [str(t) for t in raw]


def build_queued_prompt(
    body: Any, registry: NodeRegistry, input_dir: Path, take_number: Any, is_known: Any,
    max_nodes: int | None = None,
) -> QueuedPrompt:
    """Check a ``POST /prompt`` body; raise :class:`PromptRejected` or return the item to queue.

    ``take_number(front)`` gives the next queue number, ``is_known(prompt_id)`` whether an id is
    already used (both are called from the thread this runs on); ``max_nodes`` bounds the
    prompt's size.
    """
    if not isinstance(body, Mapping):
        raise rejection("invalid_prompt", "the request body must be a JSON object")
    if "prompt" not in body:
        raise rejection("no_prompt", "No prompt provided")
    prompt_id = body.get("prompt_id")
    if prompt_id is None:
        prompt_id = str(uuid.uuid4())
    elif not isinstance(prompt_id, str) or not _PROMPT_ID.match(prompt_id):
        raise rejection("invalid_prompt", "'prompt_id' must be 1-128 letters, digits or _.:-")
    elif is_known(prompt_id):
        raise rejection("invalid_prompt", f"prompt_id '{prompt_id}' is already used")
    extra_data = body.get("extra_data", {})
    if not isinstance(extra_data, dict):
        raise rejection("invalid_prompt", "'extra_data' must be an object")
    extra_data = dict(extra_data)
    client_id = body.get("client_id")
    if client_id is not None:
        if not isinstance(client_id, str) or len(client_id) > 128:
            raise rejection("invalid_prompt", "'client_id' must be a string of at most 128 characters")
        extra_data["client_id"] = client_id
    targets = _targets(body)

    if not isinstance(body["prompt"], Mapping):
        raise rejection("invalid_prompt", "'prompt' must be an object: node id -> {class_type, inputs}")
    _check_size(prompt_size(body["prompt"]), max_nodes)
    try:
        workflow = load_workflow(body["prompt"], registry)
    except WorkflowFormatError as err:
        raise format_rejection(err) from None
    _check_size(len(workflow.nodes), max_nodes)  # an API prompt wrapped in {"prompt": ...}
    graph, issues = validate(workflow.nodes, registry, targets)
    issues += upload_input_issues(workflow.nodes, registry, input_dir)
    if issues or graph is None:
        raise PromptRejected(node_errors(issues, workflow.nodes))
    if workflow.ui is not None and "extra_pnginfo" not in extra_data:
        extra_data["extra_pnginfo"] = {"workflow": workflow.ui}  # a UI-format graph was posted
    outputs = targets or [n for n in workflow.nodes if graph.nodes[n].cls.spec.output_node]
    return QueuedPrompt(_number(body, take_number), prompt_id, workflow.nodes, extra_data, outputs)
