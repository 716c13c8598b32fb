"""Noise drawing, q(x_t | x_0), img2img plans and classifier-free guidance against diffusers."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_img2img import (
    StableDiffusionImg2ImgPipeline,
)
from diffusers.pipelines.stable_diffusion_3.pipeline_stable_diffusion_3_img2img import (
    StableDiffusion3Img2ImgPipeline,
)
from diffusers.utils.torch_utils import randn_tensor
from latentgraph.nodes.diffusion.math import (
    SANA_SCHEDULE,
    SD15_SCHEDULE,
    add_noise,
    cfg_combine,
    ddim_step,
    ddpm_step,
    dpmpp_2m_step,
    euler_ancestral_step,
    euler_step,
    flow_euler_step,
    randn_like_diffusers,
    scale_model_input,
)
from latentgraph.nodes.diffusion.solvers import SOLVER_NAMES, SOLVERS, make_plan
from latentgraph.nodes.diffusion.solvers.dpmpp_2m_sde import dpmpp_2m_sde_step

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

SHAPE = (2, 4, 8, 8)
FLOW_SOLVERS = tuple(name for name in SOLVER_NAMES if SOLVERS[name].flow)
# One model call per step, as one diffusers step() each (Heun's img2img is in test_heun_and_sde.py).
ONE_CALL_SOLVERS = tuple(name for name in SOLVER_NAMES if SOLVERS[name].model_calls == 1)


def schedule_for(solver):
    return SANA_SCHEDULE if solver in FLOW_SOLVERS else SD15_SCHEDULE


@pytest.mark.parametrize("dtype", (torch.float32, torch.float16, torch.bfloat16))
@pytest.mark.parametrize("shape", ((1, 4, 64, 64), (2, 32, 32, 32), (3,)))
def test_randn_equals_randn_tensor(shape, dtype):
    ours = randn_like_diffusers(shape, 42, dtype=dtype)
    theirs = randn_tensor(shape, generator=torch.Generator("cpu").manual_seed(42), dtype=dtype)
    assert ours.dtype == dtype and torch.equal(ours, theirs)


def test_randn_accepts_a_generator_and_advances_it():
    generator = torch.Generator().manual_seed(3)
    first = randn_like_diffusers((4,), generator)
    second = randn_like_diffusers((4,), generator)
    reference = torch.Generator().manual_seed(3)
    assert torch.equal(first, randn_tensor((4,), generator=reference))
    assert torch.equal(second, randn_tensor((4,), generator=reference))


def _diffusers_add_noise(scheduler, solver, x0, noise, timestep):
    timesteps = timestep.reshape(1).repeat(x0.shape[0])
    if solver == "flow_euler":
        return scheduler.scale_noise(x0, timesteps, noise)
    return scheduler.add_noise(x0, noise, timesteps)


@pytest.mark.parametrize("solver", SOLVER_NAMES)
def test_add_noise_equals_scheduler_add_noise(oracle, solver):
    plan = make_plan(schedule_for(solver), 10, solver, steps_offset=1)
    x0 = randn_like_diffusers(SHAPE, 1)
    noise = randn_like_diffusers(SHAPE, 2)
    for step_index in (0, 4, 9):
        scheduler = oracle(solver, 10)
        # Heun (order 2) lists each level after the first twice: step k is its entry 2k.
        timestep = scheduler.timesteps[step_index * scheduler.order]
        expected = _diffusers_add_noise(scheduler, solver, x0, noise, timestep)
        assert torch.equal(add_noise(x0, noise, plan, step_index), expected)


def _diffusers_get_timesteps(scheduler, solver, steps, strength):
    """The img2img pipelines' own truncation, called on a stand-in pipeline."""
    pipeline = (
        StableDiffusion3Img2ImgPipeline
        if solver in FLOW_SOLVERS
        else StableDiffusionImg2ImgPipeline
    )
    return pipeline.get_timesteps(SimpleNamespace(scheduler=scheduler), steps, strength, "cpu")


