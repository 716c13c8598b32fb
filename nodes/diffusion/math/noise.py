"""Gaussian noise drawn the way diffusers draws it, and the forward process q(x_t | x_0).

Seed convention for stochastic steps (DDPM, DDIM with eta > 0, Euler ancestral, DPM-Solver++
SDE): a step takes `seed`, either an int or a `torch.Generator`. An int means "a fresh CPU
generator seeded with it", so a step given the same inputs and seed always returns the same result
and nothing outside the call changes. The draw is `torch.randn(model_output.shape,
dtype=model_output.dtype)` on that generator (float32 for the SDE solver, as its diffusers step
draws), then moved to the model output's device -- exactly what diffusers' `randn_tensor`
does inside `step(..., generator=torch.Generator("cpu").manual_seed(seed))`. Passing a Generator
instead draws from it (advancing its state, like diffusers' pipelines that hand one generator to
every step), which is the only impure use and is meant for reproducing a pipeline run verbatim.
"""

from __future__ import annotations

import torch

from ._validation import check_same_shape, checked_step_index
from .plan import SamplingPlan

Seed = int | torch.Generator


def randn_like_diffusers(
    shape: tuple[int, ...] | torch.Size,
    seed: Seed,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Standard normal noise equal to diffusers' `randn_tensor(shape, generator, device, dtype)`.

    With an int seed the generator is `torch.Generator("cpu").manual_seed(seed)`, so results are
    identical on every device: the noise is drawn on the CPU and then moved to `device`.
    """
    device = torch.device(device)
    if isinstance(seed, torch.Generator):
        generator = seed
    elif isinstance(seed, int) and not isinstance(seed, bool):
        generator = torch.Generator("cpu").manual_seed(seed)
    else:
        raise ValueError(f"seed must be an int or a torch.Generator, got {type(seed).__name__}")
    if generator.device.type == device.type:
        draw_device = device
    elif generator.device.type == "cpu":
        draw_device = torch.device("cpu")
    else:
        raise ValueError(
            f"seed is a {generator.device.type} generator, which cannot draw noise for {device}"
        )
    noise = torch.randn(tuple(shape), generator=generator, device=draw_device, dtype=dtype)
    return noise.to(device)


def noise_like(model_output: torch.Tensor, seed: Seed) -> torch.Tensor:
    """The per-step noise a stochastic diffusers step draws for this model output."""
    return randn_like_diffusers(model_output.shape, seed, model_output.dtype, model_output.device)


def add_noise(
    x0: torch.Tensor, noise: torch.Tensor, plan: SamplingPlan, step_index: int = 0
) -> torch.Tensor:
    """Noise clean latents to the level step `step_index` of `plan` expects, q(x_t | x_0).

    img2img uses step 0 (`plan.start_sigma` / `plan.start_timestep`). The parameterisation is the
    one the plan's solver samples in (`plan.parameterization`, from its row of the solver table):
      alpha_bar (DDPM, DDIM):     sqrt(ab_t) x0 + sqrt(1 - ab_t) noise   (DDPM eq. 4)
      ve (Euler family, Heun):    x0 + sigma noise                       (variance exploding, Karras et al.)
      vp (DPM-Solver++):          alpha_t x0 + sigma_t noise, alpha_t = 1/sqrt(sigma^2 + 1), sigma_t = sigma alpha_t
      flow:                       (1 - sigma) x0 + sigma noise           (rectified flow)
    The arithmetic mirrors the matching diffusers `add_noise` / `scale_noise`.
    """
    check_same_shape("noise", noise, "x0", x0)
    index = checked_step_index(plan, step_index)
    parameterization = plan.parameterization
    if parameterization == "alpha_bar":
        alpha_bar = plan.alpha_bar_step(index)[0].to(device=x0.device, dtype=x0.dtype)
        return alpha_bar**0.5 * x0 + (1 - alpha_bar) ** 0.5 * noise
    sigma = plan.sigmas[index].to(device=x0.device, dtype=x0.dtype)
    if parameterization == "ve":
        return x0 + noise * sigma
    if parameterization == "vp":
        alpha_t = 1 / ((sigma**2 + 1) ** 0.5)
        return alpha_t * x0 + (sigma * alpha_t) * noise
    return (1 - sigma) * x0 + sigma * noise
