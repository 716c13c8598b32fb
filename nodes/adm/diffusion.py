"""ADM's sampling arithmetic: respaced plans, learned variances, classifier guidance.

guided-diffusion samples a 1000-step model on a subset of its timesteps ("respacing": "250",
"50,100" by sections, "ddim25" with DDIM's even stride) and recomputes the betas between the
kept timesteps, 1 - alpha_bar_t / alpha_bar_prev. Our alpha_bar plans already step between
planned timesteps that way, so a respaced run is a SamplingPlan of the 'ddpm' or 'ddim'
solver whose timesteps are the kept ones (LG_DDPMStep and LG_DDIMStep step it too). Its
alpha_bar tables are computed in float64 as guided-diffusion computes its own; each coefficient
is rounded to float32 where it meets a tensor, as its ``_extract_into_tensor`` does.

The steps here are guided-diffusion's p_sample and ddim_sample on such a plan:

- p_mean_variance: x0 from eps (clipped to [-1, 1] when asked), the posterior mean, and the
  variance, either learned (the model's extra channels v in [-1, 1] interpolate the log variance
  between beta_t and the posterior's beta_tilde_t, Nichol & Dhariwal 2021 eq. 15) or
  beta_tilde_t alone;
- Algorithm 1 of Dhariwal & Nichol 2021 (classifier-guided DDPM): mean + Sigma * gradient;
- Algorithm 2 (classifier-guided DDIM): eps_hat = eps - sqrt(1 - alpha_bar_t) * gradient;

where gradient = s * grad_x log p_phi(y | x_t, t), which :func:`classifier_gradient` takes as
guided-diffusion's ``cond_fn`` does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..diffusion.math import ArgumentError, SamplingPlan, Schedule
from ..diffusion.math.plan import PlanRequest, PlanTables, build_plan
from ..diffusion.solvers import SOLVERS

#: guided-diffusion's cosine schedule caps each beta at this (Nichol & Dhariwal 2021, sec. 3.2)
COSINE_MAX_BETA = 0.999
ADM_SOLVERS = ("ddpm", "ddim")


def adm_betas(schedule: Schedule) -> np.ndarray:
    """float64 betas as guided-diffusion builds them: 'linear' (its beta range scaled by
    1000 / T, which the schedule's beta_start and beta_end are for T = 1000) or the cosine
    schedule ('squaredcos_cap_v2')."""
    steps = schedule.num_train_timesteps
    if schedule.beta_schedule == "linear":
        return np.linspace(schedule.beta_start, schedule.beta_end, steps, dtype=np.float64)
    if schedule.beta_schedule == "squaredcos_cap_v2":
        def alpha_bar(t: float) -> float:
            return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
        return np.array([min(1 - alpha_bar((i + 1) / steps) / alpha_bar(i / steps), COSINE_MAX_BETA)
                         for i in range(steps)], dtype=np.float64)
    raise ArgumentError("schedule", f"ADM schedules are 'linear' or 'squaredcos_cap_v2' (cosine), "
                                    f"not {schedule.beta_schedule!r}")


def space_timesteps(num_timesteps: int, respacing: str) -> list[int]:
    """The kept timesteps, ascending, for guided-diffusion's respacing string: 'ddimN' keeps
    range(0, T, stride) for the integer stride giving N steps; otherwise comma-separated counts,
    one per equal section of [0, T), each section's count spread over it by rounding a float
    stride from its start."""
    text = respacing.strip()
    if text.startswith("ddim"):
        try:
            wanted = int(text[4:])
        except ValueError:
            raise ArgumentError("respacing", f"expected 'ddimN' with an integer N, got {respacing!r}") from None
        for stride in range(1, num_timesteps):
            if len(range(0, num_timesteps, stride)) == wanted:
                return list(range(0, num_timesteps, stride))
        raise ArgumentError("respacing", f"no integer stride makes exactly {wanted} steps of "
                                         f"{num_timesteps}")
    try:
        counts = [int(part) for part in text.split(",")]
    except ValueError:
        raise ArgumentError("respacing", f"expected step counts such as '250' or '10,20', or 'ddim25'; "
                                         f"got {respacing!r}") from None
    if not counts or len(counts) > num_timesteps or any(c < 1 for c in counts):
        raise ArgumentError("respacing", f"step counts must be positive, at most {num_timesteps} sections; "
                                         f"got {respacing!r}")
    size_per, extra = divmod(num_timesteps, len(counts))
    start, kept = 0, []
    for i, count in enumerate(counts):
        size = size_per + (1 if i < extra else 0)
        if size < count:
            raise ArgumentError("respacing", f"cannot take {count} steps from a section of {size}")
        stride = 1 if count <= 1 else (size - 1) / (count - 1)
        position = 0.0
        for _ in range(count):
            kept.append(start + round(position))
            position += stride
        start += size
    return sorted(set(kept))


def respaced_plan(schedule: Schedule, respacing: str, solver: str = "ddpm") -> SamplingPlan:
    """A plan of the kept timesteps (descending) of `respacing`, for solver 'ddpm' or 'ddim':
    each step goes to the next kept timestep, the last one to alpha_bar = 1."""
    if solver not in ADM_SOLVERS:
        raise ArgumentError("solver", f"ADM samples with {' or '.join(ADM_SOLVERS)}, not {solver!r}")
    alphas_cumprod = np.cumprod(1.0 - adm_betas(schedule))
    kept = np.array(space_timesteps(schedule.num_train_timesteps, respacing), dtype=np.int64)

    def tables(request: PlanRequest) -> PlanTables:
        timesteps = kept[::-1].copy()
        alpha_bars = alphas_cumprod[timesteps]
        alpha_bars_prev = np.append(alpha_bars[1:], 1.0)
        levels = np.append(alpha_bars, 1.0)
        return PlanTables(
            timesteps=torch.from_numpy(timesteps),
            sigmas=torch.from_numpy(np.sqrt((1 - levels) / levels).astype(np.float32)),
            alpha_bars=torch.from_numpy(alpha_bars),
            alpha_bars_prev=torch.from_numpy(alpha_bars_prev),
        )

    spec = SOLVERS[solver]
    request = PlanRequest(schedule, len(kept))
    return build_plan(spec.name, tables, spec.parameterization, spec.steppers, request)


@dataclass(frozen=True)
class MeanVariance:
    """p(x_prev | x_t) of one step, and the predictions it came from."""

    mean: torch.Tensor
    variance: torch.Tensor
    log_variance: torch.Tensor
    x0: torch.Tensor
    eps: torch.Tensor


def _f32(value: torch.Tensor | float) -> torch.Tensor:
    """A float64 coefficient rounded to float32, as guided-diffusion extracts its tables."""
    return torch.as_tensor(value, dtype=torch.float64).float()


def _alpha_bars(plan: SamplingPlan, index: int) -> tuple[torch.Tensor, torch.Tensor]:
    if plan.parameterization != "alpha_bar":
        raise ArgumentError("plan", f"ADM steps take 'ddpm' or 'ddim' plans, not a {plan.solver!r} plan")
    ab, ab_prev = plan.alpha_bar_step(index)
    return ab.double(), ab_prev.double()


def _posterior_variance(plan: SamplingPlan, index: int) -> torch.Tensor:
    ab, ab_prev = _alpha_bars(plan, index)
    return (1 - ab / ab_prev) * (1 - ab_prev) / (1 - ab)


def _clipped_log_posterior_variance(plan: SamplingPlan, index: int) -> torch.Tensor:
    """log beta_tilde; at the step onto x_0, where beta_tilde is 0, the step before's value
    (guided-diffusion's posterior_log_variance_clipped)."""
    variance = _posterior_variance(plan, index)
    if variance <= 0 and plan.num_steps > 1:  # only the last step lands on alpha_bar = 1
        variance = _posterior_variance(plan, plan.num_steps - 2)
    return torch.log(variance)


def p_mean_variance(sample: torch.Tensor, model_output: torch.Tensor, plan: SamplingPlan, index: int,
                    clip_denoised: bool = True) -> MeanVariance:
    """Mean and variance of p(x_prev | x_t) from an eps-predicting ADM output: C channels of
    eps (variance beta_tilde), or 2C channels, eps then the learned interpolation v."""
    channels = sample.shape[1]
    if model_output.shape[1] == 2 * channels:
        eps, v = model_output.split(channels, dim=1)
    elif model_output.shape[1] == channels:
        eps, v = model_output, None
    else:
        raise ArgumentError("model_output", f"{model_output.shape[1]} channels for a sample of {channels}: "
                                            f"expected {channels} (eps) or {2 * channels} (eps and variance)")
    ab, ab_prev = _alpha_bars(plan, index)
    beta = 1 - ab / ab_prev
    x0 = _f32((1 / ab).sqrt()) * sample - _f32((1 / ab - 1).sqrt()) * eps
    if clip_denoised:
        x0 = x0.clamp(-1, 1)
    mean = _f32(beta * ab_prev.sqrt() / (1 - ab)) * x0 + _f32((1 - ab_prev) * (1 - beta).sqrt() / (1 - ab)) * sample
    min_log = _clipped_log_posterior_variance(plan, index)
    if v is None:
        log_variance = _f32(min_log).expand_as(sample)
        variance = _f32(_posterior_variance(plan, index)).expand_as(sample)
    else:
        frac = (v + 1) / 2
        log_variance = frac * _f32(torch.log(beta)) + (1 - frac) * _f32(min_log)
        variance = torch.exp(log_variance)
    return MeanVariance(mean, variance, log_variance, x0, eps)


def _is_last(plan: SamplingPlan, index: int) -> bool:
    """The step onto x_0 draws no noise (guided-diffusion's nonzero_mask)."""
    return index == plan.num_steps - 1


def ddpm_step(sample: torch.Tensor, model_output: torch.Tensor, plan: SamplingPlan, index: int,
              noise: torch.Tensor, gradient: torch.Tensor | None = None,
              clip_denoised: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """guided-diffusion's p_sample: (x_prev, x0). With a classifier gradient s * grad log p(y|x_t),
    Algorithm 1: the mean moves by Sigma * gradient (condition_mean)."""
    out = p_mean_variance(sample, model_output, plan, index, clip_denoised)
    mean = out.mean
    if gradient is not None:
        mean = mean.float() + out.variance * gradient.float()
    if _is_last(plan, index):
        return mean, out.x0
    return mean + torch.exp(0.5 * out.log_variance) * noise, out.x0


def ddim_step(sample: torch.Tensor, model_output: torch.Tensor, plan: SamplingPlan, index: int,
              eta: float = 0.0, noise: torch.Tensor | None = None, gradient: torch.Tensor | None = None,
              clip_denoised: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """guided-diffusion's ddim_sample: (x_prev, x0). With a classifier gradient, Algorithm 2:
    eps_hat = eps - sqrt(1 - alpha_bar_t) * gradient, and x0 re-derived from eps_hat
    (condition_score); then DDIM's eq. 12 from x0 and the eps it implies."""
    out = p_mean_variance(sample, model_output, plan, index, clip_denoised)
    ab, ab_prev = _alpha_bars(plan, index)
    recip, recipm1 = _f32((1 / ab).sqrt()), _f32((1 / ab - 1).sqrt())
    x0 = out.x0
    if gradient is not None:
        eps = (recip * sample - x0) / recipm1
        eps = eps - _f32(1 - ab).sqrt() * gradient
        x0 = recip * sample - recipm1 * eps
    eps = (recip * sample - x0) / recipm1
    ab32, ab_prev32 = _f32(ab), _f32(ab_prev)
    sigma = eta * torch.sqrt((1 - ab_prev32) / (1 - ab32)) * torch.sqrt(1 - ab32 / ab_prev32)
    mean = x0 * torch.sqrt(ab_prev32) + torch.sqrt(1 - ab_prev32 - sigma**2) * eps
    if eta > 0 and not _is_last(plan, index):
        if noise is None:
            raise ArgumentError("seed", "DDIM with eta > 0 draws noise: give it")
        mean = mean + sigma * noise
    return mean, x0


def classifier_gradient(classifier: torch.nn.Module, sample: torch.Tensor, timestep: torch.Tensor,
                        labels: torch.Tensor, scale: float) -> torch.Tensor:
    """s * grad_x sum_i log softmax(classifier(x_i, t))[y_i], guided-diffusion's cond_fn. Runs
    with autograd on whatever mode the caller is in (nodes may run under no_grad)."""
    with torch.inference_mode(False), torch.enable_grad():
        x = sample.detach().clone().requires_grad_(True)
        t = timestep.detach().clone().to(sample.device).expand(sample.shape[0])
        logits = classifier(x, t)
        log_probs = torch.log_softmax(logits, dim=-1)
        selected = log_probs[torch.arange(len(logits), device=logits.device), labels.view(-1)]
        (grad,) = torch.autograd.grad(selected.sum(), x)
    return grad * scale
