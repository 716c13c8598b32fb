"""FLUX.1 as a family of the shared loaders: its transformer's single-file (Black Forest Labs) and
diffusers key layouts, the classes of its component folders, and which of them make up a
FluxPipeline folder. Its text encoders and VAE are the MM-DiT families' shared parts
(``nodes.mmdit.layouts``), whose single-file layouts the SD3 record lists; this one lists them
again under names of its own, so that a ComfyUI all-in-one FLUX checkpoint is a whole model of
this family (a registry names each layout once; the loaders are the same)."""

from __future__ import annotations

import dataclasses

import torch

from ..common.families import Component, Family, Layout, ModelFolder
from ..mmdit import layouts as mmdit
from . import loading
from .models import FluxDenoiser


def _transformer(folder: ModelFolder, device: torch.device) -> FluxDenoiser:
    return loading.transformer_folder(folder.path, folder.pipeline, device)


SHARED_LAYOUTS = tuple(
    dataclasses.replace(layout, name=f"flux_{layout.name}")
    for layout in (*mmdit.TEXT_ENCODER_LAYOUTS, *mmdit.AUTOENCODER_LAYOUTS)
)

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
        *SHARED_LAYOUTS,
    ),
    # In the node pack's family order this record comes after SD 1.x's, so a CLIPTextModel or
    # AutoencoderKL folder on its own stays SD 1.x's; inside a FluxPipeline folder these are read.
    components={
        "FluxTransformer2DModel": Component("denoiser", _transformer),
        "CLIPTextModel": mmdit.FLUX_TEXT_COMPONENT,
        "T5EncoderModel": mmdit.T5_COMPONENT,
        "AutoencoderKL": mmdit.VAE16_COMPONENT,
    },
    pipeline={
        "denoiser": ("transformer", "FluxTransformer2DModel"),
        "text_encoder": ("text_encoder", "CLIPTextModel"),
        "autoencoder": ("vae", "AutoencoderKL"),
    },
    half=torch.bfloat16,  # FLUX.1 was trained in it; FluxPipeline runs in it
    reads={"denoiser": "a FLUX.1 transformer (diffusers folder, or Black Forest Labs' single file)"},
)
