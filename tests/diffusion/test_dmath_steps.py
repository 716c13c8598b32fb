"""Full sampling loops: our pure steps against diffusers' schedulers, bit for bit.

A fixed fake model, deterministic in (x, t), drives both loops from the same initial noise; every
step's model input, next sample and x0 prediction must be bitwise equal (torch.equal). Stochastic
steps draw from per-step seeds; diffusers gets a fresh CPU generator seeded the same way. Heun
makes two model calls per step and diffusers' Heun one per `step()`, so its loop is compared call
by call: predictor against the first-order call, corrector against the second-order one.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from diffusers.utils.torch_utils import randn_tensor
from latentgraph.nodes.diffusion.math import (
    SANA_SCHEDULE,
    SD15_SCHEDULE,
    DPMSolverState,
    ddim_step,
    ddpm_step,
    dpmpp_2m_step,
    euler_ancestral_step,
    euler_step,
    flow_euler_step,
    randn_like_diffusers,
    scale_model_input,
)
from latentgraph.nodes.diffusion.solvers import SOLVERS, make_plan
from latentgraph.nodes.diffusion.solvers.dpmpp_2m_sde import dpmpp_2m_sde_step
from latentgraph.nodes.diffusion.solvers.heun import heun_correction, heun_step

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

SHAPE = (1, 4, 8, 8)
NOISE_SEED = 7
STEP_SEED = 1000  # step i draws its noise from seed STEP_SEED + i
STEP_COUNTS = (1, 2, 5, 10, 20, 50)
SPACINGS = ("leading", "trailing", "linspace")
# (solver, DDIM eta); DDIM runs deterministic and fully stochastic.
DISCRETE_CASES = [
    ("ddpm", 0.0),
    ("ddim", 0.0),
    ("ddim", 1.0),
    ("euler", 0.0),
    ("euler_ancestral", 0.0),
    ("heun", 0.0),
    ("dpmpp_2m", 0.0),
    ("dpmpp_2m_sde", 0.0),
]
FLOW_SOLVERS = ("flow_euler", "flow_dpmpp_2m", "flow_dpmpp_2m_sde")
DPM_SOLVERS = ("dpmpp_2m", "flow_dpmpp_2m", "dpmpp_2m_sde", "flow_dpmpp_2m_sde")
# Solvers whose diffusers step() takes a generator (DDIM's only with eta > 0).
STOCHASTIC = ("ddpm", "euler_ancestral", "dpmpp_2m_sde", "flow_dpmpp_2m_sde")


def our_step(plan, x, model_output, i, state, *, eta=0.0, lower_order_final=True, seed=None):
    seed = STEP_SEED + i if seed is None else seed
    solver = plan.solver
    if solver == "ddpm":
        return (*ddpm_step(x, model_output, plan, i, seed), None)
    if solver == "ddim":
        return (*ddim_step(x, model_output, plan, i, eta=eta, seed=seed if eta else None), None)
    if solver == "euler":
        return (*euler_step(x, model_output, plan, i), None)
    if solver == "euler_ancestral":
        return (*euler_ancestral_step(x, model_output, plan, i, seed), None)
    if solver == "flow_euler":
        return (*flow_euler_step(x, model_output, plan, i), None)
    if solver == "heun":
        return heun_step(x, model_output, plan, i)  # the predictor: (x~, denoised, stage)
    if solver.endswith("_sde"):
        return dpmpp_2m_sde_step(x, model_output, plan, i, state, seed, lower_order_final)
    return dpmpp_2m_step(x, model_output, plan, i, state, lower_order_final)


def our_loop(plan, x, model, *, start=0, state=None, **step_options):
    """Run steps start.. of `plan`; one (model_input, prev_sample, denoised, state) per model call.

    A two-evaluation solver (Heun) evaluates the model again where its predictor moved the
    sample, at step i + 1's level, and corrects; the plan's last step has the predictor only."""
    records = []
    for i in range(start, len(plan)):
        model_input = scale_model_input(x, plan, i)
        model_output = model(model_input, plan.timesteps[i])
        x, denoised, state = our_step(plan, x, model_output, i, state, **step_options)
        records.append((model_input, x, denoised, state))
        if SOLVERS[plan.solver].model_calls == 2 and i + 1 < len(plan):
            model_input = scale_model_input(x, plan, i + 1)
            model_output = model(model_input, plan.timesteps[i + 1])
            x, denoised = heun_correction(x, model_output, plan, i, state)
            records.append((model_input, x, denoised, None))
    return records


def diffusers_loop(scheduler, solver, x, model, *, eta=0.0, generator=None):
    """The same loop through a diffusers scheduler; one (model_input, prev, denoised) per step."""
    records = []
    for i, t in enumerate(scheduler.timesteps):
        model_input = scheduler.scale_model_input(x, t) if solver != "flow_euler" else x
        model_output = model(model_input, t)
        kwargs = {}
        if solver in STOCHASTIC or (solver == "ddim" and eta > 0):
            kwargs["generator"] = generator or torch.Generator().manual_seed(STEP_SEED + i)
        if solver == "ddim":
            kwargs["eta"] = eta
        result = scheduler.step(model_output, t, x, **kwargs)
        if solver in DPM_SOLVERS:
            denoised = scheduler.model_outputs[-1]
        elif solver == "flow_euler":
            # FlowMatchEuler returns no x0; its stochastic branch forms x0 = x - sigma * v from
            # the float32 sample, which is what flow_euler_step reports.
            sigma = scheduler.sigmas[scheduler.step_index - 1]
            denoised = x.to(torch.float32) - sigma * model_output
        else:
            denoised = result.pred_original_sample
        x = result.prev_sample
        records.append((model_input, x, denoised))
    return records


def assert_records_equal(ours, theirs):
    assert len(ours) == len(theirs)
    for step, (mine, reference) in enumerate(zip(ours, theirs, strict=True)):
        for name, a, b in zip(
            ("model_input", "prev_sample", "denoised"), mine, reference, strict=False
        ):
            assert a.dtype == b.dtype, (step, name)
            assert torch.equal(a, b), (step, name, (a - b).abs().max().item())


def initial_noise(plan, scheduler):
    ours = randn_like_diffusers(SHAPE, NOISE_SEED) * plan.init_noise_sigma
    theirs = randn_tensor(SHAPE, generator=torch.Generator().manual_seed(NOISE_SEED))
    # FlowMatchEuler has no init_noise_sigma: flow pipelines start from unscaled noise.
    theirs = theirs * getattr(scheduler, "init_noise_sigma", 1.0)
    assert torch.equal(ours, theirs)
    return ours


@pytest.mark.parametrize("steps", STEP_COUNTS)
@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("prediction_type", ("epsilon", "v_prediction"))
@pytest.mark.parametrize(("solver", "eta"), DISCRETE_CASES)
def test_sd15_loop_is_bitwise_equal(oracle, model, solver, eta, prediction_type, spacing, steps):
    schedule = dataclasses.replace(SD15_SCHEDULE, prediction_type=prediction_type)
    plan = make_plan(schedule, steps, solver, spacing, steps_offset=1)
    scheduler = oracle(solver, steps, timestep_spacing=spacing, prediction_type=prediction_type)
    x = initial_noise(plan, scheduler)
    assert_records_equal(
        our_loop(plan, x, model, eta=eta), diffusers_loop(scheduler, solver, x, model, eta=eta)
    )


@pytest.mark.parametrize("steps", STEP_COUNTS)
@pytest.mark.parametrize("solver", FLOW_SOLVERS)
def test_sana_loop_is_bitwise_equal(oracle, model, solver, steps):
    plan = make_plan(SANA_SCHEDULE, steps, solver)
    scheduler = oracle(solver, steps)
    x = initial_noise(plan, scheduler)
    assert_records_equal(our_loop(plan, x, model), diffusers_loop(scheduler, solver, x, model))


@pytest.mark.parametrize("solver", ("ddpm", "euler_ancestral", "dpmpp_2m_sde"))
def test_one_shared_generator_reproduces_a_pipeline_run(oracle, model, solver):
    """Pipelines hand one generator to every step; passing a Generator as `seed` does the same."""
    plan = make_plan(SD15_SCHEDULE, 10, solver, steps_offset=1)
    scheduler = oracle(solver, 10)
    x = initial_noise(plan, scheduler)
    ours = []
    generator = torch.Generator().manual_seed(5)
    state = None
    x_ours = x
    for i in range(len(plan)):
        model_input = scale_model_input(x_ours, plan, i)
        x_ours, denoised, state = our_step(
            plan, x_ours, model(model_input, plan.timesteps[i]), i, state, seed=generator
        )
        ours.append((model_input, x_ours, denoised))
    theirs = diffusers_loop(scheduler, solver, x, model, generator=torch.Generator().manual_seed(5))
    assert_records_equal(ours, theirs)


@pytest.mark.parametrize("resume_at", (1, 7, 14, 19))
@pytest.mark.parametrize(
    ("schedule", "solver"),
    [
        (SD15_SCHEDULE, "dpmpp_2m"),
        (SANA_SCHEDULE, "flow_dpmpp_2m"),
        (SD15_SCHEDULE, "dpmpp_2m_sde"),
        (SANA_SCHEDULE, "flow_dpmpp_2m_sde"),
    ],
)
def test_dpm_resumes_exactly_from_a_cached_middle_step(model, schedule, solver, resume_at):
    plan = make_plan(schedule, 20, solver, steps_offset=1)
    x = randn_like_diffusers(SHAPE, NOISE_SEED)
    full = our_loop(plan, x, model)
    _, cached_sample, _, cached_state = full[resume_at - 1]
    assert isinstance(cached_state, DPMSolverState) and cached_state.step_index == resume_at - 1
    resumed = our_loop(plan, cached_sample, model, start=resume_at, state=cached_state)
    for (_, a, da, _), (_, b, db, _) in zip(resumed, full[resume_at:], strict=True):
        assert torch.equal(a, b) and torch.equal(da, db)


@pytest.mark.parametrize("lower_order_final", (True, False))
@pytest.mark.parametrize("steps", (5, 20))
@pytest.mark.parametrize("solver", ("dpmpp_2m", "dpmpp_2m_sde"))
def test_dpm_lower_order_final_with_nonzero_final_sigma(
    oracle, model, solver, steps, lower_order_final
):
    plan = make_plan(SD15_SCHEDULE, steps, solver, steps_offset=1, final_sigma="sigma_min")
    scheduler = oracle(
        solver, steps, final_sigmas_type="sigma_min", lower_order_final=lower_order_final
    )
    x = initial_noise(plan, scheduler)
    ours = our_loop(plan, x, model, lower_order_final=lower_order_final)
    assert_records_equal(ours, diffusers_loop(scheduler, solver, x, model))


def test_dpm_lower_order_final_changes_the_last_step_of_short_plans(model):
    plan = make_plan(SD15_SCHEDULE, 5, "dpmpp_2m", steps_offset=1, final_sigma="sigma_min")
    x = randn_like_diffusers(SHAPE, NOISE_SEED)
    first_order_end = our_loop(plan, x, model, lower_order_final=True)[-1][1]
    second_order_end = our_loop(plan, x, model, lower_order_final=False)[-1][1]
    assert not torch.equal(first_order_end, second_order_end)


@pytest.mark.parametrize(
    ("solver", "eta"), [*DISCRETE_CASES, *((name, 0.0) for name in FLOW_SOLVERS)]
)
def test_half_precision_loop_is_bitwise_equal(oracle, model, solver, eta):
    schedule = SANA_SCHEDULE if solver.startswith("flow") else SD15_SCHEDULE
    plan = make_plan(schedule, 5, solver, steps_offset=1)
    scheduler = oracle(solver, 5)
    x = randn_like_diffusers(SHAPE, NOISE_SEED, dtype=torch.float16)

    def half_model(x, t):
        return model(x.float(), t).half()

    ours = our_loop(plan, x, half_model, eta=eta)
    assert_records_equal(ours, diffusers_loop(scheduler, solver, x, half_model, eta=eta))


@pytest.mark.parametrize(
    ("solver", "eta"), [*DISCRETE_CASES, *((name, 0.0) for name in FLOW_SOLVERS)]
)
def test_steps_are_pure(model, solver, eta):
    schedule = SANA_SCHEDULE if solver.startswith("flow") else SD15_SCHEDULE
    plan = make_plan(schedule, 10, solver, steps_offset=1)
    sample = randn_like_diffusers(SHAPE, 1)
    model_output = model(sample, plan.timesteps[3])
    state = DPMSolverState(previous_denoised=randn_like_diffusers(SHAPE, 2), step_index=2)
    inputs = [sample.clone(), model_output.clone(), state.previous_denoised.clone()]
    first = our_step(plan, sample, model_output, 3, state, eta=eta, seed=11)
    second = our_step(plan, sample, model_output, 3, state, eta=eta, seed=11)
    for a, b in zip(first[:2], second[:2], strict=True):
        assert torch.equal(a, b)
    for before, after in zip(inputs, (sample, model_output, state.previous_denoised), strict=True):
        assert torch.equal(before, after)
