"""Stable Diffusion 1.x single-file checkpoints (CompVis/LDM key layout) -> diffusers models.

The weights carry no configuration, so the LDM config (the fields of ``v1-inference.yaml``) is
read off the tensor shapes and handed to diffusers' own converters
(``create_*_diffusers_config_from_ldm`` and ``convert_ldm_*_checkpoint``), which work offline.
Two things are conventions of the architecture rather than visible in the weights, and are
fixed as LDM fixes them: GroupNorm with 32 groups everywhere, and 8 attention heads in the SD 1.x
U-Net. CLIP text transformers use 64-dimensional heads (ViT-L/14: 768 = 12 x 64).

The converters copy tensors by name and quietly skip what they do not know, so every function
here checks that each source tensor found a place; ``load_strict`` then checks the other way.
"""

from __future__ import annotations

import re
from typing import Any

from ..common.files import CheckpointError, StateDict

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIXES = ("first_stage_model.", "vae.")
CLIP_PREFIX = "cond_stage_model.transformer."
SD1_NUM_HEADS = 8
CLIP_HEAD_DIM = 64
SD_VAE_SCALING_FACTOR = 0.18215
# Buffers of the LDM training wrapper and of old transformers versions: nothing to load.
IGNORED_CLIP_KEYS = ("text_model.embeddings.position_ids",)


def strip_prefix(state_dict: StateDict, prefix: str) -> StateDict:
    return {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}


def _indices(keys: Any, pattern: str) -> list[int]:
    rx = re.compile(pattern)
    return sorted({int(m.group(1)) for k in keys if (m := rx.match(k))})


def _check_all_used(source: StateDict, converted: StateDict, what: str, name: str) -> None:
    """The diffusers converters map one tensor to one tensor; fewer outputs means skipped keys."""
    if len(converted) != len(source):
        raise CheckpointError(
            f"{name}: {len(source) - len(converted)} {what} tensor(s) have no place in the "
            f"diffusers model; this is not an SD 1.x {what}"
        )


# --- U-Net --------------------------------------------------------------------------------------


def unet_ldm_params(unet: StateDict, name: str) -> dict[str, Any]:
    """The ``unet_config.params`` of an LDM yaml, read off an SD U-Net's tensors."""
    try:
        conv_in = unet["input_blocks.0.0.weight"]
        out_channels = unet["out.2.weight"].shape[0]
    except KeyError as err:
        raise CheckpointError(f"{name}: not an LDM U-Net (missing {err})") from None
    model_channels = conv_in.shape[0]
    blocks = _indices(unet, r"input_blocks\.(\d+)\.")
    downsamplers = [i for i in blocks if f"input_blocks.{i}.0.op.weight" in unet]
    num_res_blocks = (downsamplers[0] - 1) if downsamplers else len(blocks) - 1
    levels = len(downsamplers) + 1
    if num_res_blocks < 1 or len(blocks) != 1 + levels * num_res_blocks + (levels - 1):
        raise CheckpointError(
            f"{name}: U-Net input blocks are not laid out as LDM's (levels x res blocks)"
        )
    channel_mult, attention_resolutions = [], []
    for level in range(levels):
        first = 1 + level * (num_res_blocks + 1)
        channel_mult.append(
            unet[f"input_blocks.{first}.0.out_layers.3.weight"].shape[0] // model_channels
        )
        if f"input_blocks.{first}.1.proj_in.weight" in unet:
            attention_resolutions.append(2**level)
    proj_in = next((v for k, v in unet.items() if k.endswith(".proj_in.weight")), None)
    context = next((v for k, v in unet.items() if k.endswith("attn2.to_k.weight")), None)
    if proj_in is None or context is None:
        raise CheckpointError(
            f"{name}: the U-Net has no cross-attention; not a text-to-image SD U-Net"
        )
    if proj_in.ndim == 2:
        raise CheckpointError(
            f"{name}: linear transformer projections mark an SD 2.x U-Net; only SD 1.x is supported"
        )
    depth = len(_indices(unet, r"input_blocks\.1\.1\.transformer_blocks\.(\d+)\.")) or 1
    return {
        "in_channels": conv_in.shape[1],
        "out_channels": out_channels,
        "model_channels": model_channels,
        "channel_mult": channel_mult,
        "num_res_blocks": num_res_blocks,
        "attention_resolutions": attention_resolutions,
        "num_heads": SD1_NUM_HEADS,
        "context_dim": context.shape[1],
        "transformer_depth": depth,
        "use_linear_in_transformer": False,
    }


