"""Bad input fails early with a ValueError that names the offending argument."""

from __future__ import annotations

import pytest
import torch
from latentgraph.nodes.diffusion.math import (
    SANA_SCHEDULE,
    SD15_SCHEDULE,
    DPMSolverState,
    Schedule,
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
from latentgraph.nodes.diffusion.solvers import make_plan
from latentgraph.nodes.diffusion.solvers.dpmpp_2m_sde import dpmpp_2m_sde_step
from latentgraph.nodes.diffusion.solvers.heun import HeunStage, heun_correction, heun_step

SHAPE = (1, 4, 8, 8)
X = torch.zeros(SHAPE)
EULER = make_plan(SD15_SCHEDULE, 5, "euler", steps_offset=1)
DPM = make_plan(SD15_SCHEDULE, 5, "dpmpp_2m", steps_offset=1)

STEP_CALLS = {
    "ddpm": lambda x, out, plan, i: ddpm_step(x, out, plan, i, seed=0),
    "ddim": lambda x, out, plan, i: ddim_step(x, out, plan, i),
    "euler": euler_step,
    "euler_ancestral": lambda x, out, plan, i: euler_ancestral_step(x, out, plan, i, seed=0),
    "flow_euler": flow_euler_step,
    "dpmpp_2m": lambda x, out, plan, i: dpmpp_2m_step(x, out, plan, i, state=None),
    "heun": heun_step,
    "dpmpp_2m_sde": lambda x, out, plan, i: dpmpp_2m_sde_step(x, out, plan, i, state=None, seed=0),
}


def plan_for(solver):
    schedule = SANA_SCHEDULE if solver.startswith("flow") else SD15_SCHEDULE
    return make_plan(schedule, 5, solver, steps_offset=1)


@pytest.mark.parametrize("solver", STEP_CALLS)
@pytest.mark.parametrize("step_index", (-1, 5, 99))
def test_step_index_out_of_range(solver, step_index):
    with pytest.raises(ValueError, match=r"step_index -?\d+ is out of range for a 5-step plan"):
        STEP_CALLS[solver](X, X, plan_for(solver), step_index)


@pytest.mark.parametrize("solver", STEP_CALLS)
def test_step_index_must_be_an_int(solver):
    with pytest.raises(ValueError, match="step_index must be an int"):
        STEP_CALLS[solver](X, X, plan_for(solver), 1.5)


@pytest.mark.parametrize("solver", STEP_CALLS)
def test_plan_made_for_another_solver(solver):
    other = EULER if solver != "euler" else DPM
    with pytest.raises(ValueError, match=rf"plan was made for solver '{other.solver}'"):
        STEP_CALLS[solver](X, X, other, 0)


@pytest.mark.parametrize("solver", STEP_CALLS)
def test_model_output_shape_must_match_sample(solver):
    with pytest.raises(ValueError, match=r"model_output has shape \(1, 4, 8, 4\) but sample"):
        STEP_CALLS[solver](X, torch.zeros(1, 4, 8, 4), plan_for(solver), 0)


def test_dpm_state_is_required_after_the_first_step():
    with pytest.raises(ValueError, match="state is required at step_index 2"):
        dpmpp_2m_step(X, X, DPM, 2, state=None)


def test_dpm_state_must_come_from_the_previous_step():
    state = DPMSolverState(previous_denoised=X, step_index=0)
    with pytest.raises(ValueError, match="state comes from step 0 but step_index is 3"):
        dpmpp_2m_step(X, X, DPM, 3, state=state)


def test_dpm_state_shape_must_match_sample():
    state = DPMSolverState(previous_denoised=torch.zeros(2, 4, 8, 8), step_index=0)
    with pytest.raises(ValueError, match=r"state.previous_denoised has shape \(2, 4, 8, 8\)"):
        dpmpp_2m_step(X, X, DPM, 1, state=state)


def test_dpm_sde_checks_its_state_as_dpm_does():
    plan = plan_for("dpmpp_2m_sde")
    with pytest.raises(ValueError, match="state is required at step_index 2"):
        dpmpp_2m_sde_step(X, X, plan, 2, state=None, seed=0)
    state = DPMSolverState(previous_denoised=X, step_index=0)
    with pytest.raises(ValueError, match="state comes from step 0 but step_index is 3"):
        dpmpp_2m_sde_step(X, X, plan, 3, state=state, seed=0)


def test_heun_correction_checks_its_stage_and_step():
    plan = plan_for("heun")
    _, _, stage = heun_step(X, X, plan, 1)
    with pytest.raises(
        ValueError, match="stage comes from the predictor of step 1, but step_index is 2"
    ):
        heun_correction(X, X, plan, 2, stage)
    with pytest.raises(ValueError, match="stage must be a HeunStage"):
        heun_correction(X, X, plan, 1, None)
    with pytest.raises(ValueError, match=r"stage.sample has shape \(2, 4, 8, 8\)"):
        heun_correction(X, X, plan, 1, HeunStage(torch.zeros(2, 4, 8, 8), X, 1))
    _, _, last = heun_step(X, X, plan, 4)
    with pytest.raises(ValueError, match="step_index 4 is the plan's last step"):
        heun_correction(X, X, plan, 4, last)
    with pytest.raises(ValueError, match="plan was made for solver 'euler', which heun_correction"):
        heun_correction(X, X, EULER, 1, stage)


def test_ddim_with_eta_needs_a_seed():
    plan = plan_for("ddim")
    with pytest.raises(ValueError, match="seed is required when eta > 0"):
        ddim_step(X, X, plan, 0, eta=0.5)
    with pytest.raises(ValueError, match="eta must be non-negative"):
        ddim_step(X, X, plan, 0, eta=-1.0, seed=0)


def test_seed_type_is_checked():
    with pytest.raises(ValueError, match="seed must be an int or a torch.Generator"):
        randn_like_diffusers(SHAPE, "7")


def test_noise_and_guidance_shapes_are_checked():
    with pytest.raises(ValueError, match="noise has shape"):
        add_noise(X, torch.zeros(2, 4, 8, 8), EULER)
    with pytest.raises(ValueError, match="step_index 5 is out of range"):
        add_noise(X, X, EULER, 5)
    with pytest.raises(ValueError, match="cond has shape"):
        cfg_combine(X, torch.zeros(2, 4, 8, 8), 7.5)
    with pytest.raises(ValueError, match="step_index 9 is out of range"):
        scale_model_input(X, EULER, 9)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"solver": "lms"}, "solver must be one of"),
        ({"solver": "flow_euler"}, "solver 'flow_euler' needs a 'flow' schedule"),
        ({"schedule": SANA_SCHEDULE}, "solver 'euler' needs a discrete"),
        ({"schedule": "sd15"}, "schedule must be a Schedule"),
        ({"steps": 0}, "steps must be a positive int"),
        ({"steps": 1001}, r"steps \(1001\) cannot exceed"),
        ({"spacing": "karras"}, "spacing must be one of"),
        ({"steps_offset": -1}, "steps_offset must be a non-negative int"),
        ({"denoise": 0.0}, r"denoise must be in \(0, 1\]"),
        ({"denoise": 1.5}, r"denoise must be in \(0, 1\]"),
        ({"denoise": 0.05}, "denoise=0.05 leaves no steps to run"),
        ({"set_alpha_to_one": True}, "set_alpha_to_one only applies to the 'ddim' solver"),
        ({"solver": "ddpm", "final_sigma": "sigma_min"}, "final_sigma='sigma_min' only applies"),
        ({"final_sigma": "one"}, "final_sigma must be one of"),
        ({"steps": 61, "spacing": "trailing"}, "spacing='trailing' with steps=61"),
    ],
)
def test_make_plan_rejects_bad_arguments(kwargs, message):
    arguments = {"schedule": SD15_SCHEDULE, "steps": 10, "solver": "euler", **kwargs}
    with pytest.raises(ValueError, match=message):
        make_plan(**arguments)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"beta_schedule": "cosine"}, "beta_schedule must be one of"),
        ({"prediction_type": "sample"}, "prediction_type must be one of"),
        ({"prediction_type": "flow_prediction"}, "'flow_prediction' goes with 'flow'"),
        ({"beta_schedule": "flow"}, "does not fit beta_schedule 'flow'"),
        ({"num_train_timesteps": 1}, "num_train_timesteps must be at least 2"),
        ({"num_train_timesteps": 1000.0}, "num_train_timesteps must be an int"),
        ({"shift": 3.0}, "shift only applies to beta_schedule='flow'"),
        ({"beta_start": 0.03}, "beta_start and beta_end must satisfy"),
    ],
)
def test_schedule_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Schedule(**kwargs)


def test_flow_schedule_has_no_betas():
    with pytest.raises(ValueError, match="has no betas"):
        _ = SANA_SCHEDULE.betas


def test_flow_shift_must_be_positive():
    with pytest.raises(ValueError, match="shift must be positive"):
        Schedule(beta_schedule="flow", prediction_type="flow_prediction", shift=0.0)
