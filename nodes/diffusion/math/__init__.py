"""Pure diffusion sampling math, numerically equal to Hugging Face diffusers' schedulers.

Typical loop (a node author wires these up; nothing here keeps hidden state):

    from latentgraph.nodes.diffusion.solvers import make_plan   # the solver table builds plans
    plan = make_plan(SD15_SCHEDULE, steps=20, solver="euler", steps_offset=1)
    x = randn_like_diffusers(shape, seed) * plan.init_noise_sigma      # txt2img
    # img2img: plan = make_plan(..., denoise=0.6); x = add_noise(x0, noise, plan)
    for i in range(len(plan)):
        eps = model(scale_model_input(x, plan, i), plan.timesteps[i])
        x, denoised = euler_step(x, eps, plan, i)

Stochastic steps take a `seed` (int or torch.Generator); see `noise` for the convention.
DPM-Solver++(2M) threads an explicit `DPMSolverState` from one step to the next. Nothing here
knows a solver by name: a plan carries what its solver's row in the solver table says about it
(`SamplingPlan.parameterization`, `SamplingPlan.steppers`).
"""

from .ddpm_ddim import ddim_step, ddpm_step
from .dpm_solver import DPMSolverState, dpmpp_2m_step
from .errors import ArgumentError
from .euler import euler_ancestral_step, euler_step, flow_euler_step
from .model_io import cfg_combine, scale_model_input
from .noise import Seed, add_noise, randn_like_diffusers
from .plan import (
    SPACINGS,
    FinalSigma,
    Parameterization,
    PlanRequest,
    PlanTables,
    SamplingPlan,
    SigmaGrid,
    Spacing,
    TimeShift,
)
from .schedule import (
    SANA_SCHEDULE,
    SD15_SCHEDULE,
    BetaSchedule,
    PredictionType,
    Schedule,
)

__all__ = [
    "ArgumentError",
    "SANA_SCHEDULE",
    "SD15_SCHEDULE",
    "SPACINGS",
    "BetaSchedule",
    "DPMSolverState",
    "FinalSigma",
    "Parameterization",
    "PlanRequest",
    "PlanTables",
    "PredictionType",
    "SamplingPlan",
    "Schedule",
    "Seed",
    "Spacing",
    "SigmaGrid",
    "TimeShift",
    "add_noise",
    "cfg_combine",
    "ddim_step",
    "ddpm_step",
    "dpmpp_2m_step",
    "euler_ancestral_step",
    "euler_step",
    "flow_euler_step",
    "randn_like_diffusers",
    "scale_model_input",
]
