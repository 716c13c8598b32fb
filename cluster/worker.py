"""The worker: one long-lived Ray actor per GPU (or CPU slot) holding an executor and its caches.

It reads models and input images from the folders it is given, which must name the same data
on every machine (run the workers beside the server, or mount the data folder at the same path);
output nodes write into a scratch folder of its own, and each file they write goes back to the
caller with the event that names it. A shipped file is emptied but kept, so the saving node's
counter never gives its name again and a cached re-run names it without sending it twice (an
empty file is one sent before: the caller knows where it put it).

``run`` is a generator: Ray streams each yielded item to the caller as it comes (events as the
executor emits them, then :class:`~.protocol.Finished`). Runs go one at a time, in order, in the
``runs`` concurrency group; ``interrupt`` and ``held`` answer from the ``control`` group while a
run is going.
"""

from __future__ import annotations

import logging
import queue
import shutil
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..executor import Event, Folders, Interrupted, NodeFailed, WorkflowInvalid
from ..executor.context import PACKAGE_MODELS
from ..executor.limits import DEFAULT_LIMITS, Limits
from ..executor.run import signature
from ..executor.validate import validate
from .keys import routing_keys
from .protocol import (
    ERROR,
    INTERRUPTED,
    INVALID,
    NODE_FAILED,
    SUCCESS,
    EventItem,
    FileKey,
    Finished,
    Job,
)
from .router import MODEL, RESULT

log = logging.getLogger(__name__)

#: Routing keys a worker keeps track of (and reports while its cache still holds them).
TRACKED_KEYS = 1024


@dataclass(frozen=True)
class WorkerSettings:
    """How to build a worker's executor; the same for every worker of a cluster."""

    input_dir: str
    models_dir: str
    device: str = "auto"
    cache_bytes: int = 2 << 30
    absolute_models: bool = False
    models_hint: str = "start the server with --models-dir DIR to search another folder"
    limits: Limits = DEFAULT_LIMITS
    more_models: tuple[str, ...] = field(default_factory=lambda: (str(PACKAGE_MODELS),))


