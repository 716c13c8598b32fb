"""SD3 / SD3.5 as a family of the shared loaders: its MM-DiT's single-file and diffusers key
layouts, the classes of its component folders, and which of them make up a
StableDiffusion3Pipeline folder. The text encoders and the 16-channel VAE are the MM-DiT
families' shared parts (``nodes.mmdit.layouts``); this record lists their single-file layouts,
and comes before SD 1.x's in the node pack's family order so that a CLIP or VAE file fitting both
goes to these loaders (the MM-DiT CLIP layout needs the text projection SD 1.x's CLIP lacks, the
16-channel VAE layout the absence of SD-VAE's quant convs)."""

from __future__ import annotations

from typing import Any

import torch

from ..common.components import folder_config
from ..common.families import Component, Family, Layout, ModelFolder
from ..mmdit import layouts as mmdit
from . import loading
from .models import SD3Denoiser


def _transformer(folder: ModelFolder, device: torch.device) -> SD3Denoiser:
    return loading.transformer_folder(folder.path, folder.pipeline, device)


def _autoencoder(folder: ModelFolder, device: torch.device) -> Any:
    """An AutoencoderKL folder: the 16-channel VAE (a shift factor, no quant convs) in an SD3
    pipeline or on its own; any other (SD-VAE) on its own is SD 1.x's, read by its loader as
    before this family existed."""
    config = folder_config(folder.path)
    sd_vae = config.get("shift_factor") is None and config.get("use_quant_conv", True)
    if folder.pipeline is None and sd_vae:
        from ..ldm.family import FAMILY as SD1

        return SD1.components["AutoencoderKL"].load(folder, device)
    return mmdit.VAE16_COMPONENT.load(folder, device)


FAMILY = Family(
    name="sd3",
    title="Stable Diffusion 3",
    layouts=(
        Layout(
            "sd3_mmdit",
            "an SD3 / SD3.5 MM-DiT",
            ("joint_blocks.0.x_block.attn.qkv.weight", "x_embedder.proj.weight"),
            part="denoiser",
            load=loading.mmdit_file,
        ),
        Layout(
            "diffusers_sd3",
            "a diffusers SD3Transformer2DModel",
            ("transformer_blocks.0.attn.add_q_proj.weight", "pos_embed.proj.weight"),
            part="denoiser",
        ),
        *mmdit.TEXT_ENCODER_LAYOUTS,
        *mmdit.AUTOENCODER_LAYOUTS,
    ),
    components={
        "SD3Transformer2DModel": Component("denoiser", _transformer),
        "CLIPTextModelWithProjection": mmdit.SD3_TEXT_COMPONENT,
        "T5EncoderModel": mmdit.T5_COMPONENT,
        "AutoencoderKL": Component("autoencoder", _autoencoder),
    },
    pipeline={
        "denoiser": ("transformer", "SD3Transformer2DModel"),
        "text_encoder": ("text_encoder", "CLIPTextModelWithProjection"),
        "autoencoder": ("vae", "AutoencoderKL"),
    },
    half=torch.float16,  # StableDiffusion3Pipeline's documented dtype
    reads={
        "denoiser": "an SD3 / SD3.5 MM-DiT (diffusers folder, or Stability's single file)",
        "text_encoder": "CLIP-L, CLIP-G and T5 for SD3 / FLUX (files, folders, or bundled in a checkpoint)",
        "autoencoder": "the 16-channel SD3 / FLUX VAE (diffusers folder, ae.safetensors, or bundled)",
    },
)
