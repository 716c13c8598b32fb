"""Our FLUX graphs (the shipped flux_txt2img.json and flux_stepwise.json) against diffusers'
FluxPipeline with the same tiny weights, prompt, seed and steps: FLUX.1-dev's architecture with
its guidance embedding (no uncond branch) and dynamic shift, schnell's without either, and dev
with FluxPipeline's true CFG; decoded images equal within 1e-5 in fp32 on the CPU with 2 threads
(observed: bitwise equal, max |diff| = 0). The ComfyUI all-in-one file gives the folder's image."""

from __future__ import annotations

import pytest
import torch
from graph_helpers import Graph, NodeRef

PROMPT = "a red circle on a blue square"
NEGATIVE = "a green triangle"
SEED, GUIDANCE, TOLERANCE, SIZE = 11, 4.0, 1e-5, 32


def reference(pipe, steps: int, **kwargs) -> torch.Tensor:
    return pipe(
        PROMPT,
        num_inference_steps=steps,
        guidance_scale=GUIDANCE,
        height=SIZE,
        width=SIZE,
        generator=torch.Generator().manual_seed(SEED),
        output_type="pt",
        **kwargs,
    ).images


def txt2img(shipped_graph, steps: int, path: str = "flux/tiny", **sampler) -> dict:
    return shipped_graph(
        "flux_txt2img",
        {
            "1": {"path": path},
            "2": {"text": PROMPT},
            "3": {"guidance": GUIDANCE},
            "4": {"width": SIZE, "height": SIZE},
            "5": {"steps": steps, "seed": SEED, **sampler},
        },
    )


def image(executor, graph: dict, node: str = "6") -> torch.Tensor:
    return executor.run(graph, [node]).outputs[node][0].permute(0, 3, 1, 2)


@pytest.mark.parametrize(("variant", "path", "steps"), [("dev", "flux/tiny", 3), ("schnell", "flux/tiny-schnell", 2)])
def test_txt2img_equals_pipeline(variant, path, steps, flux_pipes, flux_executor, shipped_graph):
    ours = image(flux_executor, txt2img(shipped_graph, steps, path))
    ref = reference(flux_pipes[variant], steps)
    assert ours.shape == ref.shape == (1, 3, SIZE, SIZE)
    assert (ours - ref).abs().max().item() <= TOLERANCE


def test_true_cfg_equals_pipeline(flux_pipes, flux_executor, shipped_graph):
    g = Graph.extend(txt2img(shipped_graph, 2, cfg=2.5))
    negative = g.node("LG_TextEncode", id="20", encoder=g.output(NodeRef("1"), "text_encoder"), text=NEGATIVE)
    g.set("5", negative=negative)
    ours = image(flux_executor, g.build())
    ref = reference(flux_pipes["dev"], 2, negative_prompt=NEGATIVE, true_cfg_scale=2.5)
    assert (ours - ref).abs().max().item() <= TOLERANCE


def test_stepwise_graph_equals_sampler_and_pipeline(flux_pipes, flux_executor, shipped_graph):
    """Every step of flux_stepwise.json is a node (separate CLIP-L and T5 encodings, LG_FlowShift's
    mu into the plan); the unrolled run is the sampler's run and the pipeline's."""
    stepwise = shipped_graph(
        "flux_stepwise",
        {"2": {"text": PROMPT}, "3": {"text": PROMPT}, "5": {"guidance": GUIDANCE},
         "6": {"width": SIZE, "height": SIZE}, "10": {"seed": SEED}},
    )
    ours = image(flux_executor, stepwise, "18")
    assert torch.equal(ours, image(flux_executor, txt2img(shipped_graph, 3)))
    assert (ours - reference(flux_pipes["dev"], 3)).abs().max().item() <= TOLERANCE


def test_all_in_one_file_equals_folder(flux_executor, shipped_graph):
    folder = image(flux_executor, txt2img(shipped_graph, 2))
    single = image(flux_executor, txt2img(shipped_graph, 2, path="flux/comfy/flux_tiny_all_in_one.safetensors"))
    assert torch.equal(single, folder)
