"""The same tiny SANA weights in the NVlabs and MIT efficientvit layouts load strictly and give
outputs identical to the diffusers-folder copy; unknown configurations are refused clearly."""

from __future__ import annotations

import pytest
import sana_tiny
import torch
from graph_helpers import Graph, one_node
from latentgraph.executor import InputError, NodeFailed
from latentgraph.nodes.diffusion.denoiser import TextEmbeds
from latentgraph.nodes.sana.nvlabs import infer_config


def load(executor, class_type: str, path: str):
    return executor.run(one_node(class_type, path=path), ["1"]).outputs["1"][0]


def denoiser_probe(denoiser) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    sample = torch.randn(2, 8, 8, 8, generator=gen)
    mask = torch.ones(2, 300, dtype=torch.int64)
    mask[:, 20:] = 0
    return denoiser.forward(
        sample, torch.tensor(700), TextEmbeds(torch.randn(2, 300, 32, generator=gen), mask)
    )


def autoencoder_probe(ae) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    pixels = torch.rand(1, 3, 16, 16, generator=gen) * 2 - 1
    latent = torch.randn(1, ae.latent_channels, 8, 8, generator=gen)
    return torch.cat([ae.encode(pixels, None).flatten(), ae.decode(latent).flatten()])


@pytest.mark.parametrize(
    "path", ["sana/nvlabs/Sana_tiny.pth", "sana/tiny/transformer", "sana/tiny"]
)
def test_denoiser_layouts_equal_folder(path, sana_executor):
    reference = load(sana_executor, "LG_LoadCheckpoint", "sana/tiny")
    denoiser = load(sana_executor, "LG_LoadDenoiser", path)
    assert torch.equal(denoiser_probe(denoiser), denoiser_probe(reference))
    assert denoiser.schedule.is_flow and denoiser.schedule.shift == 3.0


def test_nvlabs_config_is_read_off_the_weights(sana_components):
    nvlabs = sana_tiny.transformer_to_nvlabs(
        sana_components["transformer"].state_dict(), sana_tiny.IMAGE
    )
    inferred = infer_config(nvlabs, "test")
    expected = sana_components["transformer"].config
    assert {k: expected[k] for k in inferred} == inferred


def test_unknown_dit_width_needs_its_config(sana_executor):
    with pytest.raises(NodeFailed) as info:
        load(sana_executor, "LG_LoadDenoiser", "sana/nvlabs_no_config.safetensors")
    error = info.value.error
    assert isinstance(error, InputError) and error.input_name == "path"
    assert "nvlabs_no_config.safetensors" in str(error) and "cross-attention head count" in str(
        error
    )


def test_sana_dcae_from_efficientvit_equals_folder(sana_executor):
    reference = load(sana_executor, "LG_LoadAutoencoder", "sana/tiny/vae")
    for path in ("sana/dc-ae-sana/model.safetensors", "sana/dc-ae-sana"):
        ae = load(sana_executor, "LG_LoadAutoencoder", path)
        assert (ae.kind, ae.latent_channels, ae.scaling_factor, ae.downsample) == (
            "dc-ae",
            8,
            0.41407,
            2,
        )
        assert torch.equal(autoencoder_probe(ae), autoencoder_probe(reference))


def test_sana_dcae_structure_gives_its_scaling_factor(sana_executor):
    """Without a config the factor of the release with SANA's structure is used... only for an
    f32c32 model; our toy one (f2c8) must bring its config."""
    with pytest.raises(NodeFailed, match="scaling factor"):
        load(sana_executor, "LG_LoadAutoencoder", "sana/dc-ae-sana.safetensors")


def test_mix_style_dcae_from_efficientvit(sana_executor, mix_dcae):
    """Pixel-(un)shuffle sampling, BatchNorm ResBlocks and an empty first stage are read off the
    weights too; outputs equal diffusers' model."""
    ae = load(sana_executor, "LG_LoadAutoencoder", "sana/dc-ae-mix/model.safetensors")
    config = ae.vae.config
    assert (
        config.upsample_block_type == "pixel_shuffle"
        and config.downsample_block_type == "pixel_unshuffle"
    )
    assert list(config.decoder_norm_types) == ["batch_norm", "batch_norm", "rms_norm"]
    gen = torch.Generator().manual_seed(0)
    pixels = torch.rand(1, 3, 16, 16, generator=gen) * 2 - 1
    with torch.no_grad():
        expected = mix_dcae.decode(mix_dcae.encode(pixels).latent).sample
        ours = ae.vae.decode(ae.vae.encode(pixels).latent).sample
    # Bitwise on some CPUs; 7e-7 on others, where oneDNN picks another convolution kernel for
    # the loaded weights: within the 1e-5 fp32 bound of the family's parity tests.
    assert (ours - expected).abs().max().item() <= 1e-5


def test_checkpoint_parts_and_latents(sana_executor):
    g = Graph()
    checkpoint = g.node("LG_LoadCheckpoint", id="1", path="sana/tiny")
    g.node("LG_EmptyLatent", id="2", autoencoder=g.output(checkpoint, "autoencoder"), width=64, height=32, batch=2)
    latent = sana_executor.run(g.build(), ["2"]).outputs["2"][0]["samples"]
    assert latent.shape == (2, 8, 16, 32) and latent.dtype == torch.float32 and not latent.any()


def test_text_encoder_folder_without_tokenizer(sana_root, sana_executor):
    import shutil

    broken = sana_root.models / "sana" / "gemma_alone"
    shutil.copytree(sana_root.models / "sana" / "tiny" / "text_encoder", broken)
    with pytest.raises(NodeFailed) as info:
        load(sana_executor, "LG_LoadTextEncoder", "sana/gemma_alone")
    assert "gemma_alone" in str(info.value.error) and "tokenizer" in str(info.value.error)
