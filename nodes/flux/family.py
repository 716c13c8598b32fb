"""FLUX.1 as a family of the shared loaders: its transformer's single-file (Black Forest Labs) and
diffusers key layouts, the classes of its component folders, and which of them make up a
FluxPipeline folder."""

from __future__ import annotations

import torch

from ..common.families import Component, Family, Layout, ModelFolder
from . import loading
from .models import FluxDenoiser


def _transformer(folder: ModelFolder, device: torch.device) -> FluxDenoiser:
    return loading.transformer_folder(folder.path, folder.pipeline, device)


FAMILY = Family(
    name="flux",
    title="FLUX.1",
    layouts=(
        Layout(
            "bfl_flux",
            "a FLUX.1 transformer",
            ("double_blocks.0.img_attn.qkv.weight", "img_in.weight"),
            part="denoiser",
            load=loading.bfl_file,
        ),
        Layout(
            "diffusers_flux",
            "a diffusers FluxTransformer2DModel",
            ("single_transformer_blocks.0.proj_mlp.weight", "x_embedder.weight"),
            part="denoiser",
        ),
    ),
    components={"FluxTransformer2DModel": Component("denoiser", _transformer)},
    pipeline={"denoiser": ("transformer", "FluxTransformer2DModel")},
    half=torch.bfloat16,  # FLUX.1 was trained in it; FluxPipeline runs in it
    reads={"denoiser": "a FLUX.1 transformer (diffusers folder, or Black Forest Labs' single file)"},
)
