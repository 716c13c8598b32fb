"""Our SANA graphs (the shipped JSON files) against diffusers' SanaPipeline with the same tiny
weights, prompt, seed, steps and guidance: decoded images equal within 1e-5 in fp32 on the CPU
with 2 threads (observed: bitwise equal, max |diff| = 0)."""

from __future__ import annotations

import inspect

import pytest
import sana_tiny
import torch
from diffusers import FlowMatchEulerDiscreteScheduler, SanaPipeline
from graph_helpers import Graph

PROMPT = "  An Astronaut riding a horse on the moon "
SEED, CFG, TOLERANCE = 77, 4.5, 1e-5
SIZE = sana_tiny.IMAGE


@pytest.fixture(scope="module")
def pipe(sana_root):
    pipeline = SanaPipeline.from_pretrained(sana_root.models / "sana" / "tiny")
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def reference(pipe, solver: str, steps: int, **kwargs) -> torch.Tensor:
    dpm = pipe.scheduler
    if solver == "flow_euler":
        # The model's flow shift (its DPM-Solver config's flow_shift) under FlowMatchEuler's name.
        pipe.scheduler = FlowMatchEulerDiscreteScheduler(shift=dpm.config.flow_shift)
    try:
        return pipe(
            PROMPT,
            num_inference_steps=steps,
            guidance_scale=CFG,
            height=SIZE,
            width=SIZE,
            generator=torch.Generator().manual_seed(SEED),
            output_type="pt",
            use_resolution_binning=False,
            **kwargs,
        ).images
    finally:
        pipe.scheduler = dpm


def run_image(executor, graph, node: str) -> torch.Tensor:
    return executor.run(graph, [node]).outputs[node][0].permute(0, 3, 1, 2)


@pytest.mark.parametrize("solver", ["flow_dpmpp_2m", "flow_euler"])
def test_txt2img_equals_pipeline(solver, pipe, sana_executor, sana_graph):
    graph = sana_graph(
        "sana_txt2img",
        {
            "2": {"text": PROMPT},
            "4": {"width": SIZE, "height": SIZE},
            "5": {"solver": solver, "steps": 4, "seed": SEED, "cfg": CFG},
        },
    )
    ours = run_image(sana_executor, graph, "6")
    ref = reference(pipe, solver, 4)
    assert ours.shape == ref.shape == (1, 3, SIZE, SIZE)
    assert (ours - ref).abs().max().item() <= TOLERANCE


def test_without_the_instruction(pipe, sana_executor, sana_graph):
    graph = sana_graph(
        "sana_txt2img",
        {
            "2": {"text": PROMPT, "instruction": False},
            "4": {"width": SIZE, "height": SIZE},
            "5": {"steps": 3, "seed": SEED, "cfg": CFG},
        },
    )
    ours = run_image(sana_executor, graph, "6")
    ref = reference(pipe, "flow_dpmpp_2m", 3, complex_human_instruction=None)
    assert (ours - ref).abs().max().item() <= TOLERANCE


def test_stepwise_graph_equals_sampler_and_pipeline(pipe, sana_executor, sana_graph):
    """Every step of sana_stepwise.json is a node; the unrolled run is the sampler's run."""
    changes = {"2": {"text": PROMPT}, "4": {"width": SIZE, "height": SIZE}, "7": {"seed": SEED}}
    changes.update({node: {"scale": CFG} for node in ("10", "13", "16")})
    stepwise = sana_graph("sana_stepwise", changes)
    steps = [n for n, call in stepwise.items() if call["class_type"] == "LG_DPMSolverStep"]
    assert len(steps) == 3
    ours = run_image(sana_executor, stepwise, "18")
    sampled = run_image(
        sana_executor,
        sana_graph(
            "sana_txt2img",
            {
                "2": {"text": PROMPT},
                "4": {"width": SIZE, "height": SIZE},
                "5": {"steps": 3, "seed": SEED, "cfg": CFG},
            },
        ),
        "6",
    )
    assert torch.equal(ours, sampled)
    assert (ours - reference(pipe, "flow_dpmpp_2m", 3)).abs().max().item() <= TOLERANCE


def test_text_embeddings_equal_encode_prompt(pipe, sana_executor):
    g = Graph()
    encoder = g.node("LG_LoadTextEncoder", id="1", path="sana/tiny/text_encoder")
    g.node("LG_TextEncode", id="2", encoder=encoder, text=PROMPT)
    g.node("LG_TextEncode", id="3", encoder=encoder, text="", instruction=False)
    result = sana_executor.run(g.build(), ["2", "3"]).outputs
    positive, negative = result["2"][0], result["3"][0]
    # The pipeline's default instruction is a default argument of __call__.
    instruction = inspect.signature(pipe.__call__).parameters["complex_human_instruction"].default
    embeds, mask, neg_embeds, neg_mask = pipe.encode_prompt(
        PROMPT, True, "", device="cpu", complex_human_instruction=instruction
    )
    assert positive.embeddings.shape == (1, 300, 32)
    assert torch.equal(positive.embeddings, embeds) and torch.equal(positive.mask, mask)
    assert torch.equal(negative.embeddings, neg_embeds) and torch.equal(negative.mask, neg_mask)


def test_batch_equals_num_images_per_prompt(pipe, sana_executor, sana_graph):
    graph = sana_graph(
        "sana_txt2img",
        {
            "2": {"text": PROMPT},
            "4": {"width": SIZE, "height": SIZE, "batch": 2},
            "5": {"steps": 3, "seed": SEED, "cfg": CFG},
        },
    )
    ours = run_image(sana_executor, graph, "6")
    ref = reference(pipe, "flow_dpmpp_2m", 3, num_images_per_prompt=2)
    assert ours.shape == ref.shape == (2, 3, SIZE, SIZE)
    assert (ours - ref).abs().max().item() <= TOLERANCE
