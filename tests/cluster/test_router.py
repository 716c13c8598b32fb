"""The router's choices, without Ray: the holder first, the least loaded among equals, any
worker when none holds anything, and the bounds that keep every worker busy."""

from __future__ import annotations

import pytest
from latentgraph.cluster.router import MODEL, RESULT, Router


def router(*names: str, capacity: int = 2, slack: int = 1, depth: int = 2) -> Router:
    r = Router(capacity=capacity, slack=slack, depth=min(depth, capacity))
    for name in names:
        r.add(name)
    return r


def test_prefers_the_worker_that_holds_the_models():
    r = router("a", "b", "c")
    r.report("b", {"ckpt": MODEL, "emb": RESULT})
    assert r.choose(["ckpt", "emb", "new-seed"]) == "b"
    assert r.scores(["ckpt", "emb", "new-seed"]) == {"a": (0, 0), "b": (1, 2), "c": (0, 0)}


def test_models_count_before_other_results():
    r = router("a", "b")
    r.report("a", {"ckpt": MODEL})
    r.report("b", {"emb1": RESULT, "emb2": RESULT})
    assert r.choose(["ckpt", "emb1", "emb2"]) == "a"


def test_least_loaded_among_equal_holders():
    r = router("a", "b", "c", capacity=4, slack=3)
    for name in ("a", "b"):
        r.report(name, {"ckpt": MODEL})
    r.dispatched("a", "p1", ["other"])
    assert r.choose(["ckpt"]) == "b"  # both hold it; b has nothing to do
    r.dispatched("b", "p2", ["other"])
    r.dispatched("b", "p3", ["other"])
    assert r.choose(["ckpt"]) == "a"


def test_no_holder_goes_to_the_least_loaded():
    r = router("a", "b", "c")
    r.dispatched("a", "p1", ["x"])
    r.dispatched("b", "p2", ["y"])
    assert r.choose(["z"]) == "c"


def test_prompts_in_flight_count_as_held():
    """The second prompt of a model follows the first before the worker has reported."""
    r = router("a", "b", capacity=3)
    first = r.choose(["ckpt", "seed1"])
    r.dispatched(first, "p1", ["ckpt", "seed1"])
    assert r.choose(["ckpt", "seed2"]) == first


def test_a_busy_holder_is_passed_over_beyond_the_slack():
    r = router("a", "b", capacity=8, slack=1)
    r.report("a", {"ckpt": MODEL})
    r.dispatched("a", "p1", ["ckpt"])
    assert r.choose(["ckpt"]) == "a"  # one more than b: within the slack
    r.dispatched("a", "p2", ["ckpt"])
    assert r.choose(["ckpt"]) == "b"  # two more: b takes it (and will hold the model)


def test_the_window_and_the_capacities():
    r = router("a", "b", capacity=3, slack=2, depth=2)
    assert r.window == 4  # depth 2 x 2 workers; (2 - 1) x (slack + 1) + 1 is no more
    r.report("a", {"ckpt": MODEL})
    for i in range(3):  # all to the holder while within the slack: b has room, a has the model
        assert r.has_room() and r.choose(["ckpt"]) == "a"
        r.dispatched("a", f"p{i}", ["ckpt"])
    assert r.choose(["ckpt"]) == "b"  # a is full (capacity 3)
    r.dispatched("b", "p3", ["ckpt"])
    assert not r.has_room()  # 4 out: the next waits in the queue
    r.finished("a", "p0", {"ckpt": MODEL})
    assert r.has_room() and r.choose(["ckpt"]) == "b"  # it has the model coming: the less loaded
    assert router("a", "b", "c", capacity=12, slack=8).window == 19  # 2 x 9 + 1


def test_an_idle_worker_is_not_left_idle_by_a_batch_of_one_model():
    r = Router()  # the defaults
    for name in ("a", "b"):
        r.add(name)
    r.report("a", {"ckpt": MODEL})
    taken = {"a": 0, "b": 0}
    for i in range(r.window):
        name = r.choose(["ckpt", f"seed{i}"])
        r.dispatched(name, f"p{i}", ["ckpt", f"seed{i}"])
        taken[name] += 1
    assert not r.has_room() and taken == {"a": r.slack + 1, "b": 1}


def test_full_workers_take_nothing():
    r = router("a", "b", capacity=1)
    r.dispatched("a", "p1", [])
    r.dispatched("b", "p2", [])
    assert not r.has_room() and r.choose(["x"]) is None
    r.finished("b", "p2", {"x": RESULT})
    assert r.has_room() and r.choose(["x"]) == "b"


def test_finished_updates_the_report_and_drops_incoming_keys():
    r = router("a")
    r.dispatched("a", "p1", ["k"])
    assert r.workers["a"].has("k")
    r.finished("a", "p1", {})
    assert not r.workers["a"].has("k") and r.workers["a"].load == 0


def test_removing_a_worker_returns_its_prompts():
    r = router("a", "b")
    r.dispatched("a", "p1", ["k"])
    r.dispatched("a", "p2", ["k"])
    assert r.remove("a") == ["p1", "p2"]
    assert r.choose(["k"]) == "b"
    r.finished("a", "p1")  # a late word from the dead worker changes nothing
    assert list(r.workers) == ["b"]


def test_no_workers_no_choice_and_bad_settings():
    assert Router().choose(["k"]) is None
    with pytest.raises(ValueError):
        Router(capacity=0)
    with pytest.raises(ValueError, match="capacity at least depth"):
        Router(capacity=2, depth=3)
    r = router("a")
    with pytest.raises(ValueError, match="already known"):
        r.add("a")
