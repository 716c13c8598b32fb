"""Stability's single-file MM-DiT (sd3_medium.safetensors, sd3.5_medium / sd3.5_large, and the
same keys under ComfyUI's ``model.diffusion_model.``): its diffusers config inferred from the key
names and shapes, its keys converted by diffusers' own converter, every key accounted for.

What the shapes say: depth (joint_blocks), patch size and channels (x_embedder.proj), the inner
width and caption projection (context_embedder's output), the text widths (context_embedder's
input: T5's 4096; y_embedder's input: pooled CLIP-L + CLIP-G, 2048), the positional-embedding grid
(pos_embed), QK norm (ln_q present; SD3.5 uses RMS norm) with the head width (ln_q's size), and
SD3.5-medium's dual attention layers (x_block.attn2). Without QK norm the heads follow the MMDiT
convention the releases keep: as many heads as layers (SD3-medium: 24 of 64 wide).
"""

from __future__ import annotations

import math
from typing import Any

from ..common.files import CheckpointError, StateDict

PREFIX = "model.diffusion_model."


def mmdit_weights(state: StateDict) -> StateDict:
    """The MM-DiT's own keys of a file that may bundle text encoders and a VAE (ComfyUI)."""
    if any(k.startswith(PREFIX) for k in state):
        return {k[len(PREFIX) :]: v for k, v in state.items() if k.startswith(PREFIX)}
    return dict(state)


def infer_config(state: StateDict, source: str) -> dict[str, Any]:
    try:
        depth = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("joint_blocks."))
        proj = state["x_embedder.proj.weight"]
        inner, in_channels, patch = int(proj.shape[0]), int(proj.shape[1]), int(proj.shape[2])
        context = state["context_embedder.weight"]
        out_channels = int(state["final_layer.linear.weight"].shape[0]) // (patch * patch)
        positions = int(state["pos_embed"].shape[1])
        pooled = int(state["y_embedder.mlp.0.weight"].shape[1])
    except (KeyError, ValueError, IndexError) as err:
        raise CheckpointError(f"{source}: not a complete SD3 MM-DiT (missing {err})") from None
    ln_q = state.get("joint_blocks.0.x_block.attn.ln_q.weight")
    head_dim = int(ln_q.shape[0]) if ln_q is not None else inner // depth
    grid = math.isqrt(positions)
    if grid * grid != positions or inner % head_dim:
        raise CheckpointError(f"{source}: an SD3 MM-DiT of shapes latentgraph cannot infer a config for")
    dual = sorted(
        {int(k.split(".")[1]) for k in state if k.startswith("joint_blocks.") and ".x_block.attn2." in k}
    )
    return {
        "sample_size": 128,
        "patch_size": patch,
        "in_channels": in_channels,
        "out_channels": out_channels,
        "num_layers": depth,
        "attention_head_dim": head_dim,
        "num_attention_heads": inner // head_dim,
        "joint_attention_dim": int(context.shape[1]),
        "caption_projection_dim": int(context.shape[0]),
        "pooled_projection_dim": pooled,
        "pos_embed_max_size": grid,
        "dual_attention_layers": tuple(dual),
        "qk_norm": "rms_norm" if ln_q is not None else None,
    }


def mmdit_to_diffusers(state: StateDict, source: str) -> tuple[dict[str, Any], StateDict]:
    """(diffusers config, diffusers state dict) of an original MM-DiT state dict; a key the
    conversion leaves unread is an error (another model's weights must not load half-way)."""
    from diffusers.loaders.single_file_utils import convert_sd3_transformer_checkpoint_to_diffusers

    state = mmdit_weights(state)
    config = infer_config(state, source)
    remaining = dict(state)  # the converter pops what it reads
    try:
        converted = convert_sd3_transformer_checkpoint_to_diffusers(remaining)
    except (KeyError, RuntimeError, ValueError) as err:
        raise CheckpointError(f"{source}: not a complete SD3 MM-DiT (missing {err})") from None
    if remaining:
        keys = sorted(remaining)
        raise CheckpointError(
            f"{source}: {len(keys)} key(s) of no SD3 MM-DiT part (e.g. {', '.join(keys[:3])})"
        )
    return config, converted
