"""SD3 / SD3.5 as a family of the shared loaders: its MM-DiT's single-file and diffusers key
layouts, the classes of its component folders, and which of them make up a
StableDiffusion3Pipeline folder."""

from __future__ import annotations

import torch

from ..common.families import Component, Family, Layout, ModelFolder
from . import loading
from .models import SD3Denoiser


def _transformer(folder: ModelFolder, device: torch.device) -> SD3Denoiser:
    return loading.transformer_folder(folder.path, folder.pipeline, device)


FAMILY = Family(
    name="sd3",
    title="Stable Diffusion 3",
    layouts=(
        Layout(
            "sd3_mmdit",
            "an SD3 / SD3.5 MM-DiT",
            ("joint_blocks.0.x_block.attn.qkv.weight", "x_embedder.proj.weight"),
            part="denoiser",
            load=loading.mmdit_file,
        ),
        Layout(
            "diffusers_sd3",
            "a diffusers SD3Transformer2DModel",
            ("transformer_blocks.0.attn.add_q_proj.weight", "pos_embed.proj.weight"),
            part="denoiser",
        ),
    ),
    components={"SD3Transformer2DModel": Component("denoiser", _transformer)},
    pipeline={"denoiser": ("transformer", "SD3Transformer2DModel")},
    half=torch.float16,  # StableDiffusion3Pipeline's documented dtype
    reads={"denoiser": "an SD3 / SD3.5 MM-DiT (diffusers folder, or Stability's single file)"},
)
