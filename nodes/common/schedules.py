"""The training schedule a checkpoint ships with, read from its diffusers scheduler_config.json.

A denoiser carries one schedule, spacing and steps_offset for every solver. The spacing is the one
the config states, or the default of the scheduler class it names (PNDM and DDIM: "leading", as in
Stable Diffusion 1.5's config, which leaves the key out). diffusers keeps a stated spacing when a
pipeline swaps schedulers with ``from_config``; a left-out one would fall back to the new class's
default, which is not the checkpoint's choice, so we do not follow that.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..diffusion.math import SANA_SCHEDULE, SD15_SCHEDULE, Schedule
from .files import CheckpointError

# diffusers' default `timestep_spacing` per scheduler class.
_DEFAULT_SPACING = {
    "PNDMScheduler": "leading",
    "DDIMScheduler": "leading",
    "DDPMScheduler": "leading",
    "EulerDiscreteScheduler": "linspace",
    "EulerAncestralDiscreteScheduler": "linspace",
    "DPMSolverMultistepScheduler": "linspace",
    "LMSDiscreteScheduler": "linspace",
    "HeunDiscreteScheduler": "linspace",
    "UniPCMultistepScheduler": "linspace",
}


@dataclass(frozen=True)
class TrainingSchedule:
    schedule: Schedule
    spacing: str = "leading"
    steps_offset: int = 0


# Stable Diffusion 1.x: scaled_linear 0.00085..0.012, leading spacing, steps_offset 1.
SD15 = TrainingSchedule(SD15_SCHEDULE, "leading", 1)
# SANA: rectified flow, shift 3.0 (flow_shift of its DPM-Solver config).
SANA = TrainingSchedule(SANA_SCHEDULE, "linspace", 0)


def discrete_schedule(config: dict[str, Any], source: str) -> TrainingSchedule:
    """A DDPM-family schedule (SD 1.x) from a scheduler config."""
    if config.get("trained_betas") is not None:
        raise CheckpointError(f"{source}: explicit trained_betas are not supported")
    name = str(config.get("_class_name", "PNDMScheduler"))
    try:
        schedule = Schedule(
            beta_schedule=config.get("beta_schedule", "linear"),
            num_train_timesteps=int(config.get("num_train_timesteps", 1000)),
            beta_start=float(config.get("beta_start", 0.0001)),
            beta_end=float(config.get("beta_end", 0.02)),
            prediction_type=config.get("prediction_type", "epsilon"),
            zero_terminal_snr=bool(config.get("rescale_betas_zero_snr", False)),
        )
    except ValueError as err:
        raise CheckpointError(f"{source}: {err}") from None
    spacing = config.get("timestep_spacing") or _DEFAULT_SPACING.get(name, "leading")
    if spacing not in ("leading", "trailing", "linspace"):
        raise CheckpointError(f"{source}: unknown timestep_spacing {spacing!r}")
    return TrainingSchedule(schedule, spacing, int(config.get("steps_offset", 0)))


def flow_schedule(config: dict[str, Any], source: str) -> TrainingSchedule:
    """A rectified-flow schedule (SANA): DPMSolverMultistep(use_flow_sigmas) states it as
    ``flow_shift``, FlowMatchEulerDiscrete as ``shift``."""
    if config.get("use_dynamic_shifting"):
        raise CheckpointError(f"{source}: resolution-dependent (dynamic) shifting is not supported")
    shift = config.get("flow_shift") if config.get("use_flow_sigmas") else config.get("shift")
    if shift is None:
        shift = config.get("flow_shift", config.get("shift", 1.0))
    try:
        schedule = Schedule(
            beta_schedule="flow",
            num_train_timesteps=int(config.get("num_train_timesteps", 1000)),
            prediction_type="flow_prediction",
            shift=float(shift),
        )
    except ValueError as err:
        raise CheckpointError(f"{source}: {err}") from None
    return TrainingSchedule(schedule, "linspace", 0)
