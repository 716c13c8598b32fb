"""Euler steps of the probability-flow ODE, its ancestral variant, and the rectified-flow Euler.

The discrete-schedule samplers work in the variance-exploding parameterisation of Karras et al.
2022 (EDM): x = x0 + sigma * eps, the model sees x / sqrt(sigma^2 + 1) (`scale_model_input`), and
the probability-flow ODE dx/dsigma = (x - D(x)) / sigma (EDM eqs. 1 and 3 with sigma(t) = t) is
integrated with Euler steps (EDM Alg. 1 without the Heun correction). Arithmetic mirrors diffusers'
EulerDiscreteScheduler / EulerAncestralDiscreteScheduler / FlowMatchEulerDiscreteScheduler
(no churn, no stochastic sampling) operation by operation, so results are bitwise equal.
"""

from __future__ import annotations

import torch

from ._validation import check_step_call, in_dtype, plus
from .noise import Seed, noise_like
from .plan import SamplingPlan


def denoise_ve(
    sample: torch.Tensor, model_output: torch.Tensor, sigma: torch.Tensor, prediction_type: str
) -> torch.Tensor:
    """D(x): the clean sample implied by an epsilon or v prediction at VE noise level sigma."""
    if prediction_type == "epsilon":
        return sample - sigma * model_output
    # v = alpha * eps - sigma_vp * x0 in VP terms, with alpha = 1/sqrt(sigma^2+1), sigma_vp = sigma * alpha.
    return model_output * (-sigma / (sigma**2 + 1) ** 0.5) + (sample / (sigma**2 + 1))


def euler_step(
    sample: torch.Tensor, model_output: torch.Tensor, plan: SamplingPlan, step_index: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """One Euler step from sigmas[i] to sigmas[i + 1]; returns (prev_sample, denoised x0).

    The update runs in float32 and is cast back to the model output's dtype, as diffusers does.
    """
    index = check_step_call(euler_step, sample, model_output, plan, step_index)
    sigma = plan.sigma_levels[index]
    sample = in_dtype(sample, torch.float32)
    denoised = denoise_ve(sample, model_output, sigma, plan.schedule.prediction_type)
    derivative = (sample - denoised).div_(sigma)
    prev_sample = plus(sample, derivative.mul_(plan.sigma_deltas[index]))
    return in_dtype(prev_sample, model_output.dtype), denoised


def euler_ancestral_step(
    sample: torch.Tensor,
    model_output: torch.Tensor,
    plan: SamplingPlan,
    step_index: int,
    seed: Seed,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One ancestral Euler step; returns (prev_sample, denoised x0).

    Splits the move to sigma_next into a deterministic Euler step down to sigma_down and fresh
    noise of std sigma_up, with sigma_down^2 + sigma_up^2 = sigma_next^2 (k-diffusion's
    `get_ancestral_step`, eta = 1). Noise comes from `seed` (see `noise` module) on every step,
    including the last where sigma_up = 0, matching diffusers' draws.
    """
    index = check_step_call(euler_ancestral_step, sample, model_output, plan, step_index)
    sigma, sigma_next = plan.sigma_levels[index], plan.sigma_levels[index + 1]
    sample = in_dtype(sample, torch.float32)
    denoised = denoise_ve(sample, model_output, sigma, plan.schedule.prediction_type)

    sigma_up = (sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2) ** 0.5
    sigma_down = (sigma_next**2 - sigma_up**2) ** 0.5
    derivative = (sample - denoised).div_(sigma)
    prev_sample = plus(sample, derivative.mul_(sigma_down - sigma))
    prev_sample = plus(prev_sample, noise_like(model_output, seed).mul_(sigma_up))
    return in_dtype(prev_sample, model_output.dtype), denoised


def flow_euler_step(
    sample: torch.Tensor,
    model_output: torch.Tensor,
    plan: SamplingPlan,
    step_index: int,
    with_denoised: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One Euler step of the rectified-flow ODE dx/dsigma = v; returns (prev_sample, denoised x0).

    With x_sigma = (1 - sigma) x0 + sigma * noise the model predicts v = noise - x0, so
    x0 = x_sigma - sigma * v (rectified flow, Liu et al. 2023). The update does not need x0:
    ``with_denoised=False`` leaves it out (None).
    """
    index = check_step_call(flow_euler_step, sample, model_output, plan, step_index)
    sample = in_dtype(sample, torch.float32)
    prev_sample = plus(sample, plan.sigma_deltas[index] * model_output)
    # One sigma, and in a run without previews only at a requested last step: indexing once is
    # cheaper here than building the plan's table of every level.
    denoised = sample - plan.sigmas[index] * model_output if with_denoised else None
    return in_dtype(prev_sample, model_output.dtype), denoised
