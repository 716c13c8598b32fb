"""Tiny SD3 / SD3.5 and FLUX.1 transformers with seeded random weights, built with diffusers'
own classes, and writers of the single-file key layouts users have (Stability's MMDiT keys,
Black Forest Labs' FLUX keys), written here by hand from the layouts' facts as the inverse of
the loaders' maps: a wrong writer or a wrong loader makes the strict load fail.

The widths follow the releases' conventions at toy size, which the single-file loaders rely on to
infer a config from shapes: SD3's MMDiT has as many heads as layers (its inner width is 64 x depth
in the releases) and that width is its caption projection; FLUX's RoPE axes split its head width
1 : 3.5 : 3.5 (16, 56, 56 of 128).
"""

from __future__ import annotations

import torch
from diffusers import FluxTransformer2DModel, SD3Transformer2DModel

#: The SD3 architectures the tiny MM-DiTs come in.
SD3_VARIANTS = ("sd3", "sd35_large", "sd35_medium")
#: Text widths of the tiny text encoders the transformers are conditioned on (CLIP-L, CLIP-G, T5).
CLIP_L, CLIP_G, T5 = 32, 32, 32


def sd3(
    seed: int = 0,
    variant: str = "sd3",
    in_channels: int = 16,
    joint_attention_dim: int = T5,
    pooled_projection_dim: int = CLIP_L + CLIP_G,
) -> SD3Transformer2DModel:
    """SD3-medium's architecture (variant "sd3"), SD3.5-large's (QK RMS norm, "sd35_large") or
    SD3.5-medium's (QK norm and dual attention in the first layer, "sd35_medium"), 2 layers."""
    torch.manual_seed(seed)
    extra = {
        "sd3": {},
        "sd35_large": {"qk_norm": "rms_norm"},
        "sd35_medium": {"qk_norm": "rms_norm", "dual_attention_layers": (0,)},
    }[variant]
    return SD3Transformer2DModel(
        sample_size=16,
        patch_size=2,
        in_channels=in_channels,
        out_channels=in_channels,
        num_layers=2,
        attention_head_dim=8,
        num_attention_heads=2,
        joint_attention_dim=joint_attention_dim,
        caption_projection_dim=16,
        pooled_projection_dim=pooled_projection_dim,
        pos_embed_max_size=16,
        **extra,
    ).eval()


def flux(
    seed: int = 0,
    guidance: bool = True,
    latent_channels: int = 16,
    joint_attention_dim: int = T5,
    pooled_projection_dim: int = CLIP_L,
) -> FluxTransformer2DModel:
    """FLUX.1-dev's architecture (guidance embedding) or schnell's (none): 2 double-stream and 2
    single-stream blocks over 2x2-packed latents."""
    torch.manual_seed(seed)
    return FluxTransformer2DModel(
        patch_size=1,
        in_channels=latent_channels * 4,
        out_channels=None,
        num_layers=2,
        num_single_layers=2,
        attention_head_dim=32,
        num_attention_heads=2,
        joint_attention_dim=joint_attention_dim,
        pooled_projection_dim=pooled_projection_dim,
        guidance_embeds=guidance,
        axes_dims_rope=(4, 14, 14),
    ).eval()


def _shift_scale(weight: torch.Tensor) -> torch.Tensor:
    """diffusers' AdaLayerNormContinuous splits (scale, shift); the original code (shift, scale)."""
    scale, shift = weight.chunk(2, dim=0)
    return torch.cat([shift, scale], dim=0)


def _qkv(state: dict, prefix: str, names: tuple[str, str, str], kind: str) -> torch.Tensor:
    return torch.cat([state[f"{prefix}{n}.{kind}"] for n in names])


# --- diffusers -> Stability's MMDiT keys (SD3, SD3.5) ------------------------------------------------


