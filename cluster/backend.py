"""The Ray backend: connect to a cluster, start the workers, send them prompts, follow them.

``Cluster`` is what the server's runner and ``latentgraph batch`` share. ``submit`` hands a job
to the router, which holds it until a worker has room and then picks which waiting job that
worker runs next (``router.py``: late binding); ``follow`` waits for that, streams the worker's
events to a callback, writes the files they carry into this side's folders (``files.py``) and
returns how the prompt ended. A worker that dies (its process killed, its machine gone) makes
``follow`` raise :class:`WorkerLost` for each prompt sent to it; the worker is dropped from the
router, and the caller puts the prompt back in its queue, where the next free worker takes it.
The jobs still waiting stay with the router for the other workers (or, when no worker is left,
their ``follow`` raises :class:`WorkerLost` too).

Ray is imported only here and only when a cluster is asked for: without the ``ray`` extra
everything else works, and asking for a cluster says how to get it.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from ..executor import Event, Folders
from .files import OutputPlacer
from .keys import routing_keys
from .protocol import ERROR, INTERRUPTED, EventItem, Finished, Job
from .router import Router
from .worker import Worker, WorkerSettings

log = logging.getLogger(__name__)

#: How long connecting may take to find out that an address answers at all.
PROBE_TIMEOUT_S = 3.0
#: How long the workers may take to come up (each imports torch and the node pack).
START_TIMEOUT_S = 180.0

EventCallback = Callable[[Event, "bytes | None"], None]


class ClusterUnavailable(RuntimeError):
    """No cluster to run on: Ray is not installed, the address does not answer, no worker
    started. The message is one line, for the user."""


class WorkerLost(RuntimeError):
    """The worker running a prompt died before it finished; the prompt should be queued again."""

    def __init__(self, worker: str) -> None:
        self.worker = worker
        super().__init__(f"worker {worker} died" if worker else "no worker is left")


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ClusterUnavailable(
            "Ray is not installed; install the ray extra: pip install 'latentgraph[ray]'") from None
    return ray


def connect(address: str) -> bool:
    """Join the cluster at ``address`` (``HOST:PORT`` of its head), or start one on this machine
    for ``auto``; returns whether this process started it (and so should shut it down). A
    process already connected (``ray.init`` called before) keeps its connection."""
    ray = import_ray()
    if ray.is_initialized():
        return False
    if address == "auto":
        ray.init(address="local", include_dashboard=False, log_to_driver=False, configure_logging=False)
        return True
    _probe(address)
    try:
        ray.init(address=address, log_to_driver=False, configure_logging=False)
    except Exception as err:  # Ray raises ConnectionError, RuntimeError, ValueError...
        raise ClusterUnavailable(f"cannot join the Ray cluster at {address}: {_first_line(err)}") from None
    return False


def _probe(address: str) -> None:
    """Fail in seconds, not after Ray's minute of retries, when nothing listens at ``address``."""
    host, colon, port = address.removeprefix("ray://").rpartition(":")
    if not colon or not host or not port.isdigit():
        raise ClusterUnavailable(f"--ray {address!r}: expected HOST:PORT (the head's address) or auto")
    try:
        socket.create_connection((host.strip("[]"), int(port)), PROBE_TIMEOUT_S).close()
    except OSError as err:
        raise ClusterUnavailable(
            f"cannot reach the Ray cluster at {address}: {err.strerror or err}") from None


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


@dataclass
class Dispatch:
    """A job sent to a worker, not yet followed to its end."""

    worker: str
    job: Job
    stream: Any  # ray.ObjectRefGenerator


@dataclass
class Ticket:
    """A job submitted and waiting with the router; ``follow`` waits until a worker takes it."""

    job: Job
    sent: Dispatch | None = None
    #: how it ended without being sent (interrupted while waiting)
    ended: Finished | None = None
    #: it cannot be sent: the last worker died (its name; "" when there was none)
    lost: str | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    def settle(self, *, sent: Dispatch | None = None, ended: Finished | None = None,
               lost: str | None = None) -> None:
        self.sent, self.ended, self.lost = sent, ended, lost
        self.ready.set()


