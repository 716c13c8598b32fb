"""Recognising what a weight file holds from its key names alone (cheap: a safetensors header).

Each layout is named by a few marker keys that only it has. Layouts of families we do not load
are recognised too, so that a wrong file gets a message saying what it is.
"""

from __future__ import annotations

from collections.abc import Collection

# layout -> (description, marker keys that must all be present)
LAYOUTS: dict[str, tuple[str, tuple[str, ...]]] = {
    # Stable Diffusion 1.x single file (CompVis/LDM): each part under its own prefix.
    "ldm_unet": ("an LDM (SD 1.x) U-Net", ("model.diffusion_model.input_blocks.0.0.weight",)),
    "ldm_unet_bare": ("an LDM (SD 1.x) U-Net", ("input_blocks.0.0.weight", "out.2.weight")),
    "ldm_clip": ("SD 1.x's CLIP text encoder", ("cond_stage_model.transformer.",)),
    "ldm_vae": ("an LDM KL autoencoder (SD-VAE)", ("encoder.down.0.block.0.conv1.weight",)),
    # diffusers / transformers key layouts (a config.json is needed beside them).
    "diffusers_unet": (
        "a diffusers UNet2DConditionModel",
        ("conv_in.weight", "time_embedding.linear_1.weight"),
    ),
    "diffusers_vae": (
        "a diffusers AutoencoderKL",
        ("encoder.down_blocks.0.resnets.0.conv1.weight",),
    ),
    "diffusers_dcae": (
        "a diffusers AutoencoderDC",
        ("decoder.norm_out.weight", "decoder.up_blocks."),
    ),
    "diffusers_sana": (
        "a diffusers SanaTransformer2DModel",
        ("patch_embed.proj.weight", "caption_projection.linear_1.weight"),
    ),
    "clip_text": ("a CLIP text transformer", ("text_model.embeddings.token_embedding.weight",)),
    "gemma": ("a Gemma text model", ("embed_tokens.weight", "layers.0.self_attn.q_proj.weight")),
    # Original research-code layouts.
    "efficientvit_dcae": ("an MIT efficientvit DC-AE", ("encoder.project_in.", "decoder.stages.")),
    "nvlabs_sana": (
        "an NVlabs SANA DiT",
        ("x_embedder.proj.weight", "blocks.0.mlp.inverted_conv.conv.weight"),
    ),
    # Other families, recognised only to say so.
    "sdxl": ("an SDXL checkpoint", ("conditioner.embedders.",)),
    "sd2": ("an SD 2.x checkpoint (OpenCLIP text encoder)", ("cond_stage_model.model.",)),
    "pixart": ("a PixArt DiT", ("x_embedder.proj.weight", "blocks.0.mlp.fc1.weight")),
    "flux": ("a Flux transformer", ("double_blocks.0.img_attn.qkv.weight",)),
    "sd3": ("an SD3 MMDiT", ("joint_blocks.0.x_block.attn.qkv.weight",)),
    "var": ("a VAR transformer", ("class_emb.weight", "lvl_1L")),
    "vqvae": ("a VQVAE", ("quantize.embedding.weight",)),
}


def _has(keys: Collection[str], marker: str, prefixes: tuple[str, ...]) -> bool:
    for prefix in prefixes:
        full = prefix + marker
        if full.endswith("."):
            if any(k.startswith(full) for k in keys):
                return True
        elif full in keys:
            return True
    return False


def detect(keys: Collection[str]) -> set[str]:
    """Every layout whose markers a key set holds. Markers may sit under the usual wrappers
    (``model.``, ``vae.``, ``first_stage_model.``, ``model.diffusion_model.``)."""
    keys = set(keys)
    found = set()
    for name, (_, markers) in LAYOUTS.items():
        prefixes = (
            ("",)
            if name.startswith(("ldm_unet", "ldm_clip", "sd"))
            else ("", "model.", "vae.", "first_stage_model.", "model.diffusion_model.")
        )
        if all(_has(keys, m, prefixes) for m in markers):
            found.add(name)
    return found


def describe(layouts: Collection[str]) -> str:
    """'an SDXL checkpoint and a VQVAE' for a set of layouts; 'unrecognised weights' if none."""
    names = sorted({LAYOUTS[n][0] for n in layouts})
    if not names:
        return "weights of no layout latentgraph knows"
    return " and ".join(names)
