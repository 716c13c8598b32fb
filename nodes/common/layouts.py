"""Recognising what a weight file holds from its key names alone (cheap: a safetensors header).

Each layout is named by a few marker keys that only it has. The families declare their own
layouts (in their ``family.py``); the layouts here belong to families latentgraph does not load,
and are recognised only so that a wrong file gets a message saying what it is.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, Literal

import torch

from .files import WeightFile

Part = Literal["denoiser", "text_encoder", "autoencoder"]
ALL_PARTS: tuple[Part, ...] = ("denoiser", "text_encoder", "autoencoder")

#: Wrapper prefixes a layout's markers may sit under in a single file.
WRAPPERS = ("", "model.", "vae.", "first_stage_model.", "model.diffusion_model.")

#: Reads one part from a single weight file of its layout.
FileLoader = Callable[[WeightFile, torch.device], Any]


@dataclass(frozen=True)
class Layout:
    """A key layout: its name, what it is (for messages: "an LDM (SD 1.x) U-Net"), and the
    marker keys that must all be present. A marker ending in ``.`` is a key prefix.

    ``part`` and ``load`` say what a single file of this layout gives the loaders: both set, the
    file is read by ``load``; ``part`` alone, it is that part in a layout that needs its folder's
    config.json (diffusers/transformers keys); neither, it is recognised only to say so.
    """

    name: str
    description: str
    markers: tuple[str, ...]
    #: whether the markers may sit under the usual wrappers (``model.``, ``vae.``, ...).
    wrapped: bool = True
    part: Part | None = None
    load: FileLoader | None = None

    def found_in(self, keys: Collection[str]) -> bool:
        prefixes = WRAPPERS if self.wrapped else ("",)
        return all(_has(keys, marker, prefixes) for marker in self.markers)


def _has(keys: Collection[str], marker: str, prefixes: tuple[str, ...]) -> bool:
    for prefix in prefixes:
        full = prefix + marker
        if full.endswith("."):
            if any(k.startswith(full) for k in keys):
                return True
        elif full in keys:
            return True
    return False


# Families latentgraph does not load, recognised only to say so.
FOREIGN_LAYOUTS: tuple[Layout, ...] = (
    Layout("sdxl", "an SDXL checkpoint", ("conditioner.embedders.",), wrapped=False),
    Layout(
        "sd2",
        "an SD 2.x checkpoint (OpenCLIP text encoder)",
        ("cond_stage_model.model.",),
        wrapped=False,
    ),
    Layout("pixart", "a PixArt DiT", ("x_embedder.proj.weight", "blocks.0.mlp.fc1.weight")),
)
