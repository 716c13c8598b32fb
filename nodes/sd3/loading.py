"""Loading SD3 / SD3.5's MM-DiT: a diffusers ``transformer/`` folder (its training schedule from
the pipeline's ``scheduler/``), or Stability's single file (keys and shapes -> config)."""

from __future__ import annotations

from pathlib import Path

import torch

from ..common.components import diffusers_model, folder_config, folder_weights
from ..common.files import WeightFile, display_name, read_json
from ..common.fp8 import dequantised_fp8
from .models import SD3Denoiser
from .scheduling import SD3, FlowMatch, flow_match
from .single_file import PREFIX, mmdit_to_diffusers

#: StableDiffusion3Pipeline's calculate_shift default for a dynamic config without max_shift.
PIPELINE_MAX_SHIFT = 1.16


def model_dtype(device: torch.device) -> torch.dtype:
    from .family import FAMILY  # (the record refers to this module's loaders)

    return FAMILY.compute_dtype(device)


def scheduler_of(pipeline: Path | None) -> FlowMatch:
    """The pipeline's FlowMatchEulerDiscreteScheduler config; SD3's own without a pipeline."""
    config = pipeline / "scheduler" / "scheduler_config.json" if pipeline is not None else None
    if config is None or not config.is_file():
        return SD3
    return flow_match(read_json(config), display_name(config), PIPELINE_MAX_SHIFT)


def transformer_folder(folder: Path, pipeline: Path | None, device: torch.device) -> SD3Denoiser:
    from diffusers import SD3Transformer2DModel

    model = diffusers_model(
        SD3Transformer2DModel,
        folder_config(folder),
        folder_weights(folder),
        display_name(folder),
        device,
        model_dtype(device),
    )
    return SD3Denoiser(model, scheduler_of(pipeline))


def mmdit_file(weights: WeightFile, device: torch.device) -> SD3Denoiser:
    """sd3_medium.safetensors, sd3.5_large.safetensors, sd3.5_large_fp8_scaled.safetensors, ...;
    fp8-stored weights, plain or scaled, become the compute dtype as they load."""
    from diffusers import SD3Transformer2DModel

    name = display_name(weights.path)
    wrapped = any(k.startswith(PREFIX) for k in weights.keys())
    state = weights.tensors((lambda k: k.startswith(PREFIX)) if wrapped else None)
    config, converted = mmdit_to_diffusers(dequantised_fp8(state, name, model_dtype(device)), name)
    model = diffusers_model(SD3Transformer2DModel, config, converted, name, device, model_dtype(device))
    return SD3Denoiser(model, SD3)
