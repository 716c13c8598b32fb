"""Black Forest Labs' single-file FLUX.1 transformer (flux1-dev.safetensors, flux1-schnell, and the
same keys under ComfyUI's ``model.diffusion_model.``): its diffusers config inferred from key
names and shapes, its keys mapped to FluxTransformer2DModel's, every key accounted for.

The map (BFL -> diffusers): img_in/txt_in -> x_embedder/context_embedder; time_in, vector_in and
(dev only) guidance_in -> time_text_embed's timestep/text/guidance embedders (in_layer ->
linear_1, out_layer -> linear_2); double_blocks.N -> transformer_blocks.N with the fused
img_attn/txt_attn qkv split into to_q/k/v and add_q/k/v_proj, their QK norms' ``scale`` ->
``weight``, the modulations img_mod/txt_mod -> norm1/norm1_context, the MLPs img_mlp/txt_mlp ->
ff/ff_context; single_blocks.N -> single_transformer_blocks.N with linear1 split into q, k, v and
the MLP input (proj_mlp), linear2 -> proj_out, modulation -> norm; final_layer's adaLN
modulation swapped from (shift, scale) to diffusers' (scale, shift).

What the shapes say: depths (double_blocks, single_blocks), the inner width (img_in's output),
the latent channels (img_in's input: 4C for 2x2 packing), the head width (the QK norm's size), the
text widths (txt_in's input: T5's 4096; vector_in's: CLIP-L's 768) and the guidance embedding
(guidance_in present: dev). The RoPE axes follow the release's split of the head width, 1 : 3.5 :
3.5 (16, 56, 56 of 128); the MLP is 4x wide in every release (checked).
"""

from __future__ import annotations

from typing import Any

import torch

from ..common.files import CheckpointError, StateDict

PREFIX = "model.diffusion_model."

_EMBEDDERS = {"time_in": "timestep_embedder", "vector_in": "text_embedder", "guidance_in": "guidance_embedder"}
_LAYERS = {"in_layer": "linear_1", "out_layer": "linear_2"}


def flux_weights(state: StateDict) -> StateDict:
    """The transformer's own keys of a file that may bundle text encoders and a VAE (ComfyUI)."""
    if any(k.startswith(PREFIX) for k in state):
        return {k[len(PREFIX) :]: v for k, v in state.items() if k.startswith(PREFIX)}
    return dict(state)


def _count(state: StateDict, prefix: str) -> int:
    indices = {int(k.split(".")[1]) for k in state if k.startswith(prefix)}
    return max(indices) + 1 if indices else 0


def infer_config(state: StateDict, source: str) -> dict[str, Any]:
    try:
        img_in = state["img_in.weight"]
        head_dim = int(state["double_blocks.0.img_attn.norm.query_norm.scale"].shape[0])
        txt_in = state["txt_in.weight"]
        vector_in = state["vector_in.in_layer.weight"]
        out_channels = int(state["final_layer.linear.weight"].shape[0])
    except KeyError as err:
        raise CheckpointError(f"{source}: not a complete FLUX transformer (missing {err})") from None
    inner = int(img_in.shape[0])
    if inner % head_dim or head_dim % 8:
        raise CheckpointError(f"{source}: a FLUX transformer of shapes latentgraph cannot infer a config for")
    side = head_dim * 7 // 16
    return {
        "patch_size": 1,
        "in_channels": int(img_in.shape[1]),
        "out_channels": out_channels,
        "num_layers": _count(state, "double_blocks."),
        "num_single_layers": _count(state, "single_blocks."),
        "attention_head_dim": head_dim,
        "num_attention_heads": inner // head_dim,
        "joint_attention_dim": int(txt_in.shape[1]),
        "pooled_projection_dim": int(vector_in.shape[1]),
        "guidance_embeds": "guidance_in.in_layer.weight" in state,
        "axes_dims_rope": (head_dim - 2 * side, side, side),
    }


def _swap(weight: torch.Tensor) -> torch.Tensor:
    shift, scale = weight.chunk(2, dim=0)
    return torch.cat([scale, shift], dim=0)


