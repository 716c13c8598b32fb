"""Test helper: a diffusers AutoencoderKL state dict in the LDM key layout (the SD 1.x
checkpoints' first_stage_model, FLUX's ae.safetensors), for writing single files from tiny
folder models."""

from __future__ import annotations

import torch

_ATTENTION = {"group_norm.": "norm.", "to_q.": "q.", "to_k.": "k.", "to_v.": "v.", "to_out.0.": "proj_out."}


def diffusers_vae_to_ldm(state: dict[str, torch.Tensor], levels: int, layers: int) -> dict[str, torch.Tensor]:
    """Keys of a VAE of ``levels`` resolutions and ``layers`` resnets per encoder level (the
    decoder has one more) renamed as LDM writes them; attention projections become 1x1 convs."""
    prefixes = {
        "encoder.mid_block.attentions.0.": "encoder.mid.attn_1.",
        "decoder.mid_block.attentions.0.": "decoder.mid.attn_1.",
    }
    for part in ("encoder", "decoder"):
        for j in range(2):
            prefixes[f"{part}.mid_block.resnets.{j}."] = f"{part}.mid.block_{j + 1}."
    top = levels - 1
    for i in range(levels):
        for j in range(layers):
            prefixes[f"encoder.down_blocks.{i}.resnets.{j}."] = f"encoder.down.{i}.block.{j}."
        for j in range(layers + 1):
            prefixes[f"decoder.up_blocks.{i}.resnets.{j}."] = f"decoder.up.{top - i}.block.{j}."
        prefixes[f"encoder.down_blocks.{i}.downsamplers.0."] = f"encoder.down.{i}.downsample."
        prefixes[f"decoder.up_blocks.{i}.upsamplers.0."] = f"decoder.up.{top - i}.upsample."
    out = {}
    for key, value in state.items():
        new = key.replace("conv_shortcut", "nin_shortcut").replace("conv_norm_out", "norm_out")
        for diffusers_prefix, ldm_prefix in prefixes.items():
            if new.startswith(diffusers_prefix):
                rest = new[len(diffusers_prefix) :]
                if "attn_1" in ldm_prefix:
                    for a, b in _ATTENTION.items():
                        rest = b + rest[len(a) :] if rest.startswith(a) else rest
                    if rest.endswith("weight") and value.ndim == 2:
                        value = value[:, :, None, None]  # LDM keeps them as 1x1 convolutions
                new = ldm_prefix + rest
        out[new] = value.detach().clone().contiguous()
    return out
