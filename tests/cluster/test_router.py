"""The router's choices, without Ray: late binding from the window (a worker with room gets the
waiting prompt whose models it holds), the aging bound that keeps any prompt from starving, and
the rules that keep every worker busy."""

from __future__ import annotations

import random

import pytest
from latentgraph.cluster.router import MODEL, RESULT, Router


def router(*names: str, depth: int = 2, lookahead: int = 4, max_overtakes: int | None = None) -> Router:
    r = Router(depth=depth, lookahead=lookahead, max_overtakes=max_overtakes)
    for name in names:
        r.add(name)
    return r


def hold(r: Router, *prompts: tuple[str, list[str]]) -> None:
    for prompt_id, keys in prompts:
        r.hold(prompt_id, keys)


def test_prefers_the_worker_that_holds_the_models():
    r = router("a", "b", "c")
    r.report("b", {"ckpt": MODEL, "emb": RESULT})
    hold(r, ("p1", ["ckpt", "emb", "new-seed"]))
    assert r.assign() == [("b", "p1")]
    assert r.scores(["ckpt", "emb", "x"])["b"] == (1, 1, 2, 2)  # the last prompt sent holds them
    assert r.scores(["ckpt", "emb", "x"])["a"] == (0, 0, 0, 0)


def test_models_count_before_other_results():
    r = router("a", "b")
    r.report("a", {"ckpt": MODEL})
    r.report("b", {"emb1": RESULT, "emb2": RESULT})
    assert r.pick("a") is None and r.pick("b") is None  # nothing waits
    hold(r, ("p1", ["ckpt", "emb1", "emb2"]))
    assert r.assign()[0] == ("a", "p1")


def test_a_worker_gets_the_oldest_waiting_prompt_it_holds_not_the_queue_head():
    r = router("a", "b", depth=1, lookahead=4)
    r.report("a", {"m0": MODEL})
    r.report("b", {"m1": MODEL})
    hold(r, ("p1", ["m0", "s1"]), ("p2", ["m0", "s2"]), ("p3", ["m1", "s3"]), ("p4", ["m1", "s4"]))
    assert sorted(r.assign()) == [("a", "p1"), ("b", "p3")]
    r.finished("b", "p3", {"m1": MODEL})
    assert r.assign() == [("b", "p4")]  # p2 is older, but its model is on a
    r.finished("a", "p1", {"m0": MODEL})
    assert r.assign() == [("a", "p2")]


def test_a_busy_worker_takes_only_what_it_surely_holds_next():
    """With room for one model a worker running m1 has evicted m0 by the time it gets there:
    it waits until it is idle (and has reported what it kept) rather than bind a switch early."""
    r = router("a", depth=2)
    r.report("a", {"m0": MODEL, "m1": MODEL})
    hold(r, ("p1", ["m1", "s1"]))
    assert r.assign() == [("a", "p1")]
    hold(r, ("p2", ["m0", "s2"]), ("p3", ["m2", "s3"]))
    assert r.assign() == []  # a has room, but neither is of the model it is running
    hold(r, ("p4", ["m1", "s4"]))
    assert r.assign() == [("a", "p4")]
    r.finished("a", "p1", {"m1": MODEL})  # its cache kept m1 alone; p4 still out
    r.finished("a", "p4", {"m1": MODEL})
    assert r.assign() == [("a", "p2")]  # idle: the oldest prompt nobody holds the models of


def test_no_holder_goes_to_the_least_loaded():
    r = router("a", "b", "c")
    r.dispatched("a", "x1", ["x"])
    r.dispatched("b", "y1", ["y"])
    hold(r, ("p", ["z"]))
    assert r.assign() == [("c", "p")]


def test_prompts_sent_count_as_held():
    """The second prompt of a model follows the first before the worker has reported."""
    r = router("a", "b", lookahead=3)
    r.report("a", {"other": MODEL})
    r.report("b", {"ckpt": MODEL})
    r.finished("b", "none", {})  # b's cache is empty again; the router still knows ckpt is a model
    hold(r, ("p1", ["ckpt", "seed1"]))
    (first, _), = r.assign()
    hold(r, ("p2", ["ckpt", "seed2"]))
    assert r.assign() == [(first, "p2")]


def test_an_idle_holder_is_asked_before_an_idle_worker_that_joined_first():
    r = router("a", "b")
    r.report("b", {"ckpt": MODEL})
    hold(r, ("p1", ["ckpt", "seed"]))
    assert r.assign() == [("b", "p1")]


def test_a_busy_holder_is_passed_over_beyond_the_slack():
    r = router("a", "b", depth=1, lookahead=8)
    r.report("a", {"ckpt": MODEL})
    hold(r, ("p0", ["ckpt", "s0"]))
    assert r.assign() == [("a", "p0")]
    hold(r, ("p1", ["ckpt", "s1"]), ("p2", ["ckpt", "s2"]))
    assert r.assign() == []  # 2 wait for the busy holder (slack 2): sooner done there than loaded
    hold(r, ("p3", ["ckpt", "s3"]))
    assert r.assign() == [("b", "p1")]  # 3: b loads the model too, and holds it from now on
    r.finished("b", "p1", {"ckpt": MODEL})
    assert r.assign() == [("b", "p2")]


