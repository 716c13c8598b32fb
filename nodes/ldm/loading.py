"""Loading SD 1.x parts: diffusers pipeline/component folders and single-file LDM checkpoints."""

from __future__ import annotations

from pathlib import Path

import torch

from ..common.components import diffusers_model, folder_config, folder_weights, transformers_model
from ..common.files import CheckpointError, WeightFile, display_name, read_json
from ..common.schedules import SD15, TrainingSchedule, discrete_schedule
from . import single_file as ldm
from .clip import ClipTextEncoder, bundled_tokenizer, folder_tokenizer
from .models import KLAutoencoder, UNetDenoiser

SD_DEFAULT_VAE_CH_MULT = [1, 2, 4, 4]


def model_dtype(device: torch.device) -> torch.dtype:
    """The dtype SD 1.x's parts load in on ``device``: its Family record's, by the one policy."""
    from .family import FAMILY  # (the record refers to this module's loaders)

    return FAMILY.compute_dtype(device)


def scheduler_schedule(folder: Path | None) -> TrainingSchedule:
    """The schedule of ``scheduler/scheduler_config.json`` in a pipeline folder, else SD 1.5's."""
    config_file = folder / "scheduler" / "scheduler_config.json" if folder is not None else None
    if config_file is None or not config_file.is_file():
        return SD15
    return discrete_schedule(read_json(config_file), display_name(config_file))


# --- diffusers folders --------------------------------------------------------------------------


def unet_folder(folder: Path, training: TrainingSchedule, device: torch.device) -> UNetDenoiser:
    from diffusers import UNet2DConditionModel

    config = folder_config(folder)
    unet = diffusers_model(
        UNet2DConditionModel,
        config,
        folder_weights(folder),
        display_name(folder),
        device,
        model_dtype(device),
    )
    return UNetDenoiser(unet, training)


def clip_folder(folder: Path, tokenizer_folder: Path, device: torch.device) -> ClipTextEncoder:
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = folder_tokenizer(tokenizer_folder)
    config = CLIPTextConfig.from_dict(folder_config(folder))
    model = transformers_model(
        CLIPTextModel,
        config,
        folder_weights(folder),
        display_name(folder),
        device,
        model_dtype(device),
    )
    return ClipTextEncoder(model, tokenizer)


def kl_vae_folder(folder: Path, device: torch.device) -> KLAutoencoder:
    from diffusers import AutoencoderKL

    config = folder_config(folder)
    return _kl_vae(AutoencoderKL, config, folder_weights(folder), display_name(folder), device)


def _kl_vae(
    cls: type, config: dict, weights: dict, source: str, device: torch.device
) -> KLAutoencoder:
    # In the U-Net's dtype, as StableDiffusionPipeline runs it (it does not read `force_upcast`,
    # which only SDXL's pipelines honour); KLAutoencoder redoes a non-finite result in fp32.
    dtype = model_dtype(device)
    vae = diffusers_model(cls, config, weights, source, device, dtype)
    return KLAutoencoder(vae, latent_dtype=dtype)


# --- single-file LDM checkpoints ----------------------------------------------------------------


def unet_file(
    weights: WeightFile, device: torch.device, vae_ch_mult: list[int] | None = None
) -> UNetDenoiser:
    from diffusers import UNet2DConditionModel

    name = display_name(weights.path)
    prefix = ldm.UNET_PREFIX if any(k.startswith(ldm.UNET_PREFIX) for k in weights.keys()) else ""
    unet_weights = ldm.strip_prefix(weights.tensors(lambda k: k.startswith(prefix)), prefix)
    if prefix == "" and any(
        not k.startswith(
            ("input_blocks.", "middle_block.", "output_blocks.", "time_embed.", "out.")
        )
        for k in unet_weights
    ):
        raise CheckpointError(f"{name}: holds more than an LDM U-Net")
    config, converted = ldm.unet_from_ldm(unet_weights, vae_ch_mult or SD_DEFAULT_VAE_CH_MULT, name)
    unet = diffusers_model(
        UNet2DConditionModel, config, converted, name, device, model_dtype(device)
    )
    return UNetDenoiser(unet, SD15)


def clip_file(weights: WeightFile, device: torch.device) -> ClipTextEncoder:
    """SD 1.x's text encoder from a single file, with the bundled CLIP tokenizer."""
    from transformers import CLIPTextConfig, CLIPTextModel

    name = display_name(weights.path)
    prefix = ldm.CLIP_PREFIX if any(k.startswith(ldm.CLIP_PREFIX) for k in weights.keys()) else ""
    clip_weights = ldm.strip_prefix(weights.tensors(lambda k: k.startswith(prefix)), prefix)
    kwargs, converted = ldm.clip_from_ldm(clip_weights, name)
    model = transformers_model(
        CLIPTextModel, CLIPTextConfig(**kwargs), converted, name, device, model_dtype(device)
    )
    return ClipTextEncoder(model, bundled_tokenizer())


def vae_file(weights: WeightFile, device: torch.device) -> KLAutoencoder:
    from diffusers import AutoencoderKL

    name = display_name(weights.path)
    prefix = ldm.vae_prefix(weights.keys())
    if prefix is None:
        raise CheckpointError(f"{name}: no LDM autoencoder weights found")
    vae_weights = ldm.strip_prefix(weights.tensors(lambda k: k.startswith(prefix)), prefix)
    # Training leftovers of a standalone VAE file (the discriminator of its GAN loss).
    vae_weights = {k: v for k, v in vae_weights.items() if not k.startswith("loss.")}
    config, converted = ldm.vae_from_ldm(vae_weights, name)
    return _kl_vae(AutoencoderKL, config, converted, name, device)


def vae_ch_mult(weights: WeightFile) -> list[int]:
    """The VAE's channel multipliers (they set the U-Net's default sample size)."""
    prefix = ldm.vae_prefix(weights.keys())
    if prefix is None:
        return SD_DEFAULT_VAE_CH_MULT
    levels = {
        k[len(prefix) :].split(".")[2]
        for k in weights.keys()
        if k.startswith(prefix + "encoder.down.")
    }
    return [1] * len(levels)
