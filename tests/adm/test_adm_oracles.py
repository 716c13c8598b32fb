"""The ADM plans and unguided steps against diffusers' schedulers (a PyPI oracle).

- Respacing: guided-diffusion's '250', '100', '50', '25' equal DDPMScheduler's 'linspace' spacing
  and 'ddimN' its 'leading' spacing (offset 0); other counts differ from both at rounding ties,
  which space_timesteps reproduces (test_adm_golden checks it against the official function).
- The learned-range and fixed-small DDPM steps equal DDPMScheduler(variance_type=...) and the
  DDIM step DDIMScheduler(set_alpha_to_one=True, use_clipped_model_output=True), x0 clipped in
  both. Tolerance 3e-5 (measured up to 7.6e-6 linear, 1.3e-5 cosine, at the low-noise steps): diffusers keeps
  alpha_bar in float32, we (as guided-diffusion) in float64, and near t = 0 the difference
  1 - alpha_bar (1e-4 at t = 0) keeps few of a float32 alpha_bar's bits.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler
from latentgraph.nodes.adm import diffusion
from latentgraph.nodes.adm.loaders import adm_schedule

TOL = 3e-5


@pytest.mark.parametrize("steps", [250, 100, 50, 25])
def test_respacing_is_diffusers_linspace(steps):
    scheduler = DDPMScheduler(num_train_timesteps=1000, timestep_spacing="linspace")
    scheduler.set_timesteps(steps)
    plan = diffusion.respaced_plan(adm_schedule("linear", 1000), str(steps))
    assert plan.timesteps.tolist() == scheduler.timesteps.tolist()


def test_ddim_respacing_is_diffusers_leading():
    scheduler = DDIMScheduler(num_train_timesteps=1000, timestep_spacing="leading", steps_offset=0)
    scheduler.set_timesteps(25)
    plan = diffusion.respaced_plan(adm_schedule("linear", 1000), "ddim25", "ddim")
    assert plan.timesteps.tolist() == scheduler.timesteps.tolist()


def test_alpha_bars_are_the_training_schedule():
    for kind, name in (("linear", "linear"), ("cosine", "squaredcos_cap_v2")):
        ours = diffusion.respaced_plan(adm_schedule(kind, 1000), "1000").alpha_bars.flip(0)
        theirs = DDPMScheduler(num_train_timesteps=1000, beta_schedule=name).alphas_cumprod
        assert (ours.float() - theirs).abs().max() < 1e-5


@pytest.mark.parametrize("variance", ["learned_range", "fixed_small"])
@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_ddpm_step_is_diffusers(variance, schedule):
    steps = 10
    scheduler = DDPMScheduler(num_train_timesteps=1000, variance_type=variance, clip_sample=True,
                              beta_schedule="linear" if schedule == "linear" else "squaredcos_cap_v2")
    scheduler.set_timesteps(steps)
    plan = diffusion.respaced_plan(adm_schedule(schedule, 1000), f"ddim{steps}", "ddpm")
    assert plan.timesteps.tolist() == scheduler.timesteps.tolist()
    gen = torch.Generator().manual_seed(0)
    sample = torch.randn(2, 3, 8, 8, generator=gen)
    channels = 6 if variance == "learned_range" else 3
    worst = 0.0
    for i, t in enumerate(scheduler.timesteps):
        output = torch.randn(2, channels, 8, 8, generator=gen) * 0.5
        if channels == 6:
            output[:, 3:] = output[:, 3:].tanh()  # v in [-1, 1]
        noise = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(i))
        theirs = scheduler.step(output, t, sample, generator=torch.Generator().manual_seed(i)).prev_sample
        ours, _ = diffusion.ddpm_step(sample, output, plan, i, noise)
        worst = max(worst, (ours - theirs).abs().max().item())
        sample = theirs
    print(f"ddpm {variance} {schedule}: max abs error {worst:.2e}")
    assert worst <= TOL


def test_ddim_step_is_diffusers():
    scheduler = DDIMScheduler(num_train_timesteps=1000, set_alpha_to_one=True, clip_sample=True, steps_offset=0)
    scheduler.set_timesteps(10)
    plan = diffusion.respaced_plan(adm_schedule("linear", 1000), "ddim10", "ddim")
    gen = torch.Generator().manual_seed(1)
    sample = torch.randn(2, 3, 8, 8, generator=gen)
    worst = 0.0
    for i, t in enumerate(scheduler.timesteps):
        eps = torch.randn(2, 3, 8, 8, generator=gen) * 0.5
        theirs = scheduler.step(eps, t, sample, eta=0.0, use_clipped_model_output=True).prev_sample
        ours, _ = diffusion.ddim_step(sample, torch.cat([eps, eps], dim=1), plan, i)  # variance channels unused
        worst = max(worst, (ours - theirs).abs().max().item())
        sample = theirs
    print(f"ddim: max abs error {worst:.2e}")
    assert worst <= TOL


def test_guidance_moves_the_mean_by_sigma_times_gradient():
    """Algorithm 1: the guided mean is the unguided one plus Sigma * g (no noise at the last step)."""
    plan = diffusion.respaced_plan(adm_schedule("linear", 1000), "10")
    gen = torch.Generator().manual_seed(2)
    x, out, g = (torch.randn(1, c, 4, 4, generator=gen) for c in (3, 6, 3))
    out[:, 3:] = out[:, 3:].tanh()
    mv = diffusion.p_mean_variance(x, out, plan, 3)
    noise = torch.zeros_like(x)
    guided, _ = diffusion.ddpm_step(x, out, plan, 3, noise, g)
    assert torch.allclose(guided, mv.mean + mv.variance * g, atol=1e-6)
    # Algorithm 2 in the unclipped case: eps_hat = eps - sqrt(1 - ab) g, then plain DDIM
    ab = float(plan.alpha_bars[3])
    eps_hat = out[:, :3] - np.sqrt(1 - ab) * g
    guided_ddim, _ = diffusion.ddim_step(x, out, plan, 3, gradient=g, clip_denoised=False)
    plain, _ = diffusion.ddim_step(x, eps_hat, plan, 3, clip_denoised=False)
    assert torch.allclose(guided_ddim, plain, atol=1e-5)
