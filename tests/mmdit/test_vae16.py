"""The 16-channel VAE of SD3 and FLUX: decoding equals the pipelines' own decode path (their
output_type="latent" latents, then their image), encoding equals SD3 img2img's shifted and scaled
posterior sample, bitwise in fp32 on the CPU (the same modules and the same two arithmetic
operations in the same order); BFL's ae.safetensors and an SD3 checkpoint's VAE (LDM keys) load
strictly and decode as their folder copies, with each family's factors."""

from __future__ import annotations

import pytest
import tiny_text as tt
import torch
from diffusers.pipelines.stable_diffusion_3.pipeline_stable_diffusion_3_img2img import (
    retrieve_latents,
)
from graph_helpers import Graph
from latentgraph.executor import InputError, NodeFailed
from latentgraph.executor.pixels import pixels_to_image
from latentgraph.nodes.common.files import WeightFile
from latentgraph.nodes.mmdit.autoencoder import FLUX_VAE_FACTORS, SD3_VAE_FACTORS
from latentgraph.nodes.mmdit.layouts import VAE16_FILE
from safetensors.torch import save_file
from tiny_text import PROMPT

# The tiny models' session fixtures (text_pipes, text_root, text_executor), shared by the modules.
pytest_plugins = ["tiny_text"]


def load(executor, path: str):
    g = Graph()
    g.node("LG_LoadAutoencoder", id="1", path=path)
    return executor.run(g.build(), ["1"]).outputs["1"][0]


def generate(pipe, output_type: str, **kwargs):
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        return pipe(
            PROMPT,
            num_inference_steps=1,
            height=tt.IMAGE,
            width=tt.IMAGE,
            generator=generator,
            output_type=output_type,
            **kwargs,
        ).images


def test_sd3_decode_equals_the_pipeline(text_pipes, text_executor):
    pipe = text_pipes["sd3"]
    latents = generate(pipe, "latent", guidance_scale=1.0)
    image = generate(pipe, "pt", guidance_scale=1.0)
    ae = load(text_executor, "sd3")
    assert (ae.scaling_factor, ae.shift_factor) == SD3_VAE_FACTORS
    assert (ae.latent_channels, ae.downsample) == (16, 2)
    ours = pixels_to_image(ae.decode(latents))
    assert torch.equal(ours, image.permute(0, 2, 3, 1))


def test_flux_decode_equals_the_pipeline(text_pipes, text_executor):
    pipe = text_pipes["flux"]
    packed = generate(pipe, "latent", guidance_scale=3.5)
    latents = pipe._unpack_latents(packed, tt.IMAGE, tt.IMAGE, pipe.vae_scale_factor)
    image = generate(pipe, "pt", guidance_scale=3.5)
    ae = load(text_executor, "flux")
    assert (ae.scaling_factor, ae.shift_factor) == FLUX_VAE_FACTORS
    assert torch.equal(pixels_to_image(ae.decode(latents)), image.permute(0, 2, 3, 1))


def test_encode_equals_sd3_img2img(text_pipes, text_executor):
    """StableDiffusion3Img2ImgPipeline.prepare_latents: (retrieve_latents(vae.encode(image),
    generator) - shift) * scale; the mode likewise without a generator."""
    vae = text_pipes["sd3"].vae
    pixels = (
        torch.rand(1, 3, tt.IMAGE, tt.IMAGE, generator=torch.Generator().manual_seed(1)) * 2 - 1
    )
    ae = load(text_executor, "sd3")
    with torch.no_grad():
        sample = retrieve_latents(vae.encode(pixels), torch.Generator().manual_seed(3))
        mode = retrieve_latents(vae.encode(pixels), sample_mode="argmax")
    scale, shift = SD3_VAE_FACTORS
    ours = ae.encode(pixels, torch.Generator().manual_seed(3))
    assert torch.equal(ours, (sample - shift) * scale)
    assert torch.equal(ae.encode(pixels, None, sample=False), (mode - shift) * scale)


@pytest.mark.parametrize(
    ("path", "folder", "factors"),
    [
        ("files/ae.safetensors", "flux", FLUX_VAE_FACTORS),
        ("files/sd3_all_in_one.safetensors", "sd3", SD3_VAE_FACTORS),
    ],
)
def test_ldm_files_equal_their_folders(text_executor, path, folder, factors):
    ours, theirs = load(text_executor, path), load(text_executor, f"{folder}/vae")
    assert (ours.scaling_factor, ours.shift_factor) == factors
    latents = torch.randn(1, 16, 8, 8, generator=torch.Generator().manual_seed(2))
    assert torch.equal(ours.decode(latents), theirs.decode(latents))
    pixels = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(4)) * 2 - 1
    assert torch.equal(
        ours.encode(pixels, None, sample=False), theirs.encode(pixels, None, sample=False)
    )
    assert {k: v.shape for k, v in ours.vae.state_dict().items()} == {
        k: v.shape for k, v in theirs.vae.state_dict().items()
    }


def test_an_sd_vae_is_not_read_as_the_16_channel_one(text_pipes, text_root, text_executor):
    """SD-VAE files keep their quant convs (SD 1.x's loader reads them); a 4-channel VAE
    without them is refused by name."""
    sd_vae = tt.vae16_to_ldm(tt.vae16().state_dict())
    sd_vae["quant_conv.weight"] = torch.zeros(32, 32, 1, 1)
    assert not VAE16_FILE.found_in(sd_vae)
    small = tt.vae16_to_ldm(text_pipes["flux"].vae.state_dict())
    small["decoder.conv_in.weight"] = small["decoder.conv_in.weight"][:, :4].contiguous()
    save_file(small, str(text_root.models / "files" / "vae4.safetensors"))
    assert VAE16_FILE.found_in(WeightFile(text_root.models / "files" / "vae4.safetensors").keys())
    g = Graph()
    g.node("LG_LoadAutoencoder", id="1", path="files/vae4.safetensors")
    with pytest.raises(NodeFailed) as info:
        text_executor.run(g.build(), ["1"])
    error = info.value.error
    assert isinstance(error, InputError) and error.input_name == "path"
    assert "vae4.safetensors" in str(error) and "4-channel" in str(error)


def test_tiled_decode_is_the_shifted_tiled_decode(text_pipes, text_executor):
    """Tiling (LG_AutoencoderDecode's for large images) decodes the same shifted latents:
    AutoencoderKL.tiled_decode of latents / scale + shift, tiles and all."""
    vae = text_pipes["flux"].vae
    latents = torch.randn(1, 16, 24, 24, generator=torch.Generator().manual_seed(5))
    ae = load(text_executor, "flux")
    scale, shift = FLUX_VAE_FACTORS
    with torch.no_grad():
        expected = vae.tiled_decode(latents / scale + shift, return_dict=False)[0]
    assert latents.shape[-1] > vae.tile_latent_min_size  # more than one tile
    assert torch.equal(ae.decode(latents, tiled=True), expected)
