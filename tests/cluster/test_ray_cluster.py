"""The backend on a local Ray cluster of two workers: results equal the local executor's pixel
for pixel, prompts go to the worker holding their models, a killed worker's prompts complete on
the other; and the one-line errors when there is no cluster to be had."""

from __future__ import annotations

import asyncio
import json
import sys

import numpy as np
import pytest
import torch
from cluster_helpers import GRAPHS, RAY_TIMEOUT_S, shapes_prompt
from latentgraph import Executor
from latentgraph.cli import main
from latentgraph.cluster import backend
from latentgraph.cluster.backend import Cluster, ClusterUnavailable
from latentgraph.cluster.batch import BatchReport, run_on_cluster
from latentgraph.cluster.files import OutputPlacer
from latentgraph.cluster.keys import routing_keys
from latentgraph.cluster.protocol import SUCCESS, Job
from latentgraph.cluster.router import MODEL, RESULT
from latentgraph.cluster.worker import WorkerSettings
from latentgraph.executor import Folders
from PIL import Image

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def make_folders(root) -> Folders:
    folders = Folders.under(root)
    for folder in (folders.input, folders.output, folders.temp, folders.models):
        folder.mkdir(parents=True, exist_ok=True)
    return folders


@pytest.fixture(scope="module")
def cluster(local_ray, tmp_path_factory):
    folders = make_folders(tmp_path_factory.mktemp("server"))
    settings = WorkerSettings(input_dir=str(folders.input), models_dir=str(folders.models), device="cpu")
    made = Cluster.start("auto", settings, folders, workers=2, timeout_s=RAY_TIMEOUT_S)
    yield made
    made.close()


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, RAY_TIMEOUT_S))


def pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_routing_prefers_the_worker_that_holds_the_models(cluster):
    """First in the module: the workers start with nothing held."""
    router = cluster.router
    first, second = list(cluster.actors)
    assert not any(w.held for w in router.workers.values())
    router.dispatched(first, "occupied", [])  # so the least-loaded rule alone would pick `second`
    try:
        holder = cluster.submit(Job("holder-1", shapes_prompt(seed=11)))
        assert holder.sent is not None and holder.sent.worker == second  # sent at once: it had room
        assert run(cluster.follow(holder)).status == SUCCESS
    finally:
        router.finished(first, "occupied")
    held = router.workers[second].held
    keys = routing_keys(shapes_prompt(seed=11))
    # the worker reported the checkpoint it now holds as a model, the text embeddings as results
    assert held[keys["1"]] == MODEL and held[keys["2"]] == held[keys["3"]] == RESULT
    # every tie-break favours `first` now (it joined first, both are idle): the models decide
    again = cluster.submit(Job("holder-2", shapes_prompt(seed=12, text="a cyan square")))
    assert again.sent is not None and again.sent.worker == second
    outcome = run(cluster.follow(again))
    assert outcome.status == SUCCESS and "1" in outcome.cached  # the loader came from its cache


@pytest.fixture
def one_thread():
    """The reference at the workers' thread count: Ray gives an actor of one CPU slot one thread
    (OMP_NUM_THREADS=1), and CPU kernels sum in an order that depends on the thread count, so
    only runs with the same count can be equal bit for bit."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_results_equal_the_local_executors_pixel_for_pixel(cluster, tmp_path, one_thread):
    local_folders = make_folders(tmp_path)
    local = Executor(device="cpu", folders=local_folders)
    events: list[str] = []
    for seed, text in [(1, "a blue triangle"), (2, "a green cross")]:
        prompt = shapes_prompt(seed, text)
        here = local.run(prompt).ui["7"]["images"][0]
        ticket = cluster.submit(Job(f"pixels-{seed}", prompt))
        there = run(cluster.follow(ticket, lambda event, png: events.append(event.type)))
        assert there.status == SUCCESS, there.message
        image = there.ui["7"]["images"][0]
        written = cluster.placer.folders.output / image["subfolder"] / image["filename"]
        assert np.array_equal(pixels(written), pixels(local_folders.output / here["filename"]))
        # the PNG carries the same workflow as a local run's
        assert json.loads(Image.open(written).text["prompt"]) == prompt
    assert events[0] == "execution_start" and events[-1] == "execution_success"
    assert {"executing", "progress", "executed"} <= set(events)


def test_a_killed_workers_prompts_complete_elsewhere(cluster, local_ray):
    jobs = [Job(f"kill-{i}", shapes_prompt(seed=100 + i)) for i in range(4)]
    report = BatchReport()
    outcomes: dict[str, str] = {}

    def done(job, outcome):
        report.record(job, outcome)
        outcomes[job.prompt_id] = outcome.status

    async def scenario():
        task = asyncio.ensure_future(run_on_cluster(cluster, jobs, done))
        while not any(w.in_flight for w in cluster.router.workers.values()):
            await asyncio.sleep(0.01)
        victim, state = next((n, w) for n, w in cluster.router.workers.items() if w.in_flight)
        had = list(state.in_flight)
        local_ray.kill(cluster.actors[victim])
        left = await task
        return victim, had, left

    victim, had, left = run(scenario())
    assert left == [] and had
    assert victim not in cluster.actors and cluster.alive == 1
    assert outcomes == {job.prompt_id: SUCCESS for job in jobs}  # the victim's among them, done
    names = [img["filename"] for img in report.files]
    assert len(set(names)) == 4 and all((cluster.placer.folders.output / n).stat().st_size for n in names)


def test_no_ray_is_one_clear_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ClusterUnavailable, match=r"Ray is not installed; install the ray extra: "
                                                 r"pip install 'latentgraph\[ray\]'"):
        backend.import_ray()
    assert main(["batch", str(GRAPHS / "core_demo.json"), "--ray", "auto",
                 "--data-dir", str(tmp_path)]) == 1
    assert capsys.readouterr().err.strip() == (
        "error: Ray is not installed; install the ray extra: pip install 'latentgraph[ray]'")


def test_an_unreachable_address_is_one_clear_line(local_ray, monkeypatch):
    monkeypatch.setattr(local_ray, "is_initialized", lambda: False)
    monkeypatch.setattr(local_ray, "init", lambda **_: pytest.fail("ray.init must not be reached"))
    with pytest.raises(ClusterUnavailable, match=r"^cannot reach the Ray cluster at 127\.0\.0\.1:1: "):
        backend.connect("127.0.0.1:1")
    with pytest.raises(ClusterUnavailable, match=r"expected HOST:PORT \(the head's address\) or auto"):
        backend.connect("nowhere")


def test_the_batch_command_on_the_cluster(cluster, monkeypatch, tmp_path, capsys):
    """Last in the module: the command closes the cluster it ran on (here the module's)."""
    def started(address, settings, folders, workers=None):
        assert address == "auto" and workers is None
        cluster.placer = OutputPlacer(folders)  # the batch's own output folder
        return cluster

    monkeypatch.setattr(Cluster, "start", staticmethod(started))
    code = main(["batch", str(GRAPHS / "core_demo.json"), "--sweep", "1.value=[8, 16]", "--ray", "auto",
                 "--data-dir", str(tmp_path), "--device", "cpu"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "ran 2 prompt(s), 0 failed" in out
    written = sorted((tmp_path / "output").iterdir())
    assert [p.name for p in written] == ["core_demo_00001_.png", "core_demo_00002_.png"]
    assert sorted(Image.open(p).size for p in written) == [(16, 8), (32, 16)]
    assert cluster.alive == 0  # closed by the command
