"""GGUF-quantised FLUX.1 transformers (the ``flux1-dev-Q8_0.gguf`` / ``-Q4_0.gguf`` files of the
ComfyUI-GGUF ecosystem: BFL's key names, 2-D weights in a GGML block quantisation, biases and
norms in F32/F16), read through the ``gguf`` package (``pip install gguf``).

Each tensor is dequantised once, as it loads, by gguf's own numpy ``dequantize`` (Q8_0, Q4_0 and
every other type it knows), then converted like a BFL single file and cast to the compute dtype:
the weights sit in memory at full precision, so a GGUF file saves disk and download, not memory.
GGUF stores shapes innermost first (GGML's order); torch's is the reverse.
"""

from __future__ import annotations

from collections.abc import Hashable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...executor.context import Folders
from ...executor.node import Input, InputError, Inputs, Node, Outputs
from ..common.files import (
    CheckpointError,
    StateDict,
    display_name,
    path_fingerprint,
    resolve_model_path,
)
from ..core.provenance import record_models
from ..diffusion.sockets import DenoiserSocket
from .loading import flux_denoiser, released_schedule
from .models import FluxDenoiser
from .single_file import bfl_to_diffusers


def read_gguf(path: Path) -> StateDict:
    """Every tensor of a GGUF file, dequantised to float32 (torch shapes)."""
    name = display_name(path)
    try:
        import gguf
        from gguf.quants import dequantize
    except ImportError:
        raise CheckpointError(f"{name}: reading GGUF files needs the gguf package (pip install gguf)") from None
    try:
        reader = gguf.GGUFReader(str(path))
    except (ValueError, OSError, KeyError) as err:
        raise CheckpointError(f"{name} is not a readable GGUF file: {err}") from None
    out: StateDict = {}
    for tensor in reader.tensors:
        shape = tuple(int(n) for n in reversed(tensor.shape.tolist()))
        try:
            values = dequantize(tensor.data, tensor.tensor_type)
        except (NotImplementedError, ValueError) as err:
            raise CheckpointError(
                f"{name}: tensor {tensor.name} is stored as {tensor.tensor_type.name}, which gguf cannot dequantise: {err}"
            ) from None
        array = np.ascontiguousarray(values, dtype=np.float32).reshape(shape)
        if not array.flags.writeable:  # an unquantised tensor is a view of the read-only file mapping
            array = array.copy()
        out[tensor.name] = torch.from_numpy(array)
    return out


def gguf_file(path: Path, device: torch.device) -> FluxDenoiser:
    name = display_name(path)
    state = read_gguf(path)
    if not any(k.endswith("double_blocks.0.img_attn.qkv.weight") for k in state):
        raise CheckpointError(f"{name} holds no FLUX.1 transformer (no double_blocks.0.img_attn.qkv)")
    config, converted = bfl_to_diffusers(state, name)
    return flux_denoiser(config, converted, name, released_schedule(config["guidance_embeds"]), device)


class LoadFluxGGUF(Node):
    """Load a GGUF-quantised FLUX.1 transformer (dev or schnell; Q8_0, Q4_0, ... as gguf reads
    them), dequantised once to the compute dtype, with its release's schedule."""

    class_type = "LG_LoadFluxGGUF"
    category = "latentgraph/loaders"
    disk_cacheable = False

    class In(Inputs):
        path: str = Input(tooltip="a .gguf file inside a models folder (or an existing absolute path)")

    class Out(Outputs):
        denoiser: DenoiserSocket

    @classmethod
    def fingerprint(cls, inputs: dict[str, Any], folders: Folders) -> Hashable:
        return path_fingerprint(folders, inputs.get("path"))

    def run(self, x: In) -> Out:
        try:
            path = resolve_model_path(self.ctx.folders, x.path)
            if not path.is_file() or path.suffix != ".gguf":
                raise CheckpointError(f"{display_name(path)} is not a .gguf file")
            denoiser = gguf_file(path, self.ctx.device)
        except CheckpointError as err:
            raise InputError("path", str(err)) from None
        record_models(self, {"denoiser": denoiser})
        return self.Out(denoiser=denoiser)
