"""SANA as a family of the shared loaders: the key layouts of its research checkpoints (NVlabs
DiT, MIT efficientvit DC-AE), the diffusers/transformers classes of its folders, and which of them
make up a SanaPipeline folder."""

from __future__ import annotations

import torch

from ..common.families import Component, Family, Layout, ModelFolder
from . import loading as sana
from .models import DCAutoencoder, GemmaTextEncoder, SanaDenoiser


def _transformer(folder: ModelFolder, device: torch.device) -> SanaDenoiser:
    return sana.transformer_folder(folder.path, sana.scheduler_schedule(folder.pipeline), device)


def _gemma(folder: ModelFolder, device: torch.device) -> GemmaTextEncoder:
    return sana.gemma_folder(folder.path, folder.tokenizer(), device)


def _dcae(folder: ModelFolder, device: torch.device) -> DCAutoencoder:
    return sana.dcae_folder(folder.path, device)


FAMILY = Family(
    name="sana",
    title="SANA",
    layouts=(
        # Original research-code layouts.
        Layout(
            "efficientvit_dcae",
            "an MIT efficientvit DC-AE",
            ("encoder.project_in.", "decoder.stages."),
            part="autoencoder",
            load=sana.efficientvit_file,
        ),
        Layout(
            "nvlabs_sana",
            "an NVlabs SANA DiT",
            ("x_embedder.proj.weight", "blocks.0.mlp.inverted_conv.conv.weight"),
            part="denoiser",
            load=sana.nvlabs_file,
        ),
        # diffusers / transformers key layouts: a config.json is needed beside them.
        Layout(
            "diffusers_dcae",
            "a diffusers AutoencoderDC",
            ("decoder.norm_out.weight", "decoder.up_blocks."),
            part="autoencoder",
        ),
        Layout(
            "diffusers_sana",
            "a diffusers SanaTransformer2DModel",
            ("patch_embed.proj.weight", "caption_projection.linear_1.weight"),
            part="denoiser",
        ),
        Layout(
            "gemma",
            "a Gemma text model",
            ("embed_tokens.weight", "layers.0.self_attn.q_proj.weight"),
            part="text_encoder",
        ),
    ),
    components={
        "SanaTransformer2DModel": Component("denoiser", _transformer),
        "Gemma2Model": Component("text_encoder", _gemma),
        "Gemma2ForCausalLM": Component("text_encoder", _gemma),
        "AutoencoderDC": Component("autoencoder", _dcae),
    },
    pipeline={
        "denoiser": ("transformer", "SanaTransformer2DModel"),
        "text_encoder": ("text_encoder", "Gemma2Model"),
        "autoencoder": ("vae", "AutoencoderDC"),
    },
    half=torch.bfloat16,  # SANA and Gemma-2 were trained in it; their activations overflow fp16
    reads={
        "denoiser": "a SANA DiT (diffusers folder, or NVlabs .pth/.safetensors keys)",
        "text_encoder": "Gemma-2 for SANA",
        "autoencoder": "DC-AE (diffusers folder or MIT efficientvit keys)",
    },
)
