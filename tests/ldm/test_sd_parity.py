"""Our SD graphs (the shipped JSON files) against diffusers' StableDiffusion(Img2Img)Pipeline with
the same tiny weights, prompt, seed, steps and guidance: decoded images equal within 1e-5 in fp32
on the CPU with 2 threads (observed: bitwise equal, max |diff| = 0)."""

from __future__ import annotations

import pytest
import sd_tiny
import torch
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    StableDiffusionImg2ImgPipeline,
    StableDiffusionPipeline,
)
from graph_helpers import Graph
from PIL import Image

SCHEDULERS = {
    "ddim": DDIMScheduler,
    "ddpm": DDPMScheduler,
    "euler": EulerDiscreteScheduler,
    "dpmpp_2m": DPMSolverMultistepScheduler,
}
PROMPT = "A photo of an astronaut, riding a horse!"
SEED, CFG, TOLERANCE = 1234, 7.5, 1e-5


@pytest.fixture(scope="module")
def pipelines(sd_root):
    folder = sd_root.models / "sd" / "tiny"
    txt = StableDiffusionPipeline.from_pretrained(
        folder, safety_checker=None, requires_safety_checker=False
    )
    img = StableDiffusionImg2ImgPipeline(**txt.components)
    for pipe in (txt, img):
        pipe.set_progress_bar_config(disable=True)
    return txt, img


def run_image(executor, graph, node: str) -> torch.Tensor:
    """The IMAGE of `node`, as (B,3,H,W) like the pipelines' output_type='pt'."""
    return executor.run(graph, [node]).outputs[node][0].permute(0, 3, 1, 2)


def swap_scheduler(pipe, solver: str) -> None:
    # As users swap schedulers: from_config keeps the checkpoint's stated spacing ("leading").
    pipe.scheduler = SCHEDULERS[solver].from_config(pipe.scheduler.config)


@pytest.mark.parametrize("solver", list(SCHEDULERS))
def test_txt2img_equals_pipeline(solver, pipelines, sd_executor, sd_graph):
    size = sd_tiny.IMAGE
    graph = sd_graph(
        "sd_txt2img",
        {
            "2": {"text": PROMPT},
            "4": {"width": size, "height": size},
            "5": {"solver": solver, "steps": 4, "seed": SEED, "cfg": CFG},
        },
    )
    ours = run_image(sd_executor, graph, "6")
    pipe = pipelines[0]
    swap_scheduler(pipe, solver)
    ref = pipe(
        PROMPT,
        num_inference_steps=4,
        guidance_scale=CFG,
        height=size,
        width=size,
        generator=torch.Generator().manual_seed(SEED),
        output_type="pt",
    ).images
    assert ours.shape == ref.shape == (1, 3, size, size)
    assert (ours - ref).abs().max().item() <= TOLERANCE


@pytest.mark.parametrize("solver", list(SCHEDULERS))
def test_img2img_equals_pipeline(solver, pipelines, sd_root, sd_executor, sd_graph):
    graph = sd_graph(
        "sd_img2img",
        {
            "2": {"text": PROMPT},
            "5": {"seed": SEED},
            "6": {"solver": solver, "steps": 5, "seed": SEED, "cfg": CFG, "denoise": 0.6},
        },
    )
    ours = run_image(sd_executor, graph, "7")
    pipe = pipelines[1]
    swap_scheduler(pipe, solver)
    image = Image.open(sd_root.input / "example.png")
    ref = pipe(
        PROMPT,
        image=image,
        strength=0.6,
        num_inference_steps=5,
        guidance_scale=CFG,
        generator=torch.Generator().manual_seed(SEED),
        output_type="pt",
    ).images
    assert (ours - ref).abs().max().item() <= TOLERANCE


def test_text_embeddings_equal_encode_prompt(pipelines, sd_executor):
    g = Graph()
    checkpoint = g.node("LG_LoadCheckpoint", id="1", path="sd/tiny")
    g.node("LG_TextEncode", id="2", encoder=g.output(checkpoint, "text_encoder"), text=PROMPT)
    ours = sd_executor.run(g.build(), ["2"]).outputs["2"][0]
    ref, _ = pipelines[0].encode_prompt(PROMPT, "cpu", 1, False)
    assert ours.mask is None and ours.pooled is None
    assert torch.equal(ours.embeddings, ref)
