"""NVlabs SANA checkpoints (``.pth`` {"state_dict": ...} or safetensors, the key layout of the
official training code) -> diffusers SanaTransformer2DModel.

Renaming is diffusers' own ``convert_sana_transformer_to_diffusers`` (it pops what it maps, so
anything left over is a tensor with no place: we refuse the file). The config is read off the
shapes. Two numbers are not visible in the weights: self-attention heads are 32 channels wide in
every SANA release, and the cross-attention head count is a per-release choice, looked up by width
(600M: 1152 = 16 x 72; 1600M and 4.8B: 2240 = 20 x 112) or taken from a ``config.json`` beside the
file (diffusers' SanaTransformer2DModel config).
"""

from __future__ import annotations

import math
import re
from typing import Any

import torch

from ..common.files import CheckpointError, StateDict

PREFIX = "model.diffusion_model."
SELF_ATTENTION_HEAD_DIM = 32
CROSS_ATTENTION_HEADS = {1152: 16, 2240: 20}
# As diffusers' convert_sana_to_diffusers.py: only the 2K and 4K models use positional embeddings.
INTERPOLATION_SCALE = {16: None, 32: None, 64: 1.0, 128: 2.0}
# Buffers of the training code the diffusers model does not keep: the fixed sin-cos position
# table (recomputed when needed) and the learned null caption used for CFG dropout in training.
DROPPED = ("pos_embed", "y_embedder.y_embedding")


def _layers(weights: StateDict) -> int:
    indices = {int(m.group(1)) for k in weights if (m := re.match(r"blocks\.(\d+)\.", k))}
    if not indices or indices != set(range(max(indices) + 1)):
        raise CheckpointError("the transformer blocks are not numbered 0..N-1")
    return len(indices)


def infer_config(weights: StateDict, name: str) -> dict[str, Any]:
    """SanaTransformer2DModel config from NVlabs tensors (no cross-attention head count)."""
    try:
        patch = weights["x_embedder.proj.weight"]
        out_proj = weights["final_layer.linear.weight"]
        caption = weights["y_embedder.y_proj.fc1.weight"]
        inverted = weights["blocks.0.mlp.inverted_conv.conv.weight"]
    except KeyError as err:
        raise CheckpointError(f"{name}: not an NVlabs SANA checkpoint (missing {err})") from None
    inner, in_channels, p = patch.shape[0], patch.shape[1], patch.shape[2]
    sample_size = 32
    if "pos_embed" in weights and weights["pos_embed"].ndim == 3:
        sample_size = math.isqrt(weights["pos_embed"].shape[1]) * p
    qk_norm = "rms_norm_across_heads" if "blocks.0.attn.q_norm.weight" in weights else None
    return {
        "in_channels": in_channels,
        "out_channels": out_proj.shape[0] // (p * p),
        "num_attention_heads": inner // SELF_ATTENTION_HEAD_DIM,
        "attention_head_dim": SELF_ATTENTION_HEAD_DIM,
        "num_layers": _layers(weights),
        "cross_attention_dim": inner,
        "caption_channels": caption.shape[1],
        "mlp_ratio": inverted.shape[0] / 2 / inner,
        "sample_size": sample_size,
        "patch_size": p,
        "interpolation_scale": INTERPOLATION_SCALE.get(sample_size),
        "qk_norm": qk_norm,
    }


def transformer_from_nvlabs(
    weights: StateDict, name: str, sidecar: dict[str, Any] | None
) -> tuple[dict[str, Any], StateDict]:
    """(diffusers config, converted weights) of an NVlabs SANA state dict."""
    from diffusers.loaders.single_file_utils import convert_sana_transformer_to_diffusers

    weights = {k.removeprefix(PREFIX): v for k, v in weights.items()}
    if any(k.startswith("guidance_embedder.") or ".guidance" in k for k in weights):
        raise CheckpointError(
            f"{name}: guidance-distilled SANA (Sprint) checkpoints are not supported"
        )
    config = infer_config(weights, name)
    if sidecar is not None:
        config.update({k: v for k, v in sidecar.items() if not k.startswith("_")})
    elif config["cross_attention_dim"] in CROSS_ATTENTION_HEADS:
        heads = CROSS_ATTENTION_HEADS[config["cross_attention_dim"]]
        config.update(
            num_cross_attention_heads=heads,
            cross_attention_head_dim=config["cross_attention_dim"] // heads,
        )
    else:
        raise CheckpointError(
            f"{name}: a SANA DiT of width {config['cross_attention_dim']} is no known release, so its "
            "cross-attention head count is unknown; put its diffusers config.json beside the file"
        )
    source = dict(weights)
    qk_norms = _pop_qk_norms(source, config["num_layers"])
    for key in DROPPED:  # the converter pops these unconditionally
        source.setdefault(key, torch.empty(0))
    converted = convert_sana_transformer_to_diffusers(source)
    if source:
        raise CheckpointError(
            f"{name}: {len(source)} tensor(s) have no place in a SANA DiT, e.g. "
            f"{', '.join(sorted(source)[:3])}"
        )
    return config, {**converted, **qk_norms}


def _pop_qk_norms(weights: StateDict, layers: int) -> StateDict:
    """SANA 1.5's RMS query/key norms, which diffusers' converter leaves out."""
    out = {}
    for i in range(layers):
        for src, dst in (("attn", "attn1"), ("cross_attn", "attn2")):
            for qk in ("q", "k"):
                key = f"blocks.{i}.{src}.{qk}_norm.weight"
                if key in weights:
                    out[f"transformer_blocks.{i}.{dst}.norm_{qk}.weight"] = weights.pop(key)
    return out