class Cluster:
    """The workers of one server (or batch), their router and what comes back from them."""

    def __init__(self, settings: WorkerSettings, folders: Folders, *, router: Router | None = None,
                 owns_ray: bool = False) -> None:
        self.ray = import_ray()
        self.settings = settings
        self.router = router or Router()
        self.placer = OutputPlacer(folders)
        self.actors: dict[str, Any] = {}
        self.tickets: dict[str, Ticket] = {}  # prompt id -> its job, waiting with the router
        self.owns_ray = owns_ray
        self._serial = 0

    @classmethod
    def start(cls, address: str, settings: WorkerSettings, folders: Folders, *,
              workers: int | None = None, timeout_s: float = START_TIMEOUT_S, **options: Any) -> Cluster:
        """Connect and start ``workers`` workers (default: one per GPU of the cluster, else one per
        CPU); raises :class:`ClusterUnavailable` with one line saying why not."""
        owns = connect(address)
        cluster = cls(settings, folders, owns_ray=owns, **options)
        try:
            cluster.add_workers(workers, timeout_s)
        except BaseException:
            cluster.close()
            raise
        return cluster

    def add_workers(self, count: int | None = None, timeout_s: float = START_TIMEOUT_S) -> list[str]:
        ray = self.ray
        resources = ray.cluster_resources()
        gpus, cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 1)) or 1
        if count is None:
            count = gpus or cpus
        if count < 1:
            raise ClusterUnavailable(f"the number of workers must be at least 1, not {count}")
        # One GPU (else one CPU) each; more workers than the cluster has share them in fractions.
        slot = {"num_gpus": min(1.0, gpus / count)} if gpus else {"num_cpus": min(1.0, cpus / count)}
        actor_class = ray.remote(concurrency_groups={"runs": 1, "control": 1})(Worker)
        started: dict[str, Any] = {}
        for _ in range(count):
            self._serial += 1
            name = f"w{self._serial}"
            started[name] = actor_class.options(
                **slot, max_restarts=0).remote(name, self.settings)
        try:
            ray.get([a.ready.options(concurrency_group="control").remote() for a in started.values()],
                    timeout=timeout_s)
        except Exception as err:
            for actor in started.values():
                ray.kill(actor)
            if isinstance(err, ray.exceptions.GetTimeoutError):
                need = f"{slot.get('num_gpus', slot.get('num_cpus'))} {'GPU' if gpus else 'CPU'}"
                why = f"not up within {timeout_s:.0f} s (each needs {need} free in the cluster)"
            else:  # the worker's constructor raised: its message says why
                why = _first_line(err)
            raise ClusterUnavailable(f"{count} worker(s) did not start: {why}") from None
        for name, actor in started.items():
            self.actors[name] = actor
            self.router.add(name)
        return list(started)

    # --- running -------------------------------------------------------------------------------

    @property
    def alive(self) -> int:
        return len(self.actors)

    def has_room(self) -> bool:
        return self.router.has_room()

    def submit(self, job: Job) -> Ticket:
        """Give ``job`` to the router, which sends it when a worker has room for it (at once if
        one has and nothing suits that worker better); ``follow`` the ticket for its end."""
        ticket = Ticket(job)
        if not self.actors:
            ticket.settle(lost="")
            return ticket
        self.tickets[job.prompt_id] = ticket
        self.router.hold(job.prompt_id, list(routing_keys(job.prompt).values()))
        self._assign()
        return ticket

    def dispatch(self, job: Job, to: str) -> Dispatch:
        """Start ``job`` on worker ``to``, past the router's choice (to fill each worker's cache
        before a measurement)."""
        self.router.dispatched(to, job.prompt_id, list(routing_keys(job.prompt).values()))
        return self._send(to, job)

    def _send(self, name: str, job: Job) -> Dispatch:
        stream = self.actors[name].run.options(concurrency_group="runs").remote(job)
        return Dispatch(name, job, stream)

    def _assign(self) -> None:
        """Send the waiting jobs the router gives to workers with room."""
        for name, prompt_id in self.router.assign():
            ticket = self.tickets.pop(prompt_id)
            ticket.settle(sent=self._send(name, ticket.job))

    async def follow(self, sent: Dispatch | Ticket, on_event: EventCallback | None = None) -> Finished:
        """Wait until a worker takes a submitted job, stream the run's events to ``on_event``
        (event, preview PNG) and return its end."""
        if isinstance(sent, Ticket):
            try:
                await sent.ready.wait()
            except asyncio.CancelledError:  # the caller gave up on it: it waits no more
                if self.tickets.pop(sent.job.prompt_id, None) is not None:
                    self.router.withdraw(sent.job.prompt_id)
                raise
            if sent.lost is not None:
                raise WorkerLost(sent.lost)
            if sent.ended is not None:
                return sent.ended
            assert sent.sent is not None
            return await self._follow(sent.sent, on_event)
        return await self._follow(sent, on_event)

    async def _follow(self, dispatch: Dispatch, on_event: EventCallback | None) -> Finished:
        exceptions = self.ray.exceptions
        name = dispatch.worker
        final: Finished | None = None
        try:
            final = await self._stream(dispatch, on_event)
        except exceptions.RayActorError:
            self.lose(name)
            raise WorkerLost(name) from None
        except exceptions.RayError as err:  # the stream broke some other way: reported, not retried
            final = Finished(ERROR, message=f"the worker's stream failed: {_first_line(err)}")
        finally:  # whatever happened here, the worker is done with the prompt: it has room
            self.router.finished(name, dispatch.job.prompt_id, final.held if final and final.held else None)
            self._assign()
        assert final is not None  # the stream's end, or the error's
        ui = {node: self.placer.place(name, out, final.files) for node, out in final.ui.items()}
        return replace(final, ui=ui, files={})

    async def _stream(self, dispatch: Dispatch, on_event: EventCallback | None) -> Finished:
        name = dispatch.worker
        final: Finished | None = None
        async for ref in dispatch.stream:
            item = await ref
            if isinstance(item, Finished):
                final = item
            elif isinstance(item, EventItem):
                event = self._placed_event(name, item)  # the files it carries are written here
                if on_event is not None:
                    on_event(event, item.preview)
        return final or Finished(ERROR, message="the worker ended the run without a result")

    def _placed_event(self, worker: str, item: EventItem) -> Event:
        event = item.event
        output = event.data.get("output")
        if event.type == "executed" and isinstance(output, dict):
            return Event(event.type, {**event.data, "output": self.placer.place(worker, output, item.files)})
        return event

    def interrupt(self, prompt_id: str | None = None) -> bool:
        """Interrupt ``prompt_id`` wherever it is (waiting here, queued on a worker or running),
        or, without one, every prompt submitted. A waiting one ends interrupted without running."""
        found = False
        for pid in [p for p in self.tickets if prompt_id is None or p == prompt_id]:
            found = True
            self.router.withdraw(pid)
            self.tickets.pop(pid).settle(ended=Finished(INTERRUPTED, message="interrupted"))
        for name, worker in list(self.router.workers.items()):
            for pid in list(worker.in_flight):
                if prompt_id is None or pid == prompt_id:
                    found = True
                    self.actors[name].interrupt.options(concurrency_group="control").remote(pid)
        return found

    def in_flight(self) -> list[str]:
        return [pid for w in self.router.workers.values() for pid in w.in_flight]

    def lose(self, name: str) -> list[str]:
        """Drop a dead worker; returns the prompts it had (each of their ``follow`` raises too).
        With no worker left, the waiting jobs' ``follow`` raises as well."""
        actor = self.actors.pop(name, None)
        prompts = self.router.remove(name)
        if actor is not None:
            log.warning("worker %s died; %d prompt(s) it had go back to the queue", name, len(prompts))
            try:
                self.ray.kill(actor)
            except Exception:  # already gone
                pass
        if not self.actors:
            self._drop_waiting(name)
        return prompts

    def _drop_waiting(self, name: str) -> None:
        for pid, ticket in list(self.tickets.items()):
            self.router.withdraw(pid)
            ticket.settle(lost=name)
        self.tickets.clear()

    def close(self) -> None:
        """Let the workers remove their scratch folders (5 s at most, all at once), end them,
        and shut Ray down if this process started it."""
        ray = self.ray
        actors = list(self.actors.values())
        self.actors.clear()
        self._drop_waiting("")
        for name in list(self.router.workers):
            self.router.remove(name)
        try:
            ray.get([a.close.options(concurrency_group="control").remote() for a in actors], timeout=5)
        except Exception:  # a dead or stuck worker: killed below all the same
            pass
        for actor in actors:
            try:
                ray.kill(actor)
            except Exception:
                pass
        if self.owns_ray and ray.is_initialized():
            ray.shutdown()
