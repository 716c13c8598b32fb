"""Our SD3 graph (the shipped sd3_txt2img.json) against diffusers' StableDiffusion3Pipeline with
the same tiny weights (SD3.5-medium's architecture: QK norm, dual attention), prompt, seed, steps
and guidance: decoded images equal within 1e-5 in fp32 on the CPU with 2 threads (observed:
bitwise equal, max |diff| = 0: the same operations in the same order, CFG batched [uncond, cond]
as the pipeline batches it), also with SD3.5's skip-layer guidance. The ComfyUI all-in-one file
gives the folder's image."""

from __future__ import annotations

import pytest
import torch
from graph_helpers import Graph

PROMPT = "a red circle on a blue square"
NEGATIVE = "a green triangle"
SEED, CFG, TOLERANCE, SIZE = 7, 5.0, 1e-5, 32


def reference(pipe, steps: int, **kwargs) -> torch.Tensor:
    return pipe(
        PROMPT,
        num_inference_steps=steps,
        guidance_scale=CFG,
        height=SIZE,
        width=SIZE,
        generator=torch.Generator().manual_seed(SEED),
        output_type="pt",
        **kwargs,
    ).images


def ours(executor, shipped_graph, steps: int, path: str = "sd3/tiny", negative: str = "", **sampler) -> torch.Tensor:
    graph = shipped_graph(
        "sd3_txt2img",
        {
            "1": {"path": path},
            "2": {"text": PROMPT},
            "3": {"text": negative},
            "4": {"width": SIZE, "height": SIZE},
            "5": {"steps": steps, "seed": SEED, "cfg": CFG, **sampler},
        },
    )
    return executor.run(graph, ["6"]).outputs["6"][0].permute(0, 3, 1, 2)


def test_txt2img_equals_pipeline(sd3_pipe, sd3_executor, shipped_graph):
    image, ref = ours(sd3_executor, shipped_graph, 3), reference(sd3_pipe, 3)
    assert image.shape == ref.shape == (1, 3, SIZE, SIZE)
    assert (image - ref).abs().max().item() <= TOLERANCE


def test_negative_prompt_equals_pipeline(sd3_pipe, sd3_executor, shipped_graph):
    image = ours(sd3_executor, shipped_graph, 2, negative=NEGATIVE)
    assert (image - reference(sd3_pipe, 2, negative_prompt=NEGATIVE)).abs().max().item() <= TOLERANCE


def test_all_in_one_file_equals_folder(sd3_executor, shipped_graph):
    folder = ours(sd3_executor, shipped_graph, 2)
    single = ours(sd3_executor, shipped_graph, 2, path="sd3/comfy/sd3_tiny_all_in_one.safetensors")
    assert torch.equal(single, folder)


def test_batch_equals_num_images_per_prompt(sd3_pipe, sd3_executor, shipped_graph):
    graph = shipped_graph(
        "sd3_txt2img",
        {"2": {"text": PROMPT}, "4": {"width": SIZE, "height": SIZE, "batch": 2},
         "5": {"steps": 2, "seed": SEED, "cfg": CFG}},
    )
    image = sd3_executor.run(graph, ["6"]).outputs["6"][0].permute(0, 3, 1, 2)
    ref = reference(sd3_pipe, 2, num_images_per_prompt=2)
    assert image.shape == ref.shape == (2, 3, SIZE, SIZE)
    assert (image - ref).abs().max().item() <= TOLERANCE


def test_skip_layer_guidance_equals_pipeline(sd3_pipe, sd3_executor, shipped_graph):
    """SD3.5's skip-layer guidance on steps 1 and 2 of 4 (4 x 0.01 < i < 4 x 0.6), block 1 skipped."""
    g = Graph.extend(shipped_graph("sd3_txt2img", {"2": {"text": PROMPT}, "4": {"width": SIZE, "height": SIZE},
                                                   "5": {"steps": 4, "seed": SEED, "cfg": CFG}}))
    slg = g.node("LG_SkipLayerGuidance", id="20", layers="1", scale=2.8, start=0.01, stop=0.6)
    g.set("5", guidance=slg)
    image = sd3_executor.run(g.build(), ["6"]).outputs["6"][0].permute(0, 3, 1, 2)
    ref = reference(sd3_pipe, 4, skip_guidance_layers=[1], skip_layer_guidance_scale=2.8,
                    skip_layer_guidance_start=0.01, skip_layer_guidance_stop=0.6)
    assert (image - ref).abs().max().item() <= TOLERANCE
    assert (image - reference(sd3_pipe, 4)).abs().max().item() > 1e-3  # it did guide


def test_skip_layer_guidance_names_bad_layers(sd3_executor, shipped_graph):
    from latentgraph.executor import NodeFailed

    g = Graph.extend(shipped_graph("sd3_txt2img", {"4": {"width": SIZE, "height": SIZE}, "5": {"steps": 2}}))
    g.set("5", guidance=g.node("LG_SkipLayerGuidance", id="20", layers="1, 5", start=0.0, stop=1.0))
    with pytest.raises(NodeFailed, match=r"layer\(s\) \[5\] are outside the MM-DiT's 2 layers") as info:
        sd3_executor.run(g.build(), ["6"])
    assert info.value.error.input_name == "guidance"
    g.set("20", layers="seven")
    with pytest.raises(NodeFailed, match="comma-separated block indices") as info:
        sd3_executor.run(g.build(), ["6"])
    assert info.value.error.input_name == "layers"
