"""The TEXT_ENCODER and AUTOENCODER interfaces: what an object on those sockets must offer the
nodes that use it. They are structural (``typing.Protocol``), so a family's encoder needs no
common base class; :class:`~.models.TextEncoder` and :class:`~.models.Autoencoder` are the bases
SD 1.x and SANA build theirs on (with the model tier's ``to(device)``). Runtime-checkable: a node
checks what reached it with ``isinstance`` and names the input when it does not fit."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

from ..diffusion.denoiser import TextEmbeds


@runtime_checkable
class TextEncoderProtocol(Protocol):
    """Prompts -> TEXT_EMBEDS, the way the family's reference pipeline encodes them."""

    def encode(self, texts: list[str], instruction: bool = True) -> TextEmbeds:
        """``instruction``: whether to prepend the family's prompt instruction, if it has one
        (SANA's complex human instruction; others ignore it)."""
        ...


@runtime_checkable
class AutoencoderProtocol(Protocol):
    """Pixels <-> latents. ``encode`` returns latents already multiplied by ``scaling_factor``;
    ``decode`` takes such latents. Pixels are (B,3,H,W) in [-1, 1]."""

    #: for messages: "sd-vae", "dc-ae"
    kind: str
    latent_channels: int
    scaling_factor: float
    #: spatial downsampling factor, pixels per latent side
    downsample: int
    #: dtype the family's pipeline keeps its latents in
    latent_dtype: torch.dtype
    #: whether encoding samples a posterior (and so takes a random generator)
    stochastic: bool

    def encode(
        self, pixels: torch.Tensor, generator: torch.Generator | None, sample: bool = True
    ) -> torch.Tensor: ...

    def decode(self, latents: torch.Tensor, tiled: bool = False) -> torch.Tensor: ...
