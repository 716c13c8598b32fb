"""The shipped shapes models end to end: each shapes graph, run through the executor with the
shipped weights, must draw what its prompt (or class label) asks for, as read by the checker.
A regression in any node of the pipeline shows up here."""

from __future__ import annotations

from pathlib import Path

import pytest
from latentgraph.executor import Executor, Folders, load_workflow
from latentgraph.training import checker, shapes

ROOT = Path(__file__).resolve().parents[2]
# (class id, seed): every shape and every colour at least once.
CASES = [(0, 1), (7, 2), (14, 3), (21, 4), (11, 5), (16, 6)]


def shipped(family: str) -> Path:
    graph = ROOT / "graphs" / f"shapes_{family}.json"
    if not graph.is_file():
        pytest.fail(f"graphs/shapes_{family}.json is missing")
    return graph


@pytest.mark.parametrize("class_id, seed", CASES)
def test_shapes_sd_draws_the_prompt(tmp_path, class_id, seed):
    graph = load_workflow(shipped("sd")).nodes
    graph["2"]["inputs"]["text"] = shapes.caption_of(class_id)
    graph["5"]["inputs"]["seed"] = seed
    del graph["7"]  # the image, not the file
    folders = Folders(tmp_path / "in", tmp_path / "out", tmp_path / "tmp", ROOT / "models")
    image = Executor(device="cpu", folders=folders).run(graph, targets=["6"]).outputs["6"][0]
    verdict = checker.check(image[0].numpy())
    assert (verdict.shape, verdict.colour) == shapes.class_names(class_id)


def test_prompt_outside_the_grammar_still_makes_an_image(tmp_path):
    graph = load_workflow(shipped("sd")).nodes
    graph["2"]["inputs"]["text"] = "An Astronaut riding a horse, 4k!"
    del graph["7"]
    folders = Folders(tmp_path / "in", tmp_path / "out", tmp_path / "tmp", ROOT / "models")
    image = Executor(device="cpu", folders=folders).run(graph, targets=["6"]).outputs["6"][0]
    assert image.shape == (1, 32, 32, 3) and 0 <= float(image.min()) <= float(image.max()) <= 1


@pytest.mark.parametrize("class_id, seed", CASES)
def test_shapes_var_draws_the_class(tmp_path, class_id, seed):
    graph = load_workflow(shipped("var")).nodes
    graph["3"]["inputs"].update(class_labels=str(class_id), seed=seed)
    del graph["4"]
    folders = Folders(tmp_path / "in", tmp_path / "out", tmp_path / "tmp", ROOT / "models")
    image = Executor(device="cpu", folders=folders).run(graph, targets=["3"]).outputs["3"][0]
    verdict = checker.check(image[0].numpy())
    assert (verdict.shape, verdict.colour) == shapes.class_names(class_id)
