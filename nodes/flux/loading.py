"""Loading FLUX.1's transformer: a diffusers ``transformer/`` folder (its scheduler from the
pipeline's ``scheduler/``), Black Forest Labs' single file (keys and shapes -> config)."""

from __future__ import annotations

from pathlib import Path

import torch

from ..common.components import diffusers_model, folder_config, folder_weights
from ..common.files import StateDict, WeightFile, display_name, read_json
from ..common.fp8 import dequantised_fp8
from ..diffusion.math import Schedule
from ..sd3.scheduling import FlowMatch, flow_match
from .models import FluxDenoiser
from .single_file import PREFIX, bfl_to_diffusers

#: FluxPipeline's calculate_shift defaults for a config that leaves them out.
PIPELINE_MAX_SHIFT = 1.15
#: FLUX.1-dev's scheduler_config.json: dynamic shifting between 256 and 4096 tokens, 0.5 to
#: 1.15, exponential time shift; the pipeline passes its own sigmas.
FLUX_DEV = FlowMatch(
    Schedule("flow", prediction_type="flow_prediction", shift=1.0),
    dynamic=(256, 4096, 0.5, 1.15),
    sigma_grid="steps",
)
#: FLUX.1-schnell's: no shift at all (static shift 1.0), on the pipeline's sigmas.
FLUX_SCHNELL = FlowMatch(Schedule("flow", prediction_type="flow_prediction", shift=1.0), sigma_grid="steps")


def model_dtype(device: torch.device) -> torch.dtype:
    from .family import FAMILY  # (the record refers to this module's loaders)

    return FAMILY.compute_dtype(device)


def released_schedule(guidance_embeds: bool) -> FlowMatch:
    """The scheduler a FLUX.1 release ships with: dev's (guidance-distilled) or schnell's."""
    return FLUX_DEV if guidance_embeds else FLUX_SCHNELL


def scheduler_of(pipeline: Path | None, guidance_embeds: bool) -> FlowMatch:
    config = pipeline / "scheduler" / "scheduler_config.json" if pipeline is not None else None
    if config is None or not config.is_file():
        return released_schedule(guidance_embeds)
    # FluxPipeline passes np.linspace(1, 1/N, N) as sigmas unless the scheduler uses flow sigmas.
    return flow_match(read_json(config), display_name(config), PIPELINE_MAX_SHIFT, "steps")


def flux_denoiser(config: dict, state: StateDict, name: str, training: FlowMatch, device: torch.device) -> FluxDenoiser:
    from diffusers import FluxTransformer2DModel

    model = diffusers_model(FluxTransformer2DModel, config, state, name, device, model_dtype(device))
    return FluxDenoiser(model, training)


def transformer_folder(folder: Path, pipeline: Path | None, device: torch.device) -> FluxDenoiser:
    config = folder_config(folder)
    training = scheduler_of(pipeline, bool(config.get("guidance_embeds")))
    return flux_denoiser(config, folder_weights(folder), display_name(folder), training, device)


def bfl_file(weights: WeightFile, device: torch.device) -> FluxDenoiser:
    """flux1-dev.safetensors, flux1-schnell.safetensors, or a ComfyUI checkpoint holding one
    under ``model.diffusion_model.``; fp8-stored weights, plain or scaled, become the compute
    dtype as they load."""
    name = display_name(weights.path)
    wrapped = any(k.startswith(PREFIX) for k in weights.keys())
    state = weights.tensors((lambda k: k.startswith(PREFIX)) if wrapped else None)
    config, converted = bfl_to_diffusers(dequantised_fp8(state, name, model_dtype(device)), name)
    return flux_denoiser(config, converted, name, released_schedule(config["guidance_embeds"]), device)
