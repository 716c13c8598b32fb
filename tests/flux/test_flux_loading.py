"""The tiny FLUX.1 transformers (dev with its guidance embedding, schnell without) load strictly
from BFL's single files, ComfyUI's wrapped keys and fp8 copies, and equal the diffusers folder;
their configs are read off the shapes; the denoiser packs, positions and times its input as
FluxPipeline does; wrong weights and odd latents are refused by name."""

from __future__ import annotations

import pytest
import tiny_text
import tiny_transformers
import torch
from diffusers import FluxPipeline
from graph_helpers import one_node
from latentgraph.executor import InputError, NodeFailed
from latentgraph.nodes.diffusion.denoiser import TextEmbeds
from latentgraph.nodes.diffusion.math import ArgumentError
from latentgraph.nodes.flux.models import pack, unpack
from latentgraph.nodes.flux.single_file import infer_config
from safetensors.torch import save_file


def load(executor, path: str):
    return executor.run(one_node("LG_LoadDenoiser", path=path), ["1"]).outputs["1"][0]


def inputs():
    gen = torch.Generator().manual_seed(0)
    sample = torch.randn(2, 16, 6, 8, generator=gen)
    return sample, torch.randn(2, 7, 32, generator=gen), torch.randn(2, 32, generator=gen)


def probe(denoiser, guidance: float | None = 4.0) -> torch.Tensor:
    sample, embeds, pooled = inputs()
    return denoiser.forward(sample, torch.tensor(700.0), TextEmbeds(embeds, pooled=pooled, guidance=guidance))


