"""Shared fixtures for the diffusion-math parity tests: the diffusers oracle and a fake model."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from diffusers.schedulers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
    HeunDiscreteScheduler,
)

# runwayml/stable-diffusion-v1-5 scheduler_config.json, with the spacing made explicit.
SD15_CONFIG = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "steps_offset": 1,
    "clip_sample": False,
    "set_alpha_to_one": False,
    "timestep_spacing": "leading",
}
# Efficient-Large-Model/Sana_1600M_1024px_diffusers, as scripts/convert_sana_to_diffusers.py
# builds it (flow-dpm_solver), and its flow-euler alternative.
SANA_DPM_CONFIG = {"use_flow_sigmas": True, "prediction_type": "flow_prediction", "flow_shift": 3.0}
SANA_EULER_CONFIG = {"shift": 3.0}
# The SDE variants: DPMSolverMultistep with the stochastic DPM-Solver++ (midpoint, order 2).
SDE_CONFIG = {"algorithm_type": "sde-dpmsolver++", "solver_order": 2, "solver_type": "midpoint"}

SCHEDULER_CLASSES = {
    "ddpm": DDPMScheduler,
    "ddim": DDIMScheduler,
    "euler": EulerDiscreteScheduler,
    "euler_ancestral": EulerAncestralDiscreteScheduler,
    "heun": HeunDiscreteScheduler,
    "dpmpp_2m": DPMSolverMultistepScheduler,
    "dpmpp_2m_sde": DPMSolverMultistepScheduler,
    "flow_euler": FlowMatchEulerDiscreteScheduler,
    "flow_dpmpp_2m": DPMSolverMultistepScheduler,
    "flow_dpmpp_2m_sde": DPMSolverMultistepScheduler,
}

LATENT_SHAPE = (1, 4, 8, 8)
_MODEL_WEIGHT = torch.randn(LATENT_SHAPE[1:], generator=torch.Generator().manual_seed(1234))


def make_oracle(solver: str, steps: int, **config_overrides: object):
    """The diffusers scheduler for `solver` after `set_timesteps(steps)`.

    Discrete solvers start from the SD1.5 config, flow solvers from SANA's; `from_config`
    drops keys a scheduler does not know, as pipelines swapping schedulers rely on.
    """
    if solver.startswith("flow_dpmpp_2m"):
        config = dict(SANA_DPM_CONFIG)
    elif solver == "flow_euler":
        config = dict(SANA_EULER_CONFIG)
    else:
        config = dict(SD15_CONFIG)
    if solver.endswith("_sde"):
        config.update(SDE_CONFIG)
    config.update(config_overrides)
    scheduler = SCHEDULER_CLASSES[solver].from_config(config)
    scheduler.set_timesteps(steps)
    return scheduler


def fake_model(x: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
    """A fixed nonlinear "denoiser" output, deterministic in (x, t)."""
    phase = float(t) * 0.0123 + 0.3
    return torch.tanh(0.7 * x + math.sin(phase) * _MODEL_WEIGHT) * 0.9 + 0.1 * math.cos(phase)


@pytest.fixture
def oracle() -> Callable[..., object]:
    return make_oracle


@pytest.fixture
def model() -> Callable[[torch.Tensor, torch.Tensor | float], torch.Tensor]:
    return fake_model
