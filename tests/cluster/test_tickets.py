"""The backend's late binding without Ray: a submitted job waits with the router until a worker
has room, a waiting job can be interrupted (it ends without running) or given up, and when the
last worker dies the waiting jobs fail over as lost, nothing left hanging. Ray's actors are
stood in for by objects that answer ``run``/``interrupt`` as the real ones do."""

from __future__ import annotations

import asyncio
import types

import pytest
from cluster_helpers import shapes_prompt
from latentgraph.cluster import backend
from latentgraph.cluster.backend import Cluster, WorkerLost
from latentgraph.cluster.protocol import INTERRUPTED, SUCCESS, Finished, Job
from latentgraph.cluster.router import Router
from latentgraph.cluster.worker import WorkerSettings
from latentgraph.executor import Folders


class ActorDied(Exception):
    pass


class FakeRay(types.SimpleNamespace):
    def __init__(self) -> None:
        super().__init__(exceptions=types.SimpleNamespace(RayActorError=ActorDied, RayError=RuntimeError))

    def kill(self, actor) -> None:
        actor.dead = True


class Method:
    def __init__(self, fn) -> None:
        self.fn = fn

    def options(self, **_):
        return self

    def remote(self, *args):
        return self.fn(*args)


class FakeActor:
    """Runs a job when the test lets it end (``release``); records what it was sent."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.gates: dict[str, asyncio.Future] = {}
        self.dead = False
        self.run = Method(self._run)
        self.interrupt = Method(lambda pid: None)
        self.close = Method(lambda: None)

    def _run(self, job: Job):
        self.sent.append(job.prompt_id)
        return self._stream(job)

    async def _stream(self, job: Job):
        gate = self.gates.setdefault(job.prompt_id, asyncio.get_running_loop().create_future())

        async def end():
            status = await gate
            if status == "died":
                raise ActorDied()
            return Finished(status)

        yield end()

    def release(self, prompt_id: str, status: str = SUCCESS) -> None:
        self.gates.setdefault(prompt_id, asyncio.get_running_loop().create_future()).set_result(status)


@pytest.fixture
def cluster(monkeypatch, tmp_path):
    monkeypatch.setattr(backend, "import_ray", FakeRay)
    folders = Folders.under(tmp_path)
    made = Cluster(WorkerSettings(str(folders.input), str(folders.models)), folders,
                   router=Router(depth=1, lookahead=3))
    for name in ("w1", "w2"):
        made.actors[name] = FakeActor()
        made.router.add(name)
    return made


def job(i: int) -> Job:
    return Job(f"p{i}", shapes_prompt(seed=i))


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_a_job_waits_until_a_worker_has_room(cluster):
    async def scenario():
        tickets = [cluster.submit(job(i)) for i in range(3)]
        follows = [asyncio.ensure_future(cluster.follow(t)) for t in tickets]
        await settle()
        assert [t.sent is not None for t in tickets] == [True, True, False]
        assert list(cluster.router.waiting) == ["p2"]  # each worker has its one (depth 1)
        holder = tickets[0].sent.worker
        cluster.actors[holder].release("p0")
        await settle()
        assert tickets[2].sent is not None and tickets[2].sent.worker == holder  # the one that had room
        for t in tickets[1:]:
            cluster.actors[t.sent.worker].release(t.job.prompt_id)
        return [(await f).status for f in follows]

    assert asyncio.run(asyncio.wait_for(scenario(), 10)) == [SUCCESS] * 3


def test_a_waiting_job_is_interrupted_without_running(cluster):
    async def scenario():
        tickets = [cluster.submit(job(i)) for i in range(3)]
        assert cluster.interrupt("p2") and "p2" not in cluster.router.waiting
        ended = await cluster.follow(tickets[2])
        for t in tickets[:2]:
            cluster.actors[t.sent.worker].release(t.job.prompt_id)
            await cluster.follow(t)
        return ended

    ended = asyncio.run(asyncio.wait_for(scenario(), 10))
    assert ended.status == INTERRUPTED
    assert "p2" not in [pid for actor in cluster.actors.values() for pid in actor.sent]


def test_a_follow_given_up_takes_its_job_back(cluster):
    async def scenario():
        tickets = [cluster.submit(job(i)) for i in range(3)]
        waiting = asyncio.ensure_future(cluster.follow(tickets[2]))
        await settle()
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert "p2" not in cluster.router.waiting and "p2" not in cluster.tickets

    asyncio.run(asyncio.wait_for(scenario(), 10))


def test_when_the_last_worker_dies_the_waiting_jobs_are_lost_too(cluster):
    async def scenario():
        tickets = [cluster.submit(job(i)) for i in range(4)]
        first, second = (t.sent.worker for t in tickets[:2])
        follows = [asyncio.ensure_future(cluster.follow(t)) for t in tickets]
        await settle()
        cluster.actors[first].release(tickets[0].job.prompt_id, "died")
        await settle()
        assert cluster.alive == 1 and list(cluster.router.waiting) == ["p2", "p3"]  # second is busy
        cluster.actors[second].release("p1", "died")
        outcomes = await asyncio.gather(*follows, return_exceptions=True)
        return outcomes

    outcomes = asyncio.run(asyncio.wait_for(scenario(), 10))
    assert all(isinstance(o, WorkerLost) for o in outcomes), outcomes
    assert cluster.alive == 0 and not cluster.router.waiting and not cluster.tickets
    assert cluster.submit(job(9)).lost == ""  # no worker: lost at once, for the caller to run it