def test_a_batch_of_one_model_uses_every_worker():
    r = router("a", "b", "c", "d", lookahead=4)
    r.report("a", {"ckpt": MODEL})
    for i in range(r.window):
        hold(r, (f"p{i}", ["ckpt", f"seed{i}"]))
    sent = r.assign()
    assert {name for name, _ in sent} == {"a", "b", "c", "d"}  # the holder is passed over
    assert all(w.load == r.depth for w in r.workers.values())
    assert not r.has_room()  # 16 out: 8 sent, 8 waiting


def test_the_window():
    r = router("a", "b", depth=2, lookahead=3)
    assert r.window == 6 and r.max_overtakes == 12
    for i in range(6):
        assert r.has_room()
        hold(r, (f"p{i}", ["k"]))
    assert not r.has_room()
    assert len(r.assign()) == 4 and len(r.waiting) == 2 and not r.has_room()
    r.finished("a", "p0", {"k": MODEL})
    assert r.has_room()


def test_the_aging_bound_is_honoured():
    """A prompt of a model nobody wants to load waits behind a holder's stream of later prompts
    at most max_overtakes sends, then goes to the next worker with room."""
    r = router("a", depth=1, lookahead=8, max_overtakes=3)
    r.report("a", {"m0": MODEL})
    hold(r, ("rare", ["m1"]))
    order = []
    for i in range(6):
        hold(r, (f"p{i}", ["m0", f"s{i}"]))
        order += [pid for _, pid in r.assign()]
        r.finished("a", order[-1], {"m0": MODEL})
    assert order[:4] == ["p0", "p1", "p2", "rare"]  # overtaken 3 times, then next


def test_no_prompt_starves_and_none_is_overtaken_more_than_the_bound():
    rng = random.Random(0)
    bound = 10
    r = router("a", "b", "c", depth=2, lookahead=5, max_overtakes=bound)
    claimed, started, queue = [], [], [f"p{i}" for i in range(400)]
    model = {pid: rng.choices(["m0", "m1", "m2", "m3"], [8, 4, 2, 1])[0] for pid in queue}
    running: list[tuple[str, str]] = []
    while queue or r.waiting or running:
        while queue and r.has_room():
            pid = queue.pop(0)
            claimed.append(pid)
            r.hold(pid, [model[pid], f"seed-{pid}"])
        for name, pid in r.assign():
            started.append(pid)
            running.append((name, pid))
        assert running, "prompts wait while every worker is idle"
        name, pid = running.pop(rng.randrange(len(running)))
        r.finished(name, pid, {model[pid]: MODEL})
    assert sorted(started) == sorted(claimed)
    position = {pid: i for i, pid in enumerate(claimed)}
    for i, pid in enumerate(started):
        overtaken = sum(1 for other in started[:i] if position[other] > position[pid])
        assert overtaken <= bound, pid


def test_finished_updates_the_report_and_drops_incoming_keys():
    r = router("a")
    r.dispatched("a", "p1", ["k"])
    assert r.workers["a"].has("k")
    r.finished("a", "p1", {})
    assert not r.workers["a"].has("k") and r.workers["a"].load == 0


def test_removing_a_worker_returns_its_prompts_and_the_window_stays():
    r = router("a", "b", depth=1)
    hold(r, ("p1", ["k"]), ("p2", ["k"]), ("p3", ["k"]))
    assert r.assign() == [("a", "p1"), ("b", "p2")]
    assert r.remove("a") == ["p1"]
    assert list(r.waiting) == ["p3"]
    r.finished("a", "p1")  # a late word from the dead worker changes nothing
    r.finished("b", "p2", {"k": RESULT})
    assert r.assign() == [("b", "p3")] and list(r.workers) == ["b"]


def test_withdraw_takes_a_waiting_prompt_back():
    r = router("a", depth=1)
    hold(r, ("p1", ["k"]), ("p2", ["k"]))
    r.assign()
    assert r.withdraw("p2") and not r.withdraw("p2") and not r.withdraw("p1")
    assert r.waiting == {}


def test_no_workers_no_choice_and_bad_settings():
    r = Router()
    r.hold("p", ["k"])
    assert r.assign() == [] and not r.has_room()
    with pytest.raises(ValueError, match="already waiting"):
        r.hold("p", ["k"])
    with pytest.raises(ValueError):
        Router(depth=0)
    with pytest.raises(ValueError, match="lookahead at least depth"):
        Router(depth=3, lookahead=2)
    with pytest.raises(ValueError, match="slack and max_overtakes"):
        Router(max_overtakes=-1)
    r = router("a")
    with pytest.raises(ValueError, match="already known"):
        r.add("a")
