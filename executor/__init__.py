"""The executor: types, node API, workflow JSON, validation, cache and run loop.

It knows nothing about diffusion; nodes and hosts build on it.
"""

from .context import Context, Event, Folders, Interrupted
from .node import Expand, Input, InputError, Inputs, Node, NodeRegistry, Outputs, ParentInput
from .run import Executor, NodeFailed, RunResult
from .validate import Issue, WorkflowInvalid, node_errors, validate
from .workflow import ApiWorkflow, Workflow, WorkflowFormatError, load_workflow

__all__ = [
    "ApiWorkflow",
    "Context",
    "Event",
    "Executor",
    "Expand",
    "Folders",
    "Input",
    "InputError",
    "Inputs",
    "Interrupted",
    "Issue",
    "Node",
    "NodeFailed",
    "NodeRegistry",
    "Outputs",
    "ParentInput",
    "RunResult",
    "Workflow",
    "WorkflowFormatError",
    "WorkflowInvalid",
    "load_workflow",
    "node_errors",
    "validate",
]
