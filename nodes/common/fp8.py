"""fp8-stored weights (float8_e4m3fn / e5m2 in safetensors), plain or in ComfyUI's scaled
layouts, as the compute-dtype tensors every loader that meets them (T5, CLIP, the SD3 and FLUX
transformers) hands to its model."""

from __future__ import annotations

import json

import torch

from .files import CheckpointError, StateDict

FP8 = (torch.float8_e4m3fn, torch.float8_e5m2)


def dequantised_fp8(state: StateDict, name: str, dtype: torch.dtype = torch.float32) -> StateDict:
    """Weights in ``dtype`` (fp32, or the bf16 a model runs in) where a file stores them in fp8
    (float8_e4m3fn / e5m2 in safetensors): fp8 is a storage format here, never a compute one.

    ComfyUI's scaled fp8 files (``t5xxl_fp8_e4m3fn_scaled``, ``sd3.5_large_fp8_scaled``) store
    each linear weight divided by a per-tensor scale: the older ones beside a ``scaled_fp8``
    marker as ``<layer>.scale_weight`` (with an unused ``scale_input``), the newer ones as
    ``<layer>.weight_scale`` with a ``<layer>.comfy_quant`` JSON record naming the format. The
    weight is fp8 x scale."""
    out = dict(state)
    for key in [k for k in out if k.endswith(".comfy_quant")]:
        layer = key[: -len("comfy_quant")]
        record = out.pop(key)
        try:
            fmt = json.loads(bytes(record.to(torch.uint8).tolist())).get("format")
        except (ValueError, AttributeError):
            fmt = None
        if fmt not in ("float8_e4m3fn", "float8_e5m2"):
            raise CheckpointError(
                f"{name}: {layer}weight is quantised as {fmt or 'an unknown format'}; "
                "latentgraph reads fp8 (scaled or not), fp16, bf16 and fp32 weights"
            )
    for suffix in (".scale_weight", ".weight_scale"):
        for key in [k for k in out if k.endswith(suffix)]:
            weight = key[: -len(suffix)] + ".weight"
            scale = out.pop(key)
            if weight not in out:
                raise CheckpointError(f"{name}: {key} scales a weight the file does not hold")
            out[weight] = (out[weight].float() * scale.float()).to(dtype)
    unused = (".scale_input", ".input_scale")
    for key in [k for k in out if k.endswith(unused) or k.rpartition(".")[2] == "scaled_fp8"]:
        del out[key]  # the marker may sit under a wrapper prefix: model.diffusion_model.scaled_fp8
    return {k: v.to(dtype) if v.dtype in FP8 else v for k, v in out.items()}