def sd3_to_original(model: SD3Transformer2DModel) -> dict[str, torch.Tensor]:
    """The state dict of ``model`` in the layout of sd3_medium.safetensors / sd3.5_*.safetensors
    (without their ``model.diffusion_model.`` prefix)."""
    s = model.state_dict()
    layers = model.config.num_layers
    out = {
        "pos_embed": s["pos_embed.pos_embed"],
        "x_embedder.proj.weight": s["pos_embed.proj.weight"],
        "x_embedder.proj.bias": s["pos_embed.proj.bias"],
        "context_embedder.weight": s["context_embedder.weight"],
        "context_embedder.bias": s["context_embedder.bias"],
        "final_layer.linear.weight": s["proj_out.weight"],
        "final_layer.linear.bias": s["proj_out.bias"],
        "final_layer.adaLN_modulation.1.weight": _shift_scale(s["norm_out.linear.weight"]),
        "final_layer.adaLN_modulation.1.bias": _shift_scale(s["norm_out.linear.bias"]),
    }
    for ours, theirs in (("timestep_embedder", "t_embedder"), ("text_embedder", "y_embedder")):
        for i, j in ((1, 0), (2, 2)):
            for kind in ("weight", "bias"):
                out[f"{theirs}.mlp.{j}.{kind}"] = s[f"time_text_embed.{ours}.linear_{i}.{kind}"]
    for i in range(layers):
        b, o = f"transformer_blocks.{i}.", f"joint_blocks.{i}."
        last = i == layers - 1
        for kind in ("weight", "bias"):
            out[f"{o}x_block.attn.qkv.{kind}"] = _qkv(s, b + "attn.", ("to_q", "to_k", "to_v"), kind)
            out[f"{o}context_block.attn.qkv.{kind}"] = _qkv(
                s, b + "attn.", ("add_q_proj", "add_k_proj", "add_v_proj"), kind
            )
            out[f"{o}x_block.attn.proj.{kind}"] = s[f"{b}attn.to_out.0.{kind}"]
            out[f"{o}x_block.adaLN_modulation.1.{kind}"] = s[f"{b}norm1.linear.{kind}"]
            context_mod = s[f"{b}norm1_context.linear.{kind}"]
            out[f"{o}context_block.adaLN_modulation.1.{kind}"] = (
                _shift_scale(context_mod) if last else context_mod
            )
            out[f"{o}x_block.mlp.fc1.{kind}"] = s[f"{b}ff.net.0.proj.{kind}"]
            out[f"{o}x_block.mlp.fc2.{kind}"] = s[f"{b}ff.net.2.{kind}"]
            if not last:
                out[f"{o}context_block.attn.proj.{kind}"] = s[f"{b}attn.to_add_out.{kind}"]
                out[f"{o}context_block.mlp.fc1.{kind}"] = s[f"{b}ff_context.net.0.proj.{kind}"]
                out[f"{o}context_block.mlp.fc2.{kind}"] = s[f"{b}ff_context.net.2.{kind}"]
            if f"{b}attn2.to_q.weight" in s:
                out[f"{o}x_block.attn2.qkv.{kind}"] = _qkv(
                    s, b + "attn2.", ("to_q", "to_k", "to_v"), kind
                )
                out[f"{o}x_block.attn2.proj.{kind}"] = s[f"{b}attn2.to_out.0.{kind}"]
        if f"{b}attn.norm_q.weight" in s:
            for ours, theirs in (("norm_q", "ln_q"), ("norm_k", "ln_k")):
                out[f"{o}x_block.attn.{theirs}.weight"] = s[f"{b}attn.{ours}.weight"]
            for ours, theirs in (("norm_added_q", "ln_q"), ("norm_added_k", "ln_k")):
                out[f"{o}context_block.attn.{theirs}.weight"] = s[f"{b}attn.{ours}.weight"]
            if f"{b}attn2.norm_q.weight" in s:
                for ours, theirs in (("norm_q", "ln_q"), ("norm_k", "ln_k")):
                    out[f"{o}x_block.attn2.{theirs}.weight"] = s[f"{b}attn2.{ours}.weight"]
    return {k: v.contiguous() for k, v in out.items()}


# --- diffusers -> Black Forest Labs' FLUX keys ----------------------------------------------------