class _Reader:
    """Takes keys out of the BFL state dict, so that what is left at the end is what no map read."""

    def __init__(self, state: StateDict, source: str) -> None:
        self.state, self.source, self.out = dict(state), source, {}

    def take(self, key: str) -> torch.Tensor:
        try:
            return self.state.pop(key)
        except KeyError:
            raise CheckpointError(f"{self.source}: not a complete FLUX transformer (missing {key})") from None

    def move(self, theirs: str, ours: str, kinds: tuple[str, ...] = ("weight", "bias")) -> None:
        for kind in kinds:
            self.out[f"{ours}.{kind}"] = self.take(f"{theirs}.{kind}")

    def split(self, theirs: str, ours: list[str], sizes: list[int]) -> None:
        for kind in ("weight", "bias"):
            tensor = self.take(f"{theirs}.{kind}")
            if tensor.shape[0] != sum(sizes):
                raise CheckpointError(
                    f"{self.source}: {theirs}.{kind} has {tensor.shape[0]} rows where {sum(sizes)} are needed"
                )
            for name, part in zip(ours, torch.split(tensor, sizes, dim=0), strict=True):
                self.out[f"{name}.{kind}"] = part


def bfl_to_diffusers(state: StateDict, source: str) -> tuple[dict[str, Any], StateDict]:
    """(diffusers config, diffusers state dict) of a BFL FLUX state dict."""
    state = flux_weights(state)
    config = infer_config(state, source)
    inner = config["attention_head_dim"] * config["num_attention_heads"]
    r = _Reader(state, source)
    r.move("img_in", "x_embedder")
    r.move("txt_in", "context_embedder")
    for theirs, ours in _EMBEDDERS.items():
        if theirs == "guidance_in" and not config["guidance_embeds"]:
            continue
        for layer, linear in _LAYERS.items():
            r.move(f"{theirs}.{layer}", f"time_text_embed.{ours}.{linear}")
    for i in range(config["num_layers"]):
        o, b = f"double_blocks.{i}.", f"transformer_blocks.{i}."
        r.move(o + "img_mod.lin", b + "norm1.linear")
        r.move(o + "txt_mod.lin", b + "norm1_context.linear")
        r.split(o + "img_attn.qkv", [b + "attn.to_q", b + "attn.to_k", b + "attn.to_v"], [inner] * 3)
        r.split(
            o + "txt_attn.qkv",
            [b + "attn.add_q_proj", b + "attn.add_k_proj", b + "attn.add_v_proj"],
            [inner] * 3,
        )
        for stream, q, k in (("img_attn", "norm_q", "norm_k"), ("txt_attn", "norm_added_q", "norm_added_k")):
            r.out[f"{b}attn.{q}.weight"] = r.take(f"{o}{stream}.norm.query_norm.scale")
            r.out[f"{b}attn.{k}.weight"] = r.take(f"{o}{stream}.norm.key_norm.scale")
        r.move(o + "img_attn.proj", b + "attn.to_out.0")
        r.move(o + "txt_attn.proj", b + "attn.to_add_out")
        for stream, ff in (("img_mlp", "ff"), ("txt_mlp", "ff_context")):
            r.move(f"{o}{stream}.0", f"{b}{ff}.net.0.proj")
            r.move(f"{o}{stream}.2", f"{b}{ff}.net.2")
    for i in range(config["num_single_layers"]):
        o, b = f"single_blocks.{i}.", f"single_transformer_blocks.{i}."
        r.move(o + "modulation.lin", b + "norm.linear")
        r.split(
            o + "linear1",
            [b + "attn.to_q", b + "attn.to_k", b + "attn.to_v", b + "proj_mlp"],
            [inner] * 3 + [4 * inner],
        )
        r.out[f"{b}attn.norm_q.weight"] = r.take(f"{o}norm.query_norm.scale")
        r.out[f"{b}attn.norm_k.weight"] = r.take(f"{o}norm.key_norm.scale")
        r.move(o + "linear2", b + "proj_out")
    r.move("final_layer.linear", "proj_out")
    for kind in ("weight", "bias"):
        r.out[f"norm_out.linear.{kind}"] = _swap(r.take(f"final_layer.adaLN_modulation.1.{kind}"))
    if r.state:
        keys = sorted(r.state)
        raise CheckpointError(
            f"{source}: {len(keys)} key(s) of no FLUX transformer part (e.g. {', '.join(keys[:3])})"
        )
    return config, r.out
