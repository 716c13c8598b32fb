"""StyleGAN2 as a family the shared loaders recognise but do not read: a generator's weights
given to LG_LoadCheckpoint and its kin get a message pointing to LG_LoadStyleGAN (``loaders.py``).

Its ``half`` is float32: the generator is small next to a diffusion model's many steps (one
forward per image), and without the official code's fp16 pre-normalisation its modulated
convolutions can overflow in fp16, so it runs in fp32 on every device."""

from __future__ import annotations

import torch

from ..common.families import Family, Layout

FAMILY = Family(
    name="stylegan",
    title="StyleGAN2",
    layouts=(
        Layout("stylegan2", "a StyleGAN2 generator", ("synthesis.b4.const", "mapping.fc0.weight"),
               wrapped=False),
        Layout("stylegan3", "a StyleGAN3 generator", ("synthesis.input.affine.weight",),
               wrapped=False),
    ),
    loaded_by=("LG_LoadStyleGAN",),
    half=torch.float32,
)
