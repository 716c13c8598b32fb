"""A bad argument to the diffusion math names itself (ArgumentError.argument); the nodes turn that
into an InputError of their own input, and the executor's NodeFailed carries it as ``input``.
Nothing is read back out of a message."""

from __future__ import annotations

import json

import pytest
import torch
from denoiser_for_tests import SHAPE, TextEmbeds, make_denoiser
from graph_helpers import Graph
from latentgraph import Executor
from latentgraph.cli import main
from latentgraph.executor import InputError, NodeFailed
from latentgraph.nodes.diffusion.math import SANA_SCHEDULE, SD15_SCHEDULE, ArgumentError, Schedule
from latentgraph.nodes.diffusion.solvers import make_plan

EXECUTOR = Executor(device="cpu")


@pytest.mark.parametrize(("kwargs", "argument"), [
    ({"solver": "lms"}, "solver"),
    ({"solver": "flow_euler"}, "schedule"),
    ({"schedule": SANA_SCHEDULE}, "schedule"),
    ({"steps": 0}, "steps"),
    ({"steps": 1001}, "steps"),
    ({"spacing": "karras"}, "spacing"),
    ({"steps_offset": -1}, "steps_offset"),
    ({"denoise": 0.05}, "denoise"),
    ({"steps": 61, "spacing": "trailing"}, "spacing"),
    ({"set_alpha_to_one": True}, "set_alpha_to_one"),
])
def test_make_plan_names_the_argument(kwargs, argument):
    with pytest.raises(ArgumentError) as info:
        make_plan(**{"schedule": SD15_SCHEDULE, "steps": 10, "solver": "euler", **kwargs})
    assert info.value.argument == argument


@pytest.mark.parametrize(("kwargs", "argument"), [
    ({"beta_schedule": "cosine"}, "beta_schedule"),
    ({"beta_schedule": "flow"}, "prediction_type"),
    ({"num_train_timesteps": 1}, "num_train_timesteps"),
    ({"shift": 3.0}, "shift"),
    ({"beta_start": 0.03}, "beta_start"),
    ({"beta_schedule": "flow", "prediction_type": "flow_prediction", "zero_terminal_snr": True},
     "zero_terminal_snr"),
])
def test_schedule_names_the_argument(kwargs, argument):
    with pytest.raises(ArgumentError) as info:
        Schedule(**kwargs)
    assert info.value.argument == argument


def embeds(batch: int, tokens: int = 2) -> TextEmbeds:
    return TextEmbeds(torch.zeros(batch, tokens, 4))


@pytest.mark.parametrize(("batch", "positive", "negative", "argument"), [
    (1, None, embeds(1), "negative"),               # a negative prompt without a positive one
    (1, embeds(1), embeds(1, tokens=3), "negative"),  # the two do not batch together
    (3, embeds(2), embeds(1), "positive"),          # two prompts for a batch of three latents
    (3, embeds(1), embeds(2), "negative"),
    (3, embeds(2), None, "positive"),
])
def test_denoiser_names_the_prompt_at_fault(batch, positive, negative, argument):
    sample = torch.zeros(batch, *SHAPE[1:])
    with pytest.raises(ArgumentError) as info:
        make_denoiser(SD15_SCHEDULE).predict(sample, torch.tensor(999), positive, negative)
    assert info.value.argument == argument


def failing(inputs: dict, node: str = "LG_NoiseSchedule") -> NodeFailed:
    g = Graph()
    if node == "LG_SamplingPlan":
        inputs = {"schedule": g.node("LG_NoiseSchedule", id="0"), **inputs}
    g.node(node, id="1", **inputs)
    with pytest.raises(NodeFailed) as info:
        EXECUTOR.run(g.build(), targets=["1"])
    return info.value


@pytest.mark.parametrize(("node", "inputs", "at_fault"), [
    ("LG_NoiseSchedule", {"shift": 3.0}, "shift"),
    ("LG_NoiseSchedule", {"beta_start": 0.5, "beta_end": 0.1}, "beta_start"),
    ("LG_NoiseSchedule", {"kind": "flow"}, "prediction_type"),
    ("LG_NoiseSchedule", {"kind": "flow", "prediction_type": "flow_prediction", "zero_terminal_snr": True},
     "zero_terminal_snr"),
    ("LG_SamplingPlan", {"steps": 1001}, "steps"),
    ("LG_SamplingPlan", {"denoise": 0.01, "steps": 10}, "denoise"),
    ("LG_SamplingPlan", {"steps": 61, "spacing": "trailing"}, "spacing"),
    ("LG_SamplingPlan", {"solver": "flow_euler"}, "schedule"),
])
def test_nodes_name_their_input_and_keep_the_message(node, inputs, at_fault):
    failed = failing(inputs, node)
    assert isinstance(failed.error, InputError)
    assert failed.input == failed.error.input == failed.error.input_name == at_fault
    assert f"input '{at_fault}': {failed.error.message}" in str(failed)


def test_the_cli_reports_the_input(tmp_path, capsys):
    path = tmp_path / "bad.json"
    g = Graph()
    g.node("LG_SamplingPlan", id="2", schedule=g.node("LG_NoiseSchedule", id="1", shift=3.0))
    path.write_text(json.dumps(g.build()))
    assert main(["run", str(path), "--target", "2", "--json", "--data-dir", str(tmp_path)]) == 1
    report = json.loads(capsys.readouterr().out)
    assert (report["node_id"], report["input"]) == ("1", "shift")
    assert "input 'shift': shift only applies to beta_schedule='flow'" in report["error"]