def flux_to_bfl(model: FluxTransformer2DModel) -> dict[str, torch.Tensor]:
    """The state dict of ``model`` in the layout of flux1-dev.safetensors / flux1-schnell."""
    s = model.state_dict()
    out: dict[str, torch.Tensor] = {
        "img_in.weight": s["x_embedder.weight"],
        "img_in.bias": s["x_embedder.bias"],
        "txt_in.weight": s["context_embedder.weight"],
        "txt_in.bias": s["context_embedder.bias"],
        "final_layer.linear.weight": s["proj_out.weight"],
        "final_layer.linear.bias": s["proj_out.bias"],
        "final_layer.adaLN_modulation.1.weight": _shift_scale(s["norm_out.linear.weight"]),
        "final_layer.adaLN_modulation.1.bias": _shift_scale(s["norm_out.linear.bias"]),
    }
    embedders = [("timestep_embedder", "time_in"), ("text_embedder", "vector_in")]
    if model.config.guidance_embeds:
        embedders.append(("guidance_embedder", "guidance_in"))
    for ours, theirs in embedders:
        for i, name in ((1, "in_layer"), (2, "out_layer")):
            for kind in ("weight", "bias"):
                out[f"{theirs}.{name}.{kind}"] = s[f"time_text_embed.{ours}.linear_{i}.{kind}"]
    for i in range(model.config.num_layers):
        b, o = f"transformer_blocks.{i}.", f"double_blocks.{i}."
        for kind in ("weight", "bias"):
            out[f"{o}img_mod.lin.{kind}"] = s[f"{b}norm1.linear.{kind}"]
            out[f"{o}txt_mod.lin.{kind}"] = s[f"{b}norm1_context.linear.{kind}"]
            out[f"{o}img_attn.qkv.{kind}"] = _qkv(s, b + "attn.", ("to_q", "to_k", "to_v"), kind)
            out[f"{o}txt_attn.qkv.{kind}"] = _qkv(
                s, b + "attn.", ("add_q_proj", "add_k_proj", "add_v_proj"), kind
            )
            out[f"{o}img_attn.proj.{kind}"] = s[f"{b}attn.to_out.0.{kind}"]
            out[f"{o}txt_attn.proj.{kind}"] = s[f"{b}attn.to_add_out.{kind}"]
            for j in (0, 2):
                out[f"{o}img_mlp.{j}.{kind}"] = s[f"{b}ff.net.{'0.proj' if j == 0 else 2}.{kind}"]
                out[f"{o}txt_mlp.{j}.{kind}"] = s[
                    f"{b}ff_context.net.{'0.proj' if j == 0 else 2}.{kind}"
                ]
        out[f"{o}img_attn.norm.query_norm.scale"] = s[f"{b}attn.norm_q.weight"]
        out[f"{o}img_attn.norm.key_norm.scale"] = s[f"{b}attn.norm_k.weight"]
        out[f"{o}txt_attn.norm.query_norm.scale"] = s[f"{b}attn.norm_added_q.weight"]
        out[f"{o}txt_attn.norm.key_norm.scale"] = s[f"{b}attn.norm_added_k.weight"]
    for i in range(model.config.num_single_layers):
        b, o = f"single_transformer_blocks.{i}.", f"single_blocks.{i}."
        for kind in ("weight", "bias"):
            out[f"{o}modulation.lin.{kind}"] = s[f"{b}norm.linear.{kind}"]
            out[f"{o}linear1.{kind}"] = torch.cat(
                [s[f"{b}attn.to_{x}.{kind}"] for x in "qkv"] + [s[f"{b}proj_mlp.{kind}"]]
            )
            out[f"{o}linear2.{kind}"] = s[f"{b}proj_out.{kind}"]
        out[f"{o}norm.query_norm.scale"] = s[f"{b}attn.norm_q.weight"]
        out[f"{o}norm.key_norm.scale"] = s[f"{b}attn.norm_k.weight"]
    return {k: v.contiguous() for k, v in out.items()}


# --- whole tiny pipelines (with the tiny text encoders and VAE of tiny_text) -----------------------

#: SD3 pads its CLIP-L + CLIP-G states to T5's width, so its tiny T5 is as wide as both.
SD3_T5 = CLIP_L + CLIP_G


def sd3_pipeline(variant: str = "sd35_medium", seed: int = 0):
    """A StableDiffusion3Pipeline of tiny seeded parts (the transformer of ``variant``)."""
    import tiny_text
    from diffusers import StableDiffusion3Pipeline

    return StableDiffusion3Pipeline(
        transformer=sd3(seed, variant, joint_attention_dim=SD3_T5),
        scheduler=tiny_text.scheduler(),
        vae=tiny_text.vae16(factors=tiny_text.SD3_FACTORS),
        text_encoder=tiny_text.clip_l(),
        tokenizer=tiny_text.clip_tokenizer(),
        text_encoder_2=tiny_text.clip_g(),
        tokenizer_2=tiny_text.clip_tokenizer("!"),
        text_encoder_3=tiny_text.t5(width=SD3_T5),
        tokenizer_3=tiny_text.t5_tokenizer(),
    )


def flux_scheduler(dev: bool):
    """FLUX.1-dev's scheduler config (dynamic shifting), or schnell's (no shift)."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    if not dev:
        return FlowMatchEulerDiscreteScheduler(shift=1.0, use_dynamic_shifting=False)
    return FlowMatchEulerDiscreteScheduler(
        shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
        base_image_seq_len=256, max_image_seq_len=4096,
    )


def flux_pipeline(dev: bool = True, seed: int = 0):
    """A FluxPipeline of tiny seeded parts: dev (guidance embedding, dynamic shift) or schnell."""
    import tiny_text
    from diffusers import FluxPipeline

    return FluxPipeline(
        transformer=flux(seed, guidance=dev),
        scheduler=flux_scheduler(dev),
        vae=tiny_text.vae16(factors=tiny_text.FLUX_FACTORS),
        text_encoder=tiny_text.clip_l(projection=False),
        tokenizer=tiny_text.clip_tokenizer(),
        text_encoder_2=tiny_text.t5(),
        tokenizer_2=tiny_text.t5_tokenizer(),
    )
