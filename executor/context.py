"""What a running node may ask of its host: device, folders, progress, interruption, events."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .limits import DEFAULT_LIMITS, Limits


class Interrupted(Exception):
    """Raised inside a run when the user asked to stop it."""


@dataclass(frozen=True)
class Event:
    """An execution event, named and shaped as ComfyUI's WebSocket messages."""

    type: str
    data: dict[str, Any]


EventSink = Callable[[Event], None]


# The package's own models/ folder: the small weights latentgraph ships (see its README).
PACKAGE_MODELS = Path(__file__).resolve().parents[1] / "models"
MODELS_HINT = "pass --models-dir DIR to search another folder"


@dataclass(frozen=True)
class Folders:
    """Where file nodes read and write; nodes never leave these folders (but for the symbolic
    links a user put in a models folder, which loaders follow).

    Loaders look a relative model name up in ``models`` first, then in each of ``more_models``
    (``under`` adds the package's own models folder there, so the shipped weights are found from
    any working directory); ``model_folders`` is that search list. ``models_hint`` tells a user
    how to add a folder to it in this host (it ends every "model not found" message).

    ``absolute_models`` lets loaders also take an existing absolute path (the CLI: the user
    types it); a server leaves it off, so a submitted workflow reaches only the models folders.
    """

    input: Path
    output: Path
    temp: Path
    models: Path
    absolute_models: bool = True
    more_models: tuple[Path, ...] = ()
    models_hint: str = MODELS_HINT

    def __post_init__(self) -> None:
        object.__setattr__(self, "more_models", tuple(Path(p) for p in self.more_models))

    @property
    def model_folders(self) -> tuple[Path, ...]:
        """The folders a relative model name is looked up in, in order, each named once."""
        seen: set[str] = set()
        folders = []
        for folder in (Path(self.models), *self.more_models):
            key = os.path.abspath(folder)
            if key not in seen:
                seen.add(key)
                folders.append(folder)
        return tuple(folders)

    @classmethod
    def under(
        cls,
        root: str | Path,
        *,
        absolute_models: bool = True,
        models: str | Path | None = None,
        models_hint: str = MODELS_HINT,
    ) -> Folders:
        """input/, output/, temp/ under ``root``; models from ``models`` (default root/models),
        then the package's own models folder."""
        root = Path(root)
        first = Path(models) if models is not None else root / "models"
        return cls(
            root / "input",
            root / "output",
            root / "temp",
            first,
            absolute_models,
            more_models=(PACKAGE_MODELS,),
            models_hint=models_hint,
        )


def resolve_device(device: str | torch.device) -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but CUDA is not available")
    return resolved


@dataclass
class RunState:
    """Per-run data shared by all nodes of one execution."""

    prompt_id: str
    prompt: dict[str, Any]
    ui_workflow: dict[str, Any] | None
    emit: EventSink
    interrupt: threading.Event
    previews: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    #: Whether anyone receives the events: without a listener none are built.
    listening: bool = True


@dataclass
class Context:
    """Handed to each node instance as ``self.ctx``."""

    device: torch.device
    folders: Folders
    run: RunState
    node_id: str
    class_type: str
    executor_info: dict[str, Any]
    #: The node's lazy outputs that nothing in this run reads.
    unread: frozenset[str] = frozenset()
    #: How large an image or latent the node may make from a file header or its literals.
    limits: Limits = DEFAULT_LIMITS

    def wants(self, output: str) -> bool:
        """Whether the run reads this output; only a node's ``lazy_outputs`` are ever unread."""
        return output not in self.unread

    def check_interrupted(self) -> None:
        if self.run.interrupt.is_set():
            raise Interrupted()

    def progress(self, value: int, maximum: int, preview: Callable[[], Any] | None = None) -> None:
        """Report progress of a long node; checks interruption.

        ``preview`` is a function returning an IMAGE; it is called only when the host asked
        for previews (the editor does, the CLI does not), so previews cost nothing otherwise.
        """
        self.check_interrupted()
        if not self.run.listening:
            return
        data: dict[str, Any] = {
            "value": value,
            "max": maximum,
            "prompt_id": self.run.prompt_id,
            "node": self.node_id,
        }
        if preview is not None and self.run.previews:
            data["preview"] = preview()
        self.run.emit(Event("progress", data))
