"""The model tier: models stay on the device within their budget; under pressure the least
recently used model not held by the running workflow moves to the CPU instead of being dropped,
and comes back when asked for."""

from __future__ import annotations

import torch
from latentgraph.executor.cache import Entry, OutputCache


class FakeModel:
    """Stands for a model on a device; records where it is (moving is what matters here)."""

    is_model = True

    def __init__(self, nbytes: int) -> None:
        self.nbytes = nbytes
        self.device = "cuda"
        self.moves: list[str] = []

    def to(self, device: torch.device | str) -> FakeModel:
        self.device = str(device)
        self.moves.append(self.device)
        return self


def make_cache() -> OutputCache:
    # Room on the "device" for two models of 100 bytes (plus bookkeeping); two more on the CPU.
    return OutputCache(1000, 400, device=torch.device("cuda"), offload_bytes=400)


def test_least_recently_used_model_is_offloaded_not_dropped():
    cache = make_cache()
    a, b, c = FakeModel(100), FakeModel(100), FakeModel(100)
    cache.put("a", Entry((a,)))
    cache.put("b", Entry((b,)))
    cache.put("c", Entry((c,)))
    assert a.device == "cpu" and b.device == c.device == "cuda"
    assert "a" in cache
    assert cache.get("a").outputs[0] is a and a.device == "cuda"  # back on the device...
    assert b.device == "cpu"  # ...and the next least recently used went to the CPU


def test_models_pinned_by_the_running_workflow_stay_on_the_device():
    cache = make_cache()
    a, b, c = FakeModel(100), FakeModel(100), FakeModel(100)
    cache.put("a", Entry((a,)))
    cache.put("b", Entry((b,)))
    cache.pin({"a"})
    cache.put("c", Entry((c,)))
    assert a.device == "cuda" and b.device == "cpu"


def test_offload_tier_is_bounded_too():
    cache = make_cache()
    models = [FakeModel(100) for _ in range(6)]
    for i, m in enumerate(models):
        cache.put(str(i), Entry((m,)))
    assert cache.models.bytes <= 400 and cache.offloaded.bytes <= 400
    assert "0" not in cache and "5" in cache


def test_on_the_cpu_models_are_simply_evicted():
    cache = OutputCache(1000, 400, device=torch.device("cpu"), offload_bytes=400)
    models = [FakeModel(100) for _ in range(3)]
    for i, m in enumerate(models):
        cache.put(str(i), Entry((m,)))
    assert models[0].moves == [] and "0" not in cache
