"""Training-time noise schedules: discrete beta schedules (DDPM family) and rectified flow.

Numerics follow diffusers exactly so that plans built on top of a `Schedule` reproduce diffusers'
samplers bit for bit: betas are built in float32 by torch (except `squaredcos_cap_v2`, whose betas
are evaluated in Python float64 and then rounded to float32), and the cumulative product of the
alphas is taken in float32.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, TypeVar, get_args

import numpy as np
import torch

from .errors import ArgumentError

BetaSchedule = Literal["linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid", "flow"]
PredictionType = Literal["epsilon", "v_prediction", "flow_prediction"]

BETA_SCHEDULES: tuple[str, ...] = get_args(BetaSchedule)
PREDICTION_TYPES: tuple[str, ...] = get_args(PredictionType)

# The cosine schedule caps each beta so that alpha never reaches 0 near t = T (Nichol & Dhariwal 2021).
COSINE_MAX_BETA = 0.999

SigmaArray = TypeVar("SigmaArray", np.ndarray, torch.Tensor)


@dataclass(frozen=True)
class Schedule:
    """How the model was trained to corrupt data; the defaults are diffusers' scheduler defaults.

    Discrete schedules (`linear`, `scaled_linear`, `squaredcos_cap_v2`, `sigmoid`) define betas over
    `num_train_timesteps` steps and support `epsilon` and `v_prediction` models. `flow` is rectified
    flow, x_t = (1 - sigma) x_0 + sigma * noise with sigma = t, for `flow_prediction` models (the
    network predicts the velocity noise - x_0); `shift` warps sigma towards the noisy end.
    """

    beta_schedule: BetaSchedule = "linear"
    num_train_timesteps: int = 1000
    beta_start: float = 0.0001
    beta_end: float = 0.02
    prediction_type: PredictionType = "epsilon"
    shift: float = 1.0
    # Lin et al. 2024 ("Common diffusion noise schedules and sample steps are flawed"), alg. 1:
    # rescale the betas so the last step is pure noise (diffusers' rescale_betas_zero_snr).
    zero_terminal_snr: bool = False

    def __post_init__(self) -> None:
        if self.beta_schedule not in BETA_SCHEDULES:
            raise ArgumentError(
                "beta_schedule", f"beta_schedule must be one of {BETA_SCHEDULES}, got {self.beta_schedule!r}"
            )
        if self.prediction_type not in PREDICTION_TYPES:
            raise ArgumentError(
                "prediction_type", f"prediction_type must be one of {PREDICTION_TYPES}, got {self.prediction_type!r}"
            )
        if isinstance(self.num_train_timesteps, bool) or not isinstance(
            self.num_train_timesteps, int
        ):
            raise ArgumentError(
                "num_train_timesteps", f"num_train_timesteps must be an int, got {self.num_train_timesteps!r}"
            )
        if self.num_train_timesteps < 2:
            raise ArgumentError(
                "num_train_timesteps", f"num_train_timesteps must be at least 2, got {self.num_train_timesteps}"
            )
        if self.is_flow != (self.prediction_type == "flow_prediction"):
            raise ArgumentError(
                "prediction_type",
                f"prediction_type {self.prediction_type!r} does not fit beta_schedule "
                f"{self.beta_schedule!r}: 'flow_prediction' goes with 'flow' and only with it"
            )
        if not self.shift > 0:
            raise ArgumentError("shift", f"shift must be positive, got {self.shift}")
        if self.is_flow and self.zero_terminal_snr:
            raise ArgumentError("zero_terminal_snr", "zero_terminal_snr applies to discrete beta schedules, not 'flow'")
        if not self.is_flow:
            if self.shift != 1.0:
                raise ArgumentError("shift", "shift only applies to beta_schedule='flow'")
            if not 0 < self.beta_start <= self.beta_end < 1:
                raise ArgumentError(
                    "beta_start",
                    f"beta_start and beta_end must satisfy 0 < beta_start <= beta_end < 1, "
                    f"got {self.beta_start} and {self.beta_end}"
                )

    @property
    def is_flow(self) -> bool:
        return self.beta_schedule == "flow"

    @property
    def betas(self) -> torch.Tensor:
        """beta_t for t = 0 .. T-1 as float32, computed the way diffusers does."""
        if self.is_flow:
            raise ValueError("beta_schedule='flow' has no betas; use sigmas (sigma = t) instead")
        betas = self._base_betas()
        return _rescaled_to_zero_terminal_snr(betas) if self.zero_terminal_snr else betas

    def _base_betas(self) -> torch.Tensor:
        steps = self.num_train_timesteps
        if self.beta_schedule == "linear":
            return torch.linspace(self.beta_start, self.beta_end, steps, dtype=torch.float32)
        if self.beta_schedule == "scaled_linear":
            # Stable Diffusion: linear in sqrt(beta), squared after the float32 linspace.
            return (
                torch.linspace(self.beta_start**0.5, self.beta_end**0.5, steps, dtype=torch.float32)
                ** 2
            )
        if self.beta_schedule == "sigmoid":
            ramp = torch.linspace(-6, 6, steps, dtype=torch.float32)
            return torch.sigmoid(ramp) * (self.beta_end - self.beta_start) + self.beta_start
        return _cosine_betas(steps)

    @property
    def alphas(self) -> torch.Tensor:
        return 1.0 - self.betas

    @property
    def alphas_cumprod(self) -> torch.Tensor:
        """alpha_bar_t = prod_{s <= t} (1 - beta_s) (DDPM eq. 4), a float32 running product."""
        return torch.cumprod(self.alphas, dim=0)

    @property
    def alphas_cumprod_for_sigmas(self) -> torch.Tensor:
        """alpha_bar as the sigma-parameterised solvers (Euler, DPM-Solver) use it: with a zero
        terminal SNR the last alpha_bar is 2**-24 (fp16's smallest subnormal, diffusers' choice)
        so that the first sigma is large but finite."""
        alphas_cumprod = self.alphas_cumprod
        if self.zero_terminal_snr:
            alphas_cumprod[-1] = 2**-24
        return alphas_cumprod

    def shift_sigmas(self, sigmas: SigmaArray) -> SigmaArray:
        """Timestep shift of SD3 (Esser et al. 2024, sec. 5.3.2): s*t / (1 + (s - 1)*t).

        Works on numpy arrays and torch tensors alike and keeps their dtype, since diffusers
        shifts in float64 numpy for some grids and in float32 torch for others.
        """
        return self.shift * sigmas / (1 + (self.shift - 1) * sigmas)


def _rescaled_to_zero_terminal_snr(betas: torch.Tensor) -> torch.Tensor:
    """Lin et al. 2024, alg. 1: shift sqrt(alpha_bar) so its last value is 0, scale it so its
    first value is unchanged, and convert back to betas."""
    root = torch.cumprod(1.0 - betas, dim=0).sqrt()
    first, last = root[0].clone(), root[-1].clone()
    root = (root - last) * (first / (first - last))
    alpha_bars = root**2
    alphas = torch.cat([alpha_bars[0:1], alpha_bars[1:] / alpha_bars[:-1]])
    return 1 - alphas


def _cosine_betas(steps: int) -> torch.Tensor:
    """Improved-DDPM cosine schedule (Nichol & Dhariwal 2021, eq. 17), evaluated in float64."""

    def alpha_bar(t: float) -> float:
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

    betas = [
        min(1 - alpha_bar((i + 1) / steps) / alpha_bar(i / steps), COSINE_MAX_BETA)
        for i in range(steps)
    ]
    return torch.tensor(betas, dtype=torch.float32)


# Stable Diffusion 1.5 (runwayml/stable-diffusion-v1-5 scheduler_config.json).
SD15_SCHEDULE = Schedule(
    beta_schedule="scaled_linear",
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    prediction_type="epsilon",
)

# SANA 1600M 1024px: rectified flow with a flow shift of 3.0.
SANA_SCHEDULE = Schedule(beta_schedule="flow", prediction_type="flow_prediction", shift=3.0)
