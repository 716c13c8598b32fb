"""Schedules and sampling plans equal diffusers' tensors bit for bit (values and dtypes)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from diffusers.schedulers import DDPMScheduler
from latentgraph.nodes.diffusion.math import SANA_SCHEDULE, SD15_SCHEDULE, Schedule
from latentgraph.nodes.diffusion.solvers import make_plan

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

STEP_COUNTS = (1, 2, 5, 10, 20, 50)
SPACINGS = ("leading", "trailing", "linspace")
# Heun lists its levels twice in diffusers: its plans are compared in test_heun_and_sde.py.
DISCRETE_SOLVERS = ("ddpm", "ddim", "euler", "euler_ancestral", "dpmpp_2m", "dpmpp_2m_sde")
FLOW_SOLVERS = ("flow_euler", "flow_dpmpp_2m", "flow_dpmpp_2m_sde")


@pytest.mark.parametrize(
    ("beta_schedule", "beta_start", "beta_end"),
    [
        ("linear", 0.0001, 0.02),
        ("scaled_linear", 0.00085, 0.012),
        ("squaredcos_cap_v2", 0.0001, 0.02),
        ("sigmoid", 0.0001, 0.02),
    ],
)
def test_betas_and_alphas_cumprod_equal_diffusers(beta_schedule, beta_start, beta_end):
    ours = Schedule(beta_schedule=beta_schedule, beta_start=beta_start, beta_end=beta_end)
    theirs = DDPMScheduler(beta_schedule=beta_schedule, beta_start=beta_start, beta_end=beta_end)
    assert ours.betas.dtype == torch.float32
    assert torch.equal(ours.betas, theirs.betas)
    assert torch.equal(ours.alphas, theirs.alphas)
    assert torch.equal(ours.alphas_cumprod, theirs.alphas_cumprod)


def _assert_plan_matches(plan, scheduler):
    assert plan.timesteps.dtype == scheduler.timesteps.dtype
    assert torch.equal(plan.timesteps, scheduler.timesteps)
    if hasattr(scheduler, "sigmas"):
        assert torch.equal(plan.sigmas, scheduler.sigmas)
    assert len(plan) == len(plan.sigmas) - 1 == plan.num_inference_steps
    init_noise_sigma = getattr(scheduler, "init_noise_sigma", 1.0)
    assert plan.init_noise_sigma == float(init_noise_sigma)


@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("steps", STEP_COUNTS)
@pytest.mark.parametrize("solver", DISCRETE_SOLVERS)
def test_sd15_plan_equals_set_timesteps(oracle, solver, steps, spacing):
    plan = make_plan(SD15_SCHEDULE, steps, solver, spacing, steps_offset=1)
    _assert_plan_matches(plan, oracle(solver, steps, timestep_spacing=spacing))


@pytest.mark.parametrize("steps", STEP_COUNTS)
@pytest.mark.parametrize("solver", FLOW_SOLVERS)
def test_sana_plan_equals_set_timesteps(oracle, solver, steps):
    _assert_plan_matches(make_plan(SANA_SCHEDULE, steps, solver), oracle(solver, steps))


@pytest.mark.parametrize("shift", (1.0, 6.0))
@pytest.mark.parametrize("solver", FLOW_SOLVERS)
def test_flow_plan_follows_shift(oracle, solver, shift):
    schedule = dataclasses.replace(SANA_SCHEDULE, shift=shift)
    overrides = {"shift": shift} if solver == "flow_euler" else {"flow_shift": shift}
    _assert_plan_matches(make_plan(schedule, 7, solver), oracle(solver, 7, **overrides))


@pytest.mark.parametrize("beta_schedule", ("linear", "squaredcos_cap_v2"))
@pytest.mark.parametrize("solver", DISCRETE_SOLVERS)
def test_other_beta_schedules_and_default_offset(oracle, solver, beta_schedule):
    schedule = Schedule(beta_schedule=beta_schedule)
    plan = make_plan(schedule, 13, solver, "leading", steps_offset=0)
    scheduler = oracle(
        solver, 13, beta_schedule=beta_schedule, beta_start=0.0001, beta_end=0.02, steps_offset=0
    )
    _assert_plan_matches(plan, scheduler)


@pytest.mark.parametrize("solver", ("euler", "dpmpp_2m", "dpmpp_2m_sde"))
def test_final_sigma_min(oracle, solver):
    plan = make_plan(SD15_SCHEDULE, 10, solver, steps_offset=1, final_sigma="sigma_min")
    _assert_plan_matches(plan, oracle(solver, 10, final_sigmas_type="sigma_min"))
    assert plan.sigmas[-1] > 0


@pytest.mark.parametrize("set_alpha_to_one", (False, True))
@pytest.mark.parametrize("spacing", SPACINGS)
def test_ddim_alpha_tables(oracle, spacing, set_alpha_to_one):
    steps = 7
    plan = make_plan(
        SD15_SCHEDULE, steps, "ddim", spacing, steps_offset=1, set_alpha_to_one=set_alpha_to_one
    )
    scheduler = oracle("ddim", steps, timestep_spacing=spacing, set_alpha_to_one=set_alpha_to_one)
    for i, t in enumerate(scheduler.timesteps):
        prev_t = t - 1000 // steps
        expected_prev = (
            scheduler.alphas_cumprod[prev_t] if prev_t >= 0 else scheduler.final_alpha_cumprod
        )
        assert torch.equal(plan.alpha_bars[i], scheduler.alphas_cumprod[t])
        assert torch.equal(plan.alpha_bars_prev[i], expected_prev)


def test_ddpm_alpha_tables_step_to_next_planned_timestep(oracle):
    plan = make_plan(SD15_SCHEDULE, 5, "ddpm", "linspace", steps_offset=1)
    scheduler = oracle("ddpm", 5, timestep_spacing="linspace")
    for i, t in enumerate(scheduler.timesteps):
        prev_t = scheduler.previous_timestep(t)
        expected_prev = scheduler.alphas_cumprod[prev_t] if prev_t >= 0 else scheduler.one
        assert torch.equal(plan.alpha_bars_prev[i], expected_prev)
    assert plan.sigmas[-1] == 0


def test_plan_start_is_first_step():
    plan = make_plan(SD15_SCHEDULE, 20, "euler", steps_offset=1, denoise=0.5)
    assert plan.skipped_steps == 10 and len(plan) == 10 and plan.num_inference_steps == 20
    assert torch.equal(plan.start_timestep, plan.timesteps[0])
    assert torch.equal(plan.start_sigma, plan.sigmas[0])


def test_schedule_is_hashable_and_plans_are_reproducible():
    assert {SD15_SCHEDULE: 1}[dataclasses.replace(SD15_SCHEDULE)] == 1
    first = make_plan(SANA_SCHEDULE, 20, "flow_dpmpp_2m")
    second = make_plan(SANA_SCHEDULE, 20, "flow_dpmpp_2m")
    assert torch.equal(first.timesteps, second.timesteps)
    assert torch.equal(first.sigmas, second.sigmas)
