"""Stable Diffusion 1.x as a family of the shared loaders: the key layouts of its single files
(CompVis/LDM checkpoints and standalone parts), the diffusers/transformers classes of its folders,
and which of them make up a StableDiffusionPipeline folder."""

from __future__ import annotations

import torch

from ..common.families import Component, Family, Layout, ModelFolder
from ..common.files import WeightFile
from . import loading as ldm
from .clip import ClipTextEncoder
from .models import KLAutoencoder, UNetDenoiser


def _unet(folder: ModelFolder, device: torch.device) -> UNetDenoiser:
    return ldm.unet_folder(folder.path, ldm.scheduler_schedule(folder.pipeline), device)


def _clip(folder: ModelFolder, device: torch.device) -> ClipTextEncoder:
    return ldm.clip_folder(folder.path, folder.tokenizer(), device)


def _vae(folder: ModelFolder, device: torch.device) -> KLAutoencoder:
    return ldm.kl_vae_folder(folder.path, device)


def _unet_file(weights: WeightFile, device: torch.device) -> UNetDenoiser:
    return ldm.unet_file(weights, device, ldm.vae_ch_mult(weights))


FAMILY = Family(
    name="sd1",
    title="Stable Diffusion 1.x",
    layouts=(
        # The single-file checkpoint: each part under its own prefix.
        Layout(
            "ldm_unet",
            "an LDM (SD 1.x) U-Net",
            ("model.diffusion_model.input_blocks.0.0.weight",),
            wrapped=False,
            part="denoiser",
            load=_unet_file,
        ),
        Layout(
            "ldm_unet_bare",
            "an LDM (SD 1.x) U-Net",
            ("input_blocks.0.0.weight", "out.2.weight"),
            wrapped=False,
            part="denoiser",
            load=_unet_file,
        ),
        Layout(
            "ldm_clip",
            "SD 1.x's CLIP text encoder",
            ("cond_stage_model.transformer.",),
            wrapped=False,
            part="text_encoder",
            load=ldm.clip_file,
        ),
        Layout(
            "ldm_vae",
            "an LDM KL autoencoder (SD-VAE)",
            ("encoder.down.0.block.0.conv1.weight",),
            part="autoencoder",
            load=ldm.vae_file,
        ),
        Layout(
            "clip_text",
            "a CLIP text transformer",
            ("text_model.embeddings.token_embedding.weight",),
            part="text_encoder",
            load=ldm.clip_file,
        ),
        # diffusers key layouts: a config.json is needed beside them.
        Layout(
            "diffusers_unet",
            "a diffusers UNet2DConditionModel",
            ("conv_in.weight", "time_embedding.linear_1.weight"),
            part="denoiser",
        ),
        Layout(
            "diffusers_vae",
            "a diffusers AutoencoderKL",
            ("encoder.down_blocks.0.resnets.0.conv1.weight",),
            part="autoencoder",
        ),
    ),
    components={
        "UNet2DConditionModel": Component("denoiser", _unet),
        "CLIPTextModel": Component("text_encoder", _clip),
        "AutoencoderKL": Component("autoencoder", _vae),
    },
    pipeline={
        "denoiser": ("unet", "UNet2DConditionModel"),
        "text_encoder": ("text_encoder", "CLIPTextModel"),
        "autoencoder": ("vae", "AutoencoderKL"),
    },
    half=torch.float16,  # as StableDiffusionPipeline runs on a GPU
    reads={
        "denoiser": "an SD 1.x U-Net (diffusers folder or LDM keys)",
        "text_encoder": "CLIP for SD 1.x (tokenizer files from the folder; single files use the "
        "bundled CLIP vocabulary)",
        "autoencoder": "SD-VAE (AutoencoderKL; diffusers folder or LDM keys with or without the "
        "first_stage_model./vae. prefix)",
    },
)
