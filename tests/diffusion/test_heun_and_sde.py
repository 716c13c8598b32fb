"""Heun and DPM-Solver++(2M) SDE against diffusers where the shared tests cannot reach.

diffusers' HeunDiscreteScheduler lists every level but the first twice (one entry per model
call) while our plan lists each once and makes both calls in one step; these tests compare plans
and img2img runs across that difference, bit for bit. The loops over every step count, spacing
and prediction type are in test_dmath_steps.py, the sampler through the executor in
test_sampler_nodes.py.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_img2img import (
    StableDiffusionImg2ImgPipeline,
)
from latentgraph.nodes.diffusion.math import (
    SD15_SCHEDULE,
    Schedule,
    add_noise,
    randn_like_diffusers,
    scale_model_input,
)
from latentgraph.nodes.diffusion.solvers import make_plan
from latentgraph.nodes.diffusion.solvers.dpmpp_2m_sde import dpmpp_2m_sde_step
from latentgraph.nodes.diffusion.solvers.heun import heun_correction, heun_step

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

SHAPE = (2, 4, 8, 8)


def repeated_levels(
    timesteps: torch.Tensor, sigmas: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Our plan's tables as HeunDiscreteScheduler lists them: every timestep after the first
    twice, every sigma but the first and the final 0 twice."""
    return (
        torch.cat([timesteps[:1], timesteps[1:].repeat_interleave(2)]),
        torch.cat([sigmas[:1], sigmas[1:-1].repeat_interleave(2), sigmas[-1:]]),
    )


def heun_loop(plan, x, model):
    """(model_input, sample after the call) per model call, as diffusers' loop makes them."""
    records = []
    for i in range(len(plan)):
        model_input = scale_model_input(x, plan, i)
        x, _, stage = heun_step(x, model(model_input, plan.timesteps[i]), plan, i)
        records.append((model_input, x))
        if i + 1 < len(plan):
            model_input = scale_model_input(x, plan, i + 1)
            x, _ = heun_correction(x, model(model_input, plan.timesteps[i + 1]), plan, i, stage)
            records.append((model_input, x))
    return records


@pytest.mark.parametrize("spacing", ("leading", "trailing", "linspace"))
@pytest.mark.parametrize("steps", (1, 2, 5, 10, 20, 50))
def test_heun_plan_is_set_timesteps_without_its_repeats(oracle, steps, spacing):
    plan = make_plan(SD15_SCHEDULE, steps, "heun", spacing, steps_offset=1)
    scheduler = oracle("heun", steps, timestep_spacing=spacing)
    timesteps, sigmas = repeated_levels(plan.timesteps, plan.sigmas)
    assert timesteps.dtype == scheduler.timesteps.dtype and torch.equal(
        timesteps, scheduler.timesteps
    )
    assert sigmas.dtype == scheduler.sigmas.dtype and torch.equal(sigmas, scheduler.sigmas)
    assert plan.init_noise_sigma == float(scheduler.init_noise_sigma)
    assert len(plan) == plan.num_inference_steps == steps and plan.sigmas[-1] == 0


@pytest.mark.parametrize("beta_schedule", ("linear", "squaredcos_cap_v2"))
def test_heun_plan_on_other_beta_schedules(oracle, beta_schedule):
    plan = make_plan(Schedule(beta_schedule=beta_schedule), 13, "heun", "leading", steps_offset=0)
    scheduler = oracle(
        "heun", 13, beta_schedule=beta_schedule, beta_start=0.0001, beta_end=0.02, steps_offset=0
    )
    timesteps, sigmas = repeated_levels(plan.timesteps, plan.sigmas)
    assert torch.equal(timesteps, scheduler.timesteps) and torch.equal(sigmas, scheduler.sigmas)


@pytest.mark.parametrize("strength", (0.3, 0.55, 0.75, 1.0))
@pytest.mark.parametrize("steps", (10, 25))
def test_heun_img2img_plan_noising_and_loop_equal_pipeline(oracle, model, steps, strength):
    scheduler = oracle("heun", steps)
    # StableDiffusionImg2ImgPipeline.get_timesteps: the tail from entry t_start * order (order 2),
    # and set_begin_index there.
    timesteps, remaining = StableDiffusionImg2ImgPipeline.get_timesteps(
        SimpleNamespace(scheduler=scheduler), steps, strength, "cpu"
    )
    plan = make_plan(SD15_SCHEDULE, steps, "heun", steps_offset=1, denoise=strength)
    assert len(plan) == remaining and plan.skipped_steps == steps - remaining
    assert torch.equal(repeated_levels(plan.timesteps, plan.sigmas)[0], timesteps)

    x0, noise = randn_like_diffusers(SHAPE, 1), randn_like_diffusers(SHAPE, 2)
    x_theirs = scheduler.add_noise(x0, noise, timesteps[:1].repeat(SHAPE[0]))
    x_ours = add_noise(x0, noise, plan)
    assert torch.equal(x_ours, x_theirs)
    theirs = []
    for t in timesteps:
        model_input = scheduler.scale_model_input(x_theirs, t)
        x_theirs = scheduler.step(model(model_input, t), t, x_theirs).prev_sample
        theirs.append((model_input, x_theirs))
    ours = heun_loop(plan, x_ours, model)
    assert len(ours) == len(theirs) == 2 * remaining - 1
    for call, ((a_in, a), (b_in, b)) in enumerate(zip(ours, theirs, strict=True)):
        assert torch.equal(a_in, b_in) and torch.equal(a, b), (call, (a - b).abs().max().item())


def test_heun_steps_are_pure(model):
    plan = make_plan(SD15_SCHEDULE, 10, "heun", steps_offset=1)
    sample = randn_like_diffusers(SHAPE, 1)
    output = model(sample, plan.timesteps[3])
    kept = (sample.clone(), output.clone())
    predicted, _, stage = heun_step(sample, output, plan, 3)
    stage_kept = (stage.sample.clone(), stage.derivative.clone())
    second = model(predicted, plan.timesteps[4])
    first_result = heun_correction(predicted, second, plan, 3, stage)
    again = heun_correction(predicted, second, plan, 3, stage)
    assert all(torch.equal(a, b) for a, b in zip(first_result, again, strict=True))
    assert torch.equal(sample, kept[0]) and torch.equal(output, kept[1])
    assert torch.equal(stage.sample, stage_kept[0]) and torch.equal(stage.derivative, stage_kept[1])


@pytest.mark.parametrize("steps", (3, 20))
def test_sde_draws_one_float32_noise_per_step_from_the_shared_stream(oracle, model, steps):
    """Every step, the last included, advances the pipeline's one generator exactly as diffusers'
    step does (one float32 randn of the model output's shape), so a half-precision run continues
    the same stream."""
    plan = make_plan(SD15_SCHEDULE, steps, "dpmpp_2m_sde", steps_offset=1)
    scheduler = oracle("dpmpp_2m_sde", steps)
    ours, theirs = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    x = y = randn_like_diffusers(SHAPE, 3, dtype=torch.float16)
    state = None
    for i, t in enumerate(scheduler.timesteps):
        x, _, state = dpmpp_2m_sde_step(x, model(x.float(), t).half(), plan, i, state, ours)
        y = scheduler.step(model(y.float(), t).half(), t, y, generator=theirs).prev_sample
        assert x.dtype == torch.float16 and torch.equal(x, y)
    assert torch.equal(ours.get_state(), theirs.get_state())
