"""A tiny Stable Diffusion 1.x with seeded random weights, saved in every layout we load.

The models have SD 1.x's architecture conventions (GroupNorm 32, 8 U-Net heads, 64-dim CLIP heads,
quick-GELU, full 49408-token CLIP vocabulary) at toy widths, so the single-file loader's config
inference applies to them unchanged. The LDM-layout writers below are the inverse of diffusers'
single-file conversion, generalised from scripts/convert_diffusers_to_original_stable_diffusion.py
to any number of levels; if they were wrong, diffusers' own converter would fail to map the keys
back and the strict load would refuse the file.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from latentgraph.nodes.ldm.clip import bundled_tokenizer
from transformers import CLIPTextConfig, CLIPTextModel
from vae_keys import diffusers_vae_to_ldm

# runwayml/stable-diffusion-v1-5 scheduler_config.json (diffusers writes the spacing explicitly).
SD15_SCHEDULER = {
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
    "clip_sample": False,
}
UNET_LAYERS = 1  # resnets per level (SD 1.x has 2)
LEVELS = 2
IMAGE = 32  # pixels; the VAE downsamples by 2 ** (LEVELS - 1)


def build_components(seed: int = 0) -> dict:
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=IMAGE // 2,
        in_channels=4,
        out_channels=4,
        layers_per_block=UNET_LAYERS,
        block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=64,
        attention_head_dim=8,
        norm_num_groups=32,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * LEVELS,
        up_block_types=("UpDecoderBlock2D",) * LEVELS,
        norm_num_groups=32,
        sample_size=IMAGE,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=49408,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=1,
            max_position_embeddings=77,
            hidden_act="quick_gelu",
            bos_token_id=49406,
            eos_token_id=49407,
            pad_token_id=49407,
        )
    )
    return {
        "unet": unet.eval(),
        "vae": vae.eval(),
        "text_encoder": text_encoder.eval(),
        "tokenizer": bundled_tokenizer(),
        "scheduler": PNDMScheduler.from_config(SD15_SCHEDULER),
    }


def save_pipeline(components: dict, folder: Path) -> None:
    pipe = StableDiffusionPipeline(
        **components, safety_checker=None, feature_extractor=None, requires_safety_checker=False
    )
    pipe.save_pretrained(folder)


# --- diffusers -> LDM (CompVis) keys ------------------------------------------------------------

_UNET_TOP = {
    "time_embedding.linear_1.": "time_embed.0.",
    "time_embedding.linear_2.": "time_embed.2.",
    "conv_in.": "input_blocks.0.0.",
    "conv_norm_out.": "out.0.",
    "conv_out.": "out.2.",
}
_UNET_RESNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "time_emb_proj": "emb_layers.1",
    "conv_shortcut": "skip_connection",
}


def unet_to_ldm(state: dict, up_attention: list[bool]) -> dict:
    r = UNET_LAYERS + 1
    prefixes = {"mid_block.attentions.0.": "middle_block.1."}
    for j in range(2):
        prefixes[f"mid_block.resnets.{j}."] = f"middle_block.{2 * j}."
    for i in range(LEVELS):
        for j in range(UNET_LAYERS):
            prefixes[f"down_blocks.{i}.resnets.{j}."] = f"input_blocks.{r * i + j + 1}.0."
            prefixes[f"down_blocks.{i}.attentions.{j}."] = f"input_blocks.{r * i + j + 1}.1."
        prefixes[f"down_blocks.{i}.downsamplers.0.conv."] = f"input_blocks.{r * (i + 1)}.0.op."
        for j in range(r):
            prefixes[f"up_blocks.{i}.resnets.{j}."] = f"output_blocks.{r * i + j}.0."
            prefixes[f"up_blocks.{i}.attentions.{j}."] = f"output_blocks.{r * i + j}.1."
        prefixes[f"up_blocks.{i}.upsamplers.0."] = (
            f"output_blocks.{r * i + r - 1}.{2 if up_attention[i] else 1}."
        )
    out = {}
    for key, value in state.items():
        new = key
        for hf, sd in _UNET_TOP.items():
            if key.startswith(hf):
                new = sd + key[len(hf) :]
        for hf, sd in prefixes.items():
            if key.startswith(hf):
                rest = key[len(hf) :]
                if ".resnets." in hf:
                    for a, b in _UNET_RESNET.items():
                        rest = rest.replace(a, b)
                new = sd + rest
        out[new] = value
    return out


def vae_to_ldm(state: dict) -> dict:
    return diffusers_vae_to_ldm(state, LEVELS, 1)


def single_file_state(components: dict) -> dict:
    """The whole pipeline as one SD 1.x checkpoint, in the CompVis/LDM key layout."""
    up_attention = ["CrossAttn" in t for t in components["unet"].config.up_block_types]
    state = {
        f"model.diffusion_model.{k}": v
        for k, v in unet_to_ldm(components["unet"].state_dict(), up_attention).items()
    }
    state.update(
        {f"first_stage_model.{k}": v for k, v in vae_to_ldm(components["vae"].state_dict()).items()}
    )
    state.update(
        {
            f"cond_stage_model.transformer.{k}": v
            for k, v in components["text_encoder"].state_dict().items()
        }
    )
    # Buffers a real LDM checkpoint carries besides the networks.
    state["cond_stage_model.transformer.text_model.embeddings.position_ids"] = torch.arange(77)[
        None
    ]
    return {k: v.contiguous() for k, v in state.items()}
