"""Loader nodes: a path in the models folder in, models out (cached in the executor's model tier
by signature, which includes the file's identity, so editing the weights reloads them). They are
built for a :class:`~.families.Families` registry, whose families' loaders read the files."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, ClassVar

from ...executor.context import Folders
from ...executor.node import Input, InputError, Inputs, Node, Outputs
from ..core.provenance import record_models
from ..diffusion.sockets import DenoiserSocket
from .families import Families
from .files import CheckpointError, path_fingerprint, resolve_model_path
from .loading import ALL_PARTS, Part, load_parts
from .sockets import AutoencoderSocket, TextEncoderSocket

CATEGORY = "latentgraph/loaders"
PATH_TOOLTIP = (
    "a file or folder inside a models folder (or an existing absolute path): a diffusers "
    "pipeline folder, a model folder with config.json, or a single .safetensors/.pth file"
)


class LoaderNode(Node):
    """Base of the loader nodes: resolves ``path`` and loads the requested parts with the
    loaders of ``families`` (set by :func:`loader_nodes`)."""

    category = CATEGORY
    disk_cacheable = False  # models are not tensors-only values; the model tier holds them
    parts: tuple[Part, ...] = ()
    families: ClassVar[Families]

    @classmethod
    def fingerprint(cls, inputs: dict[str, Any], folders: Folders) -> Hashable:
        return path_fingerprint(folders, inputs.get("path"))

    def load(self, name: str) -> dict[str, Any]:
        try:
            path = resolve_model_path(self.ctx.folders, name)
            identity = path_fingerprint(self.ctx.folders, name)
            loaded = load_parts(self.families, path, self.parts, self.ctx.device, identity)
        except CheckpointError as err:
            raise InputError("path", str(err)) from None
        record_models(self, loaded)  # what a saved PNG says made it
        return loaded


def loader_nodes(families: Families) -> list[type[Node]]:
    """The loader nodes, reading the model families of ``families`` (their descriptions list
    what each family contributes)."""

    class LoadCheckpoint(LoaderNode):
        __doc__ = (
            "Load a whole text-to-image model: a diffusers pipeline folder of "
            f"{families.pipeline_titles('or')}, or a single-file checkpoint of "
            f"{families.whole_file_titles('or')}."
        )
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
        __doc__ = (
            f"Load a denoising network with its training schedule: {families.reads('denoiser')}."
        )
        class_type = "LG_LoadDenoiser"
        parts = ("denoiser",)

        class In(Inputs):
            path: str = Input(tooltip=PATH_TOOLTIP)

        class Out(Outputs):
            denoiser: DenoiserSocket

        def run(self, x: In) -> Out:
            return self.Out(**self.load(x.path))

    class LoadTextEncoder(LoaderNode):
        __doc__ = f"Load a text encoder and its tokenizer: {families.reads('text_encoder')}."
        class_type = "LG_LoadTextEncoder"
        parts = ("text_encoder",)

        class In(Inputs):
            path: str = Input(tooltip=PATH_TOOLTIP)

        class Out(Outputs):
            text_encoder: TextEncoderSocket

        def run(self, x: In) -> Out:
            return self.Out(**self.load(x.path))

    class LoadAutoencoder(LoaderNode):
        __doc__ = f"Load an autoencoder: {families.reads('autoencoder')}."
        class_type = "LG_LoadAutoencoder"
        parts = ("autoencoder",)

        class In(Inputs):
            path: str = Input(tooltip=PATH_TOOLTIP)

        class Out(Outputs):
            autoencoder: AutoencoderSocket

        def run(self, x: In) -> Out:
            return self.Out(**self.load(x.path))

    nodes: list[type[LoaderNode]] = [LoadCheckpoint, LoadDenoiser, LoadTextEncoder, LoadAutoencoder]
    for node in nodes:
        node.families = families
    return list(nodes)
