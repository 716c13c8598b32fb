"""Ancestral DDPM and DDIM steps over a discrete alpha_bar schedule.

Both work on x_t = sqrt(ab_t) x_0 + sqrt(1 - ab_t) eps (DDPM eq. 4). The arithmetic mirrors
diffusers' DDPMScheduler / DDIMScheduler (clip_sample=False, no thresholding) operation by
operation, so results are bitwise equal to theirs.
"""

from __future__ import annotations

import torch

from ._validation import check_step_call, plus
from .noise import Seed, noise_like
from .plan import SamplingPlan


def _predict_x0_and_eps(
    sample: torch.Tensor, model_output: torch.Tensor, alpha_bar: torch.Tensor, prediction_type: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Clean sample and noise implied by the model output (DDPM eq. 15; v of Salimans & Ho 2022)."""
    beta_bar = 1 - alpha_bar
    if prediction_type == "epsilon":
        x0 = (sample - beta_bar**0.5 * model_output) / alpha_bar**0.5
        return x0, model_output
    x0 = (alpha_bar**0.5) * sample - (beta_bar**0.5) * model_output
    eps = (alpha_bar**0.5) * model_output + (beta_bar**0.5) * sample
    return x0, eps


def ddpm_step(
    sample: torch.Tensor,
    model_output: torch.Tensor,
    plan: SamplingPlan,
    step_index: int,
    seed: Seed,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One ancestral DDPM step x_t -> x_{t_prev}; returns (prev_sample, denoised x0).

    Samples the posterior q(x_prev | x_t, x0) of DDPM eq. 6-7 with the "fixed_small" variance
    beta_tilde. The noise is drawn from `seed` (see `noise` module) only when t > 0, as diffusers
    does; the step from t = 0 returns the posterior mean alone.
    """
    index = check_step_call(ddpm_step, sample, model_output, plan, step_index)
    alpha_bar, alpha_bar_prev = plan.alpha_bar_step(index)
    beta_bar = 1 - alpha_bar
    beta_bar_prev = 1 - alpha_bar_prev
    # Strided sampling: the effective single-step alpha and beta between the two planned steps.
    step_alpha = alpha_bar / alpha_bar_prev
    step_beta = 1 - step_alpha

    x0, _ = _predict_x0_and_eps(sample, model_output, alpha_bar, plan.schedule.prediction_type)

    # DDPM eq. 7: posterior mean mu_tilde = c0 * x0 + ct * x_t.
    x0_coeff = (alpha_bar_prev**0.5 * step_beta) / beta_bar
    sample_coeff = step_alpha**0.5 * beta_bar_prev / beta_bar
    prev_sample = plus(x0_coeff * x0, sample_coeff * sample)

    if int(plan.timesteps[index]) > 0:
        # DDPM eq. 7: beta_tilde = (1 - ab_prev) / (1 - ab_t) * beta_t, floored so sqrt stays finite.
        variance = torch.clamp(beta_bar_prev / beta_bar * step_beta, min=1e-20)
        prev_sample = plus(prev_sample, (variance**0.5) * noise_like(model_output, seed))
    return prev_sample, x0


def ddim_step(
    sample: torch.Tensor,
    model_output: torch.Tensor,
    plan: SamplingPlan,
    step_index: int,
    eta: float = 0.0,
    seed: Seed | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One DDIM step (Song et al. 2021, eq. 12); returns (prev_sample, denoised x0).

    eta = 0 is the deterministic DDIM sampler; eta = 1 recovers DDPM's variance (eq. 16). With
    eta > 0 the noise is drawn from `seed` (see `noise` module), which is then required.
    """
    index = check_step_call(ddim_step, sample, model_output, plan, step_index)
    if eta < 0:
        raise ValueError(f"eta must be non-negative, got {eta}")
    noise = None
    if eta > 0:
        if seed is None:
            raise ValueError("seed is required when eta > 0: DDIM then adds fresh noise")
        noise = noise_like(model_output, seed)
    alpha_bar, alpha_bar_prev = plan.alpha_bar_step(index)

    x0, eps = _predict_x0_and_eps(sample, model_output, alpha_bar, plan.schedule.prediction_type)

    # Deterministic DDIM has sigma_t = 0, and 1 - ab_prev - 0 is exact: skipping eq. 16 there
    # changes no bit of the result.
    std_dev: torch.Tensor | float = 0.0
    if eta > 0:
        # Eq. 16: sigma_t(eta) = eta * sqrt((1 - ab_prev) / (1 - ab_t)) * sqrt(1 - ab_t / ab_prev).
        variance = ((1 - alpha_bar_prev) / (1 - alpha_bar)) * (1 - alpha_bar / alpha_bar_prev)
        std_dev = eta * variance**0.5
    # Eq. 12: x_prev = sqrt(ab_prev) x0 + sqrt(1 - ab_prev - sigma_t^2) eps + sigma_t z.
    direction = (1 - alpha_bar_prev - std_dev**2) ** 0.5 * eps
    prev_sample = plus(alpha_bar_prev**0.5 * x0, direction)
    if noise is not None:
        prev_sample = plus(prev_sample, std_dev * noise)
    return prev_sample, x0
