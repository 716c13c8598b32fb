"""Loaders for the VAR tokenizer (VQVAE) and transformer, from the models folder.

Checkpoints are the official FoundationVision/VAR layout, as ``.pth`` (read with weights-only
unpickling, so a file carrying code is refused, never run) or as ``.safetensors``. Where a name may
point is decided before any byte is read: a relative name is looked up in the models folders
(the shared rules of ``nodes.common.files``: ``confined`` refuses ``..`` and odd characters, while
links the user put in a models folder are followed; absolute names only where the host allows
them), and it must be a regular file with a checkpoint suffix, so a workflow cannot make the host
read devices, pipes, directories or arbitrary non-checkpoint files.
"""

from __future__ import annotations

import pickle
from collections.abc import Hashable
from pathlib import Path
from typing import Any

from ...executor.context import Folders
from ...executor.node import Input, InputError, Inputs, Node, Outputs
from ..common.files import CheckpointError, path_fingerprint, resolve_model_path
from ..core.provenance import record_models
from .checks import parse_patch_nums
from .family import FAMILY
from .model import read_state_dict, var_from_state_dict, vqvae_from_state_dict
from .model.loading import StateDict
from .model.vqvae import RELEASED_PATCH_NUMS_256
from .sockets import VARModelSocket, VQVAESocket

CATEGORY = "latentgraph/var/loaders"
CHECKPOINT_SUFFIXES = (".safetensors", ".pth", ".pt")
# The quantizer's training statistic has one row per scale it was trained with.
TRAINED_SCALES_KEY = "quantize.ema_vocab_hit_SV"


def checkpoint_path(folders: Folders, name: str) -> Path:
    """The file a loader's ``path`` input names, or InputError('path') saying why not: the
    shared model-path rules (in one of the models folders; absolute only where the host allows),
    plus a checkpoint suffix and a regular file, so no device, pipe or folder is ever read."""
    if not name or Path(name).suffix.lower() not in CHECKPOINT_SUFFIXES:
        raise InputError("path", f"'{name}' is not a checkpoint ({', '.join(CHECKPOINT_SUFFIXES)})")
    try:
        path = resolve_model_path(folders, name)
    except CheckpointError as err:
        raise InputError("path", str(err)) from None
    if not path.is_file():
        raise InputError("path", f"'{name}' is not a checkpoint file")
    return path


def read_checkpoint(path: Path, name: str) -> StateDict:
    try:
        return read_state_dict(path)
    except ValueError as err:
        if isinstance(err.__cause__, pickle.UnpicklingError):
            message = (f"'{name}' holds pickled objects other than tensors, which weights-only "
                       "loading refuses (re-save it as safetensors or as a plain state dict)")
        else:
            message = str(err).replace(str(path), f"'{name}'")
        raise InputError("path", message) from None


class CheckpointLoader(Node):
    """Base of the loaders: a file's identity (path, size, mtime) joins the node's signature."""

    category = CATEGORY

    @classmethod
    def fingerprint(cls, inputs: dict[str, Any], folders: Folders) -> Hashable:
        return path_fingerprint(folders, inputs.get("path"))

    def open(self, name: str) -> StateDict:
        return read_checkpoint(checkpoint_path(self.ctx.folders, name), name)


class LoadVQVAE(CheckpointLoader):
    """Load a VAR tokenizer: the multi-scale VQVAE that turns images into token maps and back
    (official layout, e.g. vae_ch160v4096z32.pth)."""

    class_type = "LG_LoadVQVAE"

    class In(Inputs):
        path: str = Input("vae_ch160v4096z32.pth", tooltip="a file in the models folder")
        patch_nums: str = Input(
            ",".join(map(str, RELEASED_PATCH_NUMS_256)),
            tooltip="scale schedule (token-map sides, coarse to fine) the VQVAE was trained with; "
                    "checkpoints do not store it",
        )

    class Out(Outputs):
        vqvae: VQVAESocket

    def run(self, x: In) -> Out:
        patch_nums = parse_patch_nums(x.patch_nums)
        state_dict = self.open(x.path)
        trained = state_dict.get(TRAINED_SCALES_KEY)
        if trained is not None and trained.ndim == 2 and trained.shape[0] != len(patch_nums):
            raise InputError(
                "patch_nums",
                f"{len(patch_nums)} scales given, but '{x.path}' was trained with "
                f"{trained.shape[0]} (rows of {TRAINED_SCALES_KEY})",
            )
        try:
            vqvae = vqvae_from_state_dict(state_dict, patch_nums=patch_nums,
                                          dtype=FAMILY.compute_dtype(self.ctx.device),
                                          device=self.ctx.device, source=f"'{x.path}'")
        except ValueError as err:
            raise InputError("path", str(err)) from None
        record_models(self, {"vqvae": vqvae})
        return self.Out(vqvae=vqvae)


class LoadVAR(CheckpointLoader):
    """Load a class-conditional VAR transformer (official layout, e.g. var_d16.pth); its scale
    schedule is read off the checkpoint."""

    class_type = "LG_LoadVAR"

    class In(Inputs):
        path: str = Input("var_d16.pth", tooltip="a file in the models folder")

    class Out(Outputs):
        var: VARModelSocket

    def run(self, x: In) -> Out:
        state_dict = self.open(x.path)
        try:
            var = var_from_state_dict(state_dict, dtype=FAMILY.compute_dtype(self.ctx.device),
                                      device=self.ctx.device, source=f"'{x.path}'")
        except ValueError as err:
            raise InputError("path", str(err)) from None
        record_models(self, {"var": var})
        return self.Out(var=var)


NODES = [LoadVQVAE, LoadVAR]