def unet_from_ldm(
    unet: StateDict, vae_ch_mult: list[int], name: str
) -> tuple[dict[str, Any], StateDict]:
    """(diffusers UNet2DConditionModel config, converted weights) of an LDM U-Net (no prefix)."""
    from diffusers.loaders.single_file_utils import (
        convert_ldm_unet_checkpoint,
        create_unet_diffusers_config_from_ldm,
    )

    params = unet_ldm_params(unet, name)
    original = {
        "model": {
            "params": {
                "unet_config": {"params": params},
                "first_stage_config": {"params": {"ddconfig": {"ch_mult": vae_ch_mult}}},
            }
        }
    }
    config = create_unet_diffusers_config_from_ldm(original, {})
    converted = convert_ldm_unet_checkpoint({UNET_PREFIX + k: v for k, v in unet.items()}, config)
    _check_all_used(unet, converted, "U-Net", name)
    return config, converted


# --- VAE ----------------------------------------------------------------------------------------


def vae_ldm_ddconfig(vae: StateDict, name: str) -> dict[str, Any]:
    """The ``ddconfig`` of an LDM AutoencoderKL, read off its tensors."""
    try:
        conv_in = vae["encoder.conv_in.weight"]
        z_channels = vae["decoder.conv_in.weight"].shape[1]
        embed_dim = vae["quant_conv.weight"].shape[0] // 2
        out_ch = vae["decoder.conv_out.weight"].shape[0]
    except KeyError as err:
        raise CheckpointError(f"{name}: not an LDM KL autoencoder (missing {err})") from None
    if embed_dim != z_channels:
        raise CheckpointError(f"{name}: embed_dim {embed_dim} differs from z_channels {z_channels}")
    if any(re.match(r"encoder\.down\.\d+\.attn\.", k) for k in vae):
        raise CheckpointError(f"{name}: attention inside the down blocks is not an SD-VAE layout")
    ch = conv_in.shape[0]
    levels = _indices(vae, r"encoder\.down\.(\d+)\.")
    return {
        "in_channels": conv_in.shape[1],
        "out_ch": out_ch,
        "ch": ch,
        "z_channels": z_channels,
        "ch_mult": [vae[f"encoder.down.{i}.block.0.conv2.weight"].shape[0] // ch for i in levels],
        "num_res_blocks": len(_indices(vae, r"encoder\.down\.0\.block\.(\d+)\.")),
    }


def vae_from_ldm(
    vae: StateDict, name: str, scaling_factor: float | None = None
) -> tuple[dict[str, Any], StateDict]:
    """(diffusers AutoencoderKL config, converted weights) of an LDM VAE (no prefix)."""
    from diffusers.loaders.single_file_utils import (
        convert_ldm_vae_checkpoint,
        create_vae_diffusers_config_from_ldm,
    )

    ddconfig = vae_ldm_ddconfig(vae, name)
    original = {"model": {"params": {"first_stage_config": {"params": {"ddconfig": ddconfig}}}}}
    config = create_vae_diffusers_config_from_ldm(
        original, {}, scaling_factor=scaling_factor or SD_VAE_SCALING_FACTOR
    )
    converted = convert_ldm_vae_checkpoint(vae, config)
    _check_all_used(vae, converted, "VAE", name)
    return config, converted


def vae_prefix(keys: Any) -> str | None:
    """The prefix under which a file holds an LDM VAE ("" for a bare VAE file), or None."""
    for prefix in (*VAE_PREFIXES, ""):
        if f"{prefix}encoder.down.0.block.0.conv1.weight" in keys:
            return prefix
    return None


# --- CLIP text encoder --------------------------------------------------------------------------


def clip_from_ldm(clip: StateDict, name: str) -> tuple[dict[str, Any], StateDict]:
    """(transformers CLIPTextConfig kwargs, weights) of SD 1.x's OpenAI CLIP ViT-L/14 text
    transformer (keys below ``cond_stage_model.transformer.``, with or without ``text_model.``)."""
    weights = {k if k.startswith("text_model.") else "text_model." + k: v for k, v in clip.items()}
    weights = {k: v for k, v in weights.items() if k not in IGNORED_CLIP_KEYS}
    try:
        vocab, hidden = weights["text_model.embeddings.token_embedding.weight"].shape
        positions = weights["text_model.embeddings.position_embedding.weight"].shape[0]
        intermediate = weights["text_model.encoder.layers.0.mlp.fc1.weight"].shape[0]
    except KeyError as err:
        raise CheckpointError(f"{name}: not a CLIP text transformer (missing {err})") from None
    config = {
        "vocab_size": vocab,
        "hidden_size": hidden,
        "intermediate_size": intermediate,
        "num_hidden_layers": len(_indices(weights, r"text_model\.encoder\.layers\.(\d+)\.")),
        "num_attention_heads": max(1, hidden // CLIP_HEAD_DIM),
        "max_position_embeddings": positions,
        "hidden_act": "quick_gelu",  # OpenAI CLIP; SD 1.x uses it
    }
    return config, weights
