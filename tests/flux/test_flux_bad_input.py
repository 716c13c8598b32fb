"""Bad input to the FLUX graphs gets an error naming the node, the input and the file: a
transformer-only file or a checkpoint without T5 where a whole model is needed, SD3's text
embeddings for a FLUX transformer (and FLUX's for SD3's), a latent the 2x2 patches do not tile,
a solver that cannot take FLUX's plan."""

from __future__ import annotations

import shutil

import pytest
import tiny_text
import tiny_transformers
from graph_helpers import Graph, one_node
from latentgraph.executor import NodeFailed
from safetensors.torch import save_file


def failure(executor, graph: dict, target: str) -> NodeFailed:
    with pytest.raises(NodeFailed) as info:
        executor.run(graph, [target])
    return info.value


def test_a_transformer_file_is_not_a_whole_model(flux_executor):
    error = failure(flux_executor, one_node("LG_LoadCheckpoint", path="flux/flux1-dev.safetensors"), "1")
    assert error.node_id == "1" and error.error.input_name == "path"
    assert "flux1-dev.safetensors holds a FLUX.1 transformer, not a whole model" in str(error)


def test_missing_t5_is_named(flux_executor, flux_root, flux_pipes):
    root = flux_root.models / "flux"
    pipe = flux_pipes["dev"]
    state = {f"model.diffusion_model.{k}": v for k, v in tiny_transformers.flux_to_bfl(pipe.transformer).items()}
    state.update(tiny_text.bundled({"clip_l": pipe.text_encoder}, None))
    state.update({f"vae.{k}": v.contiguous() for k, v in tiny_text.vae16_to_ldm(pipe.vae.state_dict()).items()})
    save_file(state, str(root / "no_t5.safetensors"))
    error = failure(flux_executor, one_node("LG_LoadCheckpoint", path="flux/no_t5.safetensors"), "1")
    assert error.error.input_name == "path" and "no_t5.safetensors" in str(error) and "t5xxl" in str(error)
    shutil.copytree(root / "tiny", root / "tiny-no-t5", ignore=shutil.ignore_patterns("text_encoder_2"))
    error = failure(flux_executor, one_node("LG_LoadCheckpoint", path="flux/tiny-no-t5"), "1")
    assert error.error.input_name == "path" and "tiny-no-t5" in str(error) and "text_encoder_2" in str(error)


def test_embeddings_of_the_other_family_are_refused(flux_executor, flux_root, shipped_graph):
    """SD3's prompt (77 + 256 tokens, 64-wide pooled CLIP-L/G) into FLUX's transformer, and FLUX's
    into SD3's: each names the sampler's prompt input."""
    root = flux_root.models / "flux"
    tiny_transformers.sd3_pipeline("sd3").save_pretrained(root / "sd3-tiny")
    for denoiser_path, text_path in (("flux/tiny", "flux/sd3-tiny"), ("flux/sd3-tiny", "flux/tiny")):
        g = Graph.extend(shipped_graph("flux_txt2img", {"4": {"width": 32, "height": 32}, "5": {"steps": 1}}))
        g.set("1", path=denoiser_path)
        other = g.node("LG_LoadCheckpoint", id="20", path=text_path)
        g.set("2", encoder=g.output(other, "text_encoder"))
        error = failure(flux_executor, g.build(), "6")
        assert error.error.input_name == "positive" and "encoded for another model family" in str(error)


def test_odd_latents_and_unfit_solvers_name_the_sampler_input(flux_executor, shipped_graph):
    odd = shipped_graph("flux_txt2img", {"4": {"width": 34, "height": 32}, "5": {"steps": 2}})
    error = failure(flux_executor, odd, "6")
    assert (error.node_id, error.error.input_name) == ("5", "latent")
    assert "2x2 patches" in str(error) and "17" in str(error)
    dpm = shipped_graph("flux_txt2img", {"4": {"width": 32, "height": 32}, "5": {"steps": 2, "solver": "flow_dpmpp_2m"}})
    error = failure(flux_executor, dpm, "6")
    assert (error.node_id, error.error.input_name) == ("5", "solver") and "flow_euler" in str(error)