def _our_step(plan, x, model_output, i, state):
    seed = 100 + i
    if plan.solver == "ddpm":
        return (*ddpm_step(x, model_output, plan, i, seed), None)
    if plan.solver == "ddim":
        return (*ddim_step(x, model_output, plan, i), None)
    if plan.solver == "euler":
        return (*euler_step(x, model_output, plan, i), None)
    if plan.solver == "euler_ancestral":
        return (*euler_ancestral_step(x, model_output, plan, i, seed), None)
    if plan.solver == "flow_euler":
        return (*flow_euler_step(x, model_output, plan, i), None)
    if plan.solver.endswith("_sde"):
        return dpmpp_2m_sde_step(x, model_output, plan, i, state, seed)
    return dpmpp_2m_step(x, model_output, plan, i, state)


@pytest.mark.parametrize("strength", (0.3, 0.55, 0.75, 1.0))
@pytest.mark.parametrize("steps", (10, 25))
@pytest.mark.parametrize("solver", ONE_CALL_SOLVERS)
def test_img2img_plan_noising_and_loop_equal_pipeline(oracle, model, solver, steps, strength):
    scheduler = oracle(solver, steps)
    timesteps, remaining = _diffusers_get_timesteps(scheduler, solver, steps, strength)
    plan = make_plan(schedule_for(solver), steps, solver, steps_offset=1, denoise=strength)
    assert torch.equal(plan.timesteps, timesteps) and len(plan) == remaining
    assert plan.skipped_steps == steps - remaining

    x0 = randn_like_diffusers(SHAPE, 1)
    noise = randn_like_diffusers(SHAPE, 2)
    x_theirs = _diffusers_add_noise(scheduler, solver, x0, noise, timesteps[0])
    x_ours = add_noise(x0, noise, plan)
    assert torch.equal(x_ours, x_theirs)

    state = None
    for i, t in enumerate(timesteps):
        model_input = scale_model_input(x_ours, plan, i)
        expected_input = (
            scheduler.scale_model_input(x_theirs, t) if solver != "flow_euler" else x_theirs
        )
        assert torch.equal(model_input, expected_input)
        x_ours, _, state = _our_step(plan, x_ours, model(model_input, t), i, state)
        kwargs = {}
        if solver in ("ddpm", "euler_ancestral") or solver.endswith("_sde"):
            kwargs["generator"] = torch.Generator().manual_seed(100 + i)
        x_theirs = scheduler.step(model(expected_input, t), t, x_theirs, **kwargs).prev_sample
        assert torch.equal(x_ours, x_theirs), (i, (x_ours - x_theirs).abs().max().item())


def test_img2img_dpm_judges_lower_order_final_on_the_full_plan(oracle, model):
    """diffusers decides lower_order_final on len(timesteps) of the untruncated plan."""
    scheduler = oracle("dpmpp_2m", 20, final_sigmas_type="sigma_min")
    timesteps, _ = _diffusers_get_timesteps(scheduler, "dpmpp_2m", 20, 0.5)
    plan = make_plan(
        SD15_SCHEDULE, 20, "dpmpp_2m", steps_offset=1, denoise=0.5, final_sigma="sigma_min"
    )
    x_ours = x_theirs = randn_like_diffusers(SHAPE, 3)
    state = None
    for i, t in enumerate(timesteps):
        x_ours, _, state = dpmpp_2m_step(x_ours, model(x_ours, t), plan, i, state)
        x_theirs = scheduler.step(model(x_theirs, t), t, x_theirs).prev_sample
    assert len(plan) == 10 and torch.equal(x_ours, x_theirs)


@pytest.mark.parametrize("scale", (1.0, 4.5, 7.5))
def test_cfg_combine_is_the_pipelines_arithmetic(scale):
    uncond = randn_like_diffusers(SHAPE, 1)
    cond = randn_like_diffusers(SHAPE, 2)
    # StableDiffusionPipeline / SanaPipeline: noise_pred_uncond + scale * (text - uncond)
    noise_pred_uncond, noise_pred_text = torch.cat([uncond, cond]).chunk(2)
    expected = noise_pred_uncond + scale * (noise_pred_text - noise_pred_uncond)
    assert torch.equal(cfg_combine(uncond, cond, scale), expected)