class Worker:
    """The actor's class (``backend.py`` wraps it with ``ray.remote``)."""

    def __init__(self, name: str, settings: WorkerSettings) -> None:
        from ..api import Executor

        self.name = name
        self.scratch = Path(tempfile.mkdtemp(prefix="latentgraph-worker-"))
        folders = Folders(
            input=Path(settings.input_dir), output=self.scratch / "output", temp=self.scratch / "temp",
            models=Path(settings.models_dir), absolute_models=settings.absolute_models,
            more_models=tuple(Path(p) for p in settings.more_models), models_hint=settings.models_hint,
        )
        for folder in (folders.output, folders.temp):
            folder.mkdir(parents=True, exist_ok=True)
        self.executor = Executor(device=settings.device, cache_bytes=settings.cache_bytes,
                                 folders=folders, limits=settings.limits)
        self._tracked: OrderedDict[str, str] = OrderedDict()  # routing key -> executor signature

    def ready(self) -> dict[str, Any]:
        """What the worker runs on (waiting on this waits for the actor to be up)."""
        return {"name": self.name, **self.executor.info}

    def held(self) -> dict[str, str]:
        """Routing key -> MODEL or RESULT, for the tracked keys the executor's cache still holds."""
        cache = self.executor.cache
        report: dict[str, str] = {}
        for key, sig in list(self._tracked.items()):
            if sig in cache.models or sig in cache.offloaded:
                report[key] = MODEL
            elif sig in cache:
                report[key] = RESULT
            else:
                del self._tracked[key]
        return report

    def interrupt(self, prompt_id: str | None = None) -> None:
        self.executor.interrupt(prompt_id)

    def close(self) -> None:
        shutil.rmtree(self.scratch, ignore_errors=True)

    # --- a run ---------------------------------------------------------------------------------

    def run(self, job: Job) -> Iterator[EventItem | Finished]:
        events: queue.SimpleQueue[Event | Finished] = queue.SimpleQueue()

        def work() -> None:
            events.put(self._execute(job, events.put if job.events else None))

        threading.Thread(target=work, name=f"latentgraph-{job.prompt_id}", daemon=True).start()
        while not isinstance(item := events.get(), Finished):
            yield self._item(item)
        try:
            self._track(job)
            held = self.held()
        except Exception:  # the report is a hint for the router; the result must still go back
            log.exception("worker %s could not say what it holds after %s", self.name, job.prompt_id)
            held = {}
        yield Finished(**{**item.__dict__, "held": held, "files": self._files(item.ui)})

    def _execute(self, job: Job, sink: Any) -> Finished:
        try:
            result = self.executor.run(job.prompt if job.ui_workflow is None else
                                       _with_ui(job.prompt, job.ui_workflow), job.targets,
                                       prompt_id=job.prompt_id, on_event=sink, previews=job.previews,
                                       outputs=job.outputs)
        except Interrupted:
            return Finished(INTERRUPTED, message="interrupted")
        except NodeFailed as err:
            return Finished(NODE_FAILED, message=str(err), details={
                "node_id": err.node_id, "class_type": err.class_type, "input": err.input,
                "exception_type": type(err.error).__name__})
        except WorkflowInvalid as err:
            return Finished(INVALID, message=str(err), details={"issues": [i.to_dict() for i in err.issues]})
        except Exception as err:  # a bug: reported, never a dead stream
            return Finished(ERROR, message=f"{type(err).__name__}: {err}")
        return Finished(SUCCESS, ui=result.ui, executed=result.executed, cached=result.cached)

    def _item(self, event: Event) -> EventItem:
        if event.type == "progress" and "preview" in event.data:
            from ..web.previews import preview_png

            png = preview_png(event.data["preview"])
            return EventItem(Event(event.type, {k: v for k, v in event.data.items() if k != "preview"}), png)
        if event.type == "executed" and isinstance(event.data.get("output"), dict):
            return EventItem(event, files=self._files({"_": event.data["output"]}))
        return EventItem(event)

    def _files(self, ui: dict[str, dict[str, Any]]) -> dict[FileKey, bytes | None]:
        """The bytes of the files named in ``ui`` not sent before (None for those that were)."""
        files: dict[FileKey, bytes | None] = {}
        folders = self.executor.folders
        for output in ui.values():
            for image in output.get("images", []) if isinstance(output, dict) else []:
                kind = image.get("type")
                if kind not in ("output", "temp"):
                    continue
                key: FileKey = (kind, str(image.get("subfolder", "")), str(image.get("filename", "")))
                path = (folders.output if kind == "output" else folders.temp) / key[1] / key[2]
                try:
                    data = path.read_bytes()
                except OSError:
                    continue  # nothing to send; the receiver reports the name as it came
                # An emptied file was sent before (no output node writes an empty one).
                files[key] = data or None
                if data:
                    path.write_bytes(b"")  # the name stays taken, the bytes are the receiver's now
        return files

    def _track(self, job: Job) -> None:
        """Note the executor signatures of the prompt's nodes under their routing keys."""
        executor = self.executor
        graph, _ = validate(job.prompt, executor.registry, job.targets or ())
        if graph is None:
            return
        keys = routing_keys(job.prompt)
        sigs: dict[str, str] = {}
        for node_id in graph.order:
            node = graph.nodes[node_id]
            cls = node.cls
            try:  # as the executor signs a node (executor/run.py, Executor._sign)
                fingerprint = cls.fingerprint(node.literals, executor.folders) if cls.spec.reads_files else None
            except Exception:
                return  # a file gone since the run: the next report says what is held
            sigs[node_id] = signature(node, sigs, fingerprint)
            if node_id in keys:
                self._tracked.pop(keys[node_id], None)
                self._tracked[keys[node_id]] = sigs[node_id]
        while len(self._tracked) > TRACKED_KEYS:
            self._tracked.popitem(last=False)


def _with_ui(prompt: dict[str, Any], ui: dict[str, Any]) -> Any:
    from ..executor.workflow import Workflow

    return Workflow(nodes=prompt, ui=ui)
