"""Loader nodes: a path in the models folder in, models out (cached in the executor's model tier
by signature, which includes the file's identity, so editing the weights reloads them)."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from ...executor.context import Folders
from ...executor.node import Input, InputError, Inputs, Node, Outputs
from ..diffusion.sockets import DenoiserSocket
from .files import CheckpointError, path_fingerprint, path_problem, resolve_model_path
from .loading import ALL_PARTS, Part, load_parts
from .sockets import AutoencoderSocket, TextEncoderSocket

CATEGORY = "latentgraph/loaders"
PATH_TOOLTIP = (
    "a file or folder inside the models folder (or an existing absolute path): a diffusers "
    "pipeline folder, a model folder with config.json, or a single .safetensors/.pth file"
)


class LoaderNode(Node):
    """Base of the loader nodes: resolves ``path`` and loads the requested parts."""

    category = CATEGORY
    disk_cacheable = False  # models are not tensors-only values; the model tier holds them
    parts: tuple[Part, ...] = ()

    @classmethod
    def fingerprint(cls, inputs: dict[str, Any], folders: Folders) -> Hashable:
        return path_fingerprint(folders, inputs.get("path"))

    def load(self, name: str) -> dict[str, Any]:
        try:
            path = resolve_model_path(self.ctx.folders, name)
            identity = path_fingerprint(self.ctx.folders, name)
            return load_parts(path, self.parts, self.ctx.device, identity)
        except CheckpointError as err:
            raise InputError("path", path_problem(name, str(err))) from None


class LoadCheckpoint(LoaderNode):
    """Load a whole text-to-image model: a Stable Diffusion 1.x or SANA diffusers pipeline
    folder, or an SD 1.x single-file checkpoint (its CLIP tokenizer ships with latentgraph)."""

    class_type = "LG_LoadCheckpoint"
    parts = ALL_PARTS

    class In(Inputs):
        path: str = Input(tooltip=PATH_TOOLTIP)

    class Out(Outputs):
        denoiser: DenoiserSocket
        text_encoder: TextEncoderSocket
        autoencoder: AutoencoderSocket

    def run(self, x: In) -> Out:
        return self.Out(**self.load(x.path))


class LoadDenoiser(LoaderNode):
    """Load a denoising network: an SD 1.x U-Net (diffusers folder or LDM keys) or a SANA DiT
    (diffusers folder, or NVlabs .pth/.safetensors keys), with its training schedule."""

    class_type = "LG_LoadDenoiser"
    parts = ("denoiser",)

    class In(Inputs):
        path: str = Input(tooltip=PATH_TOOLTIP)

    class Out(Outputs):
        denoiser: DenoiserSocket

    def run(self, x: In) -> Out:
        return self.Out(**self.load(x.path))


class LoadTextEncoder(LoaderNode):
    """Load a text encoder and its tokenizer: CLIP for SD 1.x (tokenizer files from the folder;
    single files use the bundled CLIP vocabulary) or Gemma-2 for SANA."""

    class_type = "LG_LoadTextEncoder"
    parts = ("text_encoder",)

    class In(Inputs):
        path: str = Input(tooltip=PATH_TOOLTIP)

    class Out(Outputs):
        text_encoder: TextEncoderSocket

    def run(self, x: In) -> Out:
        return self.Out(**self.load(x.path))


class LoadAutoencoder(LoaderNode):
    """Load an autoencoder: SD-VAE (AutoencoderKL; diffusers folder or LDM keys with or without
    the first_stage_model./vae. prefix) or DC-AE (diffusers folder or MIT efficientvit keys)."""

    class_type = "LG_LoadAutoencoder"
    parts = ("autoencoder",)

    class In(Inputs):
        path: str = Input(tooltip=PATH_TOOLTIP)

    class Out(Outputs):
        autoencoder: AutoencoderSocket

    def run(self, x: In) -> Out:
        return self.Out(**self.load(x.path))


NODES = [LoadCheckpoint, LoadDenoiser, LoadTextEncoder, LoadAutoencoder]