def reference(model, guidance: float = 4.0) -> torch.Tensor:
    """The transformer called as FluxPipeline's denoising loop calls it."""
    sample, embeds, pooled = inputs()
    b, c, h, w = sample.shape
    with torch.no_grad():
        out = model(
            hidden_states=FluxPipeline._pack_latents(sample, b, c, h, w),
            timestep=torch.tensor(700.0).expand(b) / 1000,
            guidance=torch.full([1], guidance).expand(b) if model.config.guidance_embeds else None,
            pooled_projections=pooled,
            encoder_hidden_states=embeds,
            txt_ids=torch.zeros(7, 3),
            img_ids=FluxPipeline._prepare_latent_image_ids(b, h // 2, w // 2, "cpu", torch.float32),
            return_dict=False,
        )[0]
    return FluxPipeline._unpack_latents(out, h * 8, w * 8, 8)


def test_packing_is_the_pipelines():
    latents = torch.randn(2, 16, 6, 8)
    packed = pack(latents)
    assert torch.equal(packed, FluxPipeline._pack_latents(latents, 2, 16, 6, 8))
    assert torch.equal(unpack(packed, 6, 8), latents)


@pytest.mark.parametrize("variant", ["dev", "schnell"])
@pytest.mark.parametrize("layout", ["{v}/transformer", "flux1-{v}.safetensors", "{v}_comfy.safetensors"])
def test_layouts_equal_the_diffusers_model(variant, layout, flux_executor, flux_models):
    denoiser = load(flux_executor, "flux/" + layout.format(v=variant))
    assert torch.equal(probe(denoiser), reference(flux_models[variant]))  # the same arithmetic: bitwise
    assert denoiser.guidance_embeds == (variant == "dev")
    assert denoiser.schedule.is_flow and denoiser.schedule.shift == 1.0
    options = denoiser.plan_options(torch.zeros(1, 16, 64, 64))
    if variant == "dev":  # the releases' schedulers: dev shifts by the resolution, schnell not at all
        mu = pytest.approx(0.5 + 0.65 * (1024 - 256) / 3840)
        assert options == {"time_shift": "exponential", "mu": mu, "sigma_grid": "steps"}
    else:
        assert options == {"sigma_grid": "steps"}


def test_dev_guidance_defaults_to_the_pipelines(flux_executor, flux_models):
    denoiser = load(flux_executor, "flux/dev/transformer")
    assert torch.equal(probe(denoiser, guidance=None), reference(flux_models["dev"], guidance=3.5))
    assert not torch.equal(probe(denoiser, guidance=None), probe(denoiser, guidance=4.0))


@pytest.mark.parametrize("variant", ["dev", "schnell"])
def test_config_is_read_off_the_weights(variant, flux_models):
    model = flux_models[variant]
    inferred = infer_config(tiny_transformers.flux_to_bfl(model), "test")
    assert {k: tuple(v) if isinstance(v, list) else v for k, v in model.config.items() if k in inferred} == {
        k: v for k, v in inferred.items() if k != "out_channels"} | {"out_channels": None}


def test_fp8_weights_are_cast_to_the_compute_dtype(flux_executor):
    denoiser = load(flux_executor, "flux/dev_fp8.safetensors")
    assert denoiser.placement[1] == torch.float32
    rounded = tiny_transformers.flux(seed=0, guidance=True)
    rounded.load_state_dict({k: v.to(torch.float8_e4m3fn).float() for k, v in rounded.state_dict().items()})
    assert torch.equal(probe(denoiser), reference(rounded))


@pytest.mark.parametrize("style", ["legacy", "comfy_quant"])
def test_scaled_fp8_files_load_as_fp8_times_scale(style, flux_executor, flux_root, flux_models):
    """ComfyUI's scaled fp8 checkpoints (each linear weight fp8 / per-tensor scale, wrapped under
    model.diffusion_model.) equal an fp32 file of fp8 x scale: bitwise."""
    original = tiny_transformers.flux_to_bfl(flux_models["dev"])
    scaled, fp32 = tiny_text.save_scaled_fp8_pair(original, flux_root.models / "flux", style)
    assert torch.equal(probe(load(flux_executor, f"flux/{scaled}")), probe(load(flux_executor, f"flux/{fp32}")))


def failure(executor, path: str) -> InputError:
    with pytest.raises(NodeFailed) as info:
        load(executor, path)
    assert isinstance(info.value.error, InputError) and info.value.error.input_name == "path"
    return info.value.error


def test_incomplete_and_extended_files_are_refused(flux_executor, flux_root, flux_models):
    bfl = tiny_transformers.flux_to_bfl(flux_models["schnell"])
    root = flux_root.models / "flux"
    save_file({k: v for k, v in bfl.items() if k != "single_blocks.1.linear2.weight"}, str(root / "cut.safetensors"))
    save_file({**bfl, "double_blocks.0.extra.weight": torch.zeros(2)}, str(root / "extra.safetensors"))
    message = str(failure(flux_executor, "flux/cut.safetensors"))
    assert "cut.safetensors" in message and "single_blocks.1.linear2.weight" in message
    message = str(failure(flux_executor, "flux/extra.safetensors"))
    assert "extra.safetensors" in message and "double_blocks.0.extra.weight" in message


def test_odd_latents_and_foreign_embeddings_are_refused_by_name(flux_executor):
    denoiser = load(flux_executor, "flux/schnell/transformer")
    context = TextEmbeds(torch.zeros(1, 7, 32), pooled=torch.zeros(1, 32))
    with pytest.raises(ArgumentError, match="2x2 patches") as info:
        denoiser.forward(torch.zeros(1, 16, 5, 8), torch.tensor(500.0), context)
    assert info.value.argument == "sample"
    with pytest.raises(ArgumentError, match="multiples of twice the autoencoder") as info:
        denoiser.plan_options(torch.zeros(1, 16, 8, 7))
    assert info.value.argument == "latent"
    sd3_like = TextEmbeds(torch.zeros(1, 333, 32), pooled=torch.zeros(1, 64))
    with pytest.raises(ArgumentError, match="encoded for another model family"):
        denoiser.forward(torch.zeros(1, 16, 8, 8), torch.tensor(500.0), sd3_like)
