"""Socket types of the StyleGAN nodes: our own names, so they never meet a ComfyUI object.

STYLEGAN is the :class:`~.model.Generator` module (kept in the executor's model tier). GAN_Z is
a latent code batch, float [batch, z_dim]. STYLEGAN_W is the per-layer intermediate latents,
float [batch, num_ws, w_dim], one row per modulated layer (what truncation and mixing act on).
"""

from __future__ import annotations

from typing import Annotated

import torch

from ...executor.types import Socket
from .model import Generator

GeneratorSocket = Annotated[Generator, Socket("STYLEGAN")]
ZSocket = Annotated[torch.Tensor, Socket("GAN_Z")]
WSocket = Annotated[torch.Tensor, Socket("STYLEGAN_W")]
