"""The 16-channel KL autoencoder of SD3 / SD3.5 and FLUX.1 (AutoencoderKL with a shift factor).

Both pipelines keep latents shifted and scaled: ``encode`` gives ``(z - shift) * scale`` (SD3's
img2img ``retrieve_latents`` path) and ``decode`` takes ``latents / scale + shift`` back to the
VAE (both pipelines' last step). FLUX.1's VAE uses scale 0.3611, shift 0.1159; SD3's 1.5305,
0.0609; a diffusers folder says which in its config.json. The two share one architecture (128
channels x (1, 2, 4, 4), two res blocks a level, z = 16, no quant convs), so a single LDM/BFL
file (``ae.safetensors``: ``encoder.down.0.block.0...`` keys) is told apart only by where it is:
inside an SD3 checkpoint it is SD3's, on its own or beside a FLUX transformer it is FLUX's.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from ..common.components import diffusers_model, folder_config, folder_weights
from ..common.families import compute_dtype
from ..common.files import CheckpointError, StateDict, WeightFile, display_name
from ..ldm.models import KLAutoencoder

# (scaling_factor, shift_factor) of each family's VAE config.json.
FLUX_VAE_FACTORS = (0.3611, 0.1159)
SD3_VAE_FACTORS = (1.5305, 0.0609)
VAE_PREFIXES = ("first_stage_model.", "vae.", "")
#: the half precision the MM-DiT parts run in on a GPU (FLUX.1 and SD3.5 run in bf16; T5 and
#: the 16-channel VAE overflow fp16 on some inputs).
MMDIT_HALF = torch.bfloat16
LDM_NORM_GROUPS = 32


class ShiftedKLAutoencoder(KLAutoencoder):
    """The 16-channel AutoencoderKL of SD3 and FLUX; :class:`KLAutoencoder` applies its config's
    ``shift_factor`` (0 where it has none, which is SD-VAE's arithmetic exactly)."""

    kind = "kl-vae-16"


def vae_dtype(device: torch.device) -> torch.dtype:
    return compute_dtype(device, MMDIT_HALF)


def _vae(config: dict[str, Any], weights: StateDict, source: str, device: torch.device) -> Any:
    from diffusers import AutoencoderKL

    dtype = vae_dtype(device)
    model = diffusers_model(AutoencoderKL, config, weights, source, device, dtype)
    return ShiftedKLAutoencoder(model, latent_dtype=dtype)


def vae16_folder(folder: Path, device: torch.device) -> ShiftedKLAutoencoder:
    """A diffusers ``vae/`` folder (AutoencoderKL; its config's scaling and shift factors)."""
    config = folder_config(folder)
    return _vae(config, folder_weights(folder), display_name(folder), device)


# --- LDM / BFL key layout -----------------------------------------------------------------------


def _indices(keys: Any, pattern: str) -> list[int]:
    rx = re.compile(pattern)
    return sorted({int(m.group(1)) for k in keys if (m := rx.match(k))})


def vae16_config(vae: StateDict, name: str, factors: tuple[float, float]) -> dict[str, Any]:
    """The diffusers AutoencoderKL config of an LDM-layout KL VAE (no prefix), read off its
    tensors: quant convs only where the file has them (FLUX's and SD3's have none)."""
    try:
        conv_in = vae["encoder.conv_in.weight"]
        z_channels = vae["decoder.conv_in.weight"].shape[1]
        out_channels = vae["decoder.conv_out.weight"].shape[0]
    except KeyError as err:
        raise CheckpointError(f"{name}: not an LDM KL autoencoder (missing {err})") from None
    ch = conv_in.shape[0]
    levels = _indices(vae, r"encoder\.down\.(\d+)\.")
    try:
        mult = [vae[f"encoder.down.{i}.block.0.conv2.weight"].shape[0] // ch for i in levels]
    except KeyError as err:
        raise CheckpointError(f"{name}: not an LDM KL autoencoder (missing {err})") from None
    scaling, shift = factors
    return {
        "_class_name": "AutoencoderKL",
        "in_channels": conv_in.shape[1],
        "out_channels": out_channels,
        "down_block_types": ["DownEncoderBlock2D"] * len(levels),
        "up_block_types": ["UpDecoderBlock2D"] * len(levels),
        "block_out_channels": [ch * m for m in mult],
        "layers_per_block": len(_indices(vae, r"encoder\.down\.0\.block\.(\d+)\.")),
        "latent_channels": z_channels,
        "norm_num_groups": LDM_NORM_GROUPS,
        "act_fn": "silu",
        "sample_size": 1024,
        "scaling_factor": scaling,
        "shift_factor": shift,
        "use_quant_conv": "quant_conv.weight" in vae,
        "use_post_quant_conv": "post_quant_conv.weight" in vae,
        "mid_block_add_attention": "encoder.mid.attn_1.q.weight" in vae,
        "force_upcast": True,
    }


def vae16_from_ldm(
    vae: StateDict, name: str, factors: tuple[float, float]
) -> tuple[dict[str, Any], StateDict]:
    """(diffusers config, converted weights) of an LDM/BFL-layout 16-channel VAE."""
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    config = vae16_config(vae, name, factors)
    converted = convert_ldm_vae_checkpoint(vae, config)
    if len(converted) != len(vae):  # the converter skips what it does not know
        raise CheckpointError(
            f"{name}: {len(vae) - len(converted)} VAE tensor(s) have no place in AutoencoderKL; "
            "this is not an LDM KL autoencoder"
        )
    return config, converted


def vae16_prefix(keys: Any) -> str | None:
    """The prefix under which a file holds an LDM-layout VAE, or None."""
    keys = set(keys)
    for prefix in VAE_PREFIXES:
        if f"{prefix}encoder.down.0.block.0.conv1.weight" in keys:
            return prefix
    return None


def file_factors(keys: Any) -> tuple[float, float]:
    """SD3's factors for the VAE inside an SD3 checkpoint (its MM-DiT's joint blocks or its
    CLIP-G beside it), FLUX's otherwise (``ae.safetensors`` is FLUX's)."""
    sd3 = ("joint_blocks.", "text_encoders.clip_g.")
    if any(k.startswith(sd3) or ".joint_blocks." in k for k in keys):
        return SD3_VAE_FACTORS
    return FLUX_VAE_FACTORS


def vae16_file(weights: WeightFile, device: torch.device) -> ShiftedKLAutoencoder:
    """The 16-channel VAE of a single file: ``ae.safetensors`` or inside a checkpoint."""
    name = display_name(weights.path)
    keys = weights.keys()
    prefix = vae16_prefix(keys)
    if prefix is None:
        raise CheckpointError(f"{name}: no LDM autoencoder weights found")
    owned = ("encoder.", "decoder.", "quant_conv.", "post_quant_conv.")
    tensors = weights.tensors(lambda k: k.startswith(prefix) and k[len(prefix) :].startswith(owned))
    vae = {k[len(prefix) :]: v for k, v in tensors.items()}
    latent = vae["decoder.conv_in.weight"].shape[1] if "decoder.conv_in.weight" in vae else None
    if latent != 16:
        raise CheckpointError(
            f"{name}: a {latent}-channel autoencoder, not the 16-channel VAE of SD3 and FLUX"
        )
    config, converted = vae16_from_ldm(vae, name, file_factors(keys))
    return _vae(config, converted, name, device)
