"""What travels between the server (or ``latentgraph batch``) and a worker, through Ray's object
store: a job in, then a stream of events, then how the prompt ended. Plain picklable data (no
exception objects: a node's exception class may not exist on the other side)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..executor import Event

#: (type, subfolder, filename) of a file an output node wrote: "output" or "temp", as in its ui
FileKey = tuple[str, str, str]

SUCCESS, NODE_FAILED, INVALID, INTERRUPTED, ERROR = "success", "node_failed", "invalid", "interrupted", "error"


@dataclass(frozen=True)
class Job:
    prompt_id: str
    prompt: dict[str, Any]
    ui_workflow: dict[str, Any] | None = None
    targets: list[str] | None = None
    outputs: list[str] | None = None
    previews: bool = False
    #: False: no events stream back (a batch nobody watches), only the result and its files
    events: bool = True


@dataclass(frozen=True)
class EventItem:
    """One executor event; ``preview`` the PNG of a progress preview, ``files`` the bytes of the
    files an ``executed`` event names (None: sent before, the receiver knows where it put it)."""

    event: Event
    preview: bytes | None = None
    files: dict[FileKey, bytes | None] = field(default_factory=dict)


@dataclass(frozen=True)
class Finished:
    """The last item of a run. ``held`` is the worker's report for the router."""

    status: str  # SUCCESS, NODE_FAILED, INVALID, INTERRUPTED or ERROR
    ui: dict[str, dict[str, Any]] = field(default_factory=dict)
    executed: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    held: dict[str, str] = field(default_factory=dict)
    message: str = ""
    #: NODE_FAILED: node_id, class_type, input, exception_type; INVALID: issues (Issue.to_dict)
    details: dict[str, Any] = field(default_factory=dict)
    files: dict[FileKey, bytes | None] = field(default_factory=dict)
