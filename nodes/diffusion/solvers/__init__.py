"""The solver table: one row per solver, and everything that depends on which solver runs reads it.

A row (`SolverSpec`) says how the solver's plan is built (which diffusers `set_timesteps` it
reproduces), how its samples mix data and noise, which pure step function advances a step and
which node runs it, and what a sampler has to wire around that node: a seed and random stream
(stochastic solvers), the multistep SOLVER_STATE (stateful ones), a second model call and a
correction node (two-evaluation solvers such as Heun). `make_plan` builds plans from it, LG_Sampler
unrolls from it, the plan and sampler nodes list its names, and the node pack registers the step
nodes it names.

Adding a solver: write one file in this folder with its step function(s) (pure: tensors, plan and
step index in, tensors out) and its step node(s) (subclasses of `step_nodes.StepNode` naming that
function as `step_function`), then add its row to SOLVER_TABLE. `heun.py` (two evaluations per
step) and `dpmpp_2m_sde.py` (stochastic and stateful) are the examples. The row is checked
against the nodes when this module is imported, so a row that does not fit its nodes fails at
import.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from ..math import (
    SamplingPlan,
    Schedule,
    ddim_step,
    ddpm_step,
    dpmpp_2m_step,
    euler_ancestral_step,
    euler_step,
    flow_euler_step,
)
from ..math.errors import ArgumentError
from ..math.plan import (
    PARAMETERIZATIONS,
    Parameterization,
    PlanBuilder,
    PlanRequest,
    build_plan,
    check_plan_request,
    ddim_plan,
    ddpm_plan,
    dpm_plan,
    euler_plan,
    flow_dpm_plan,
    flow_euler_plan,
)
from ..math.schedule import PREDICTION_TYPES
from ..step_nodes import (
    DDIMStep,
    DDPMStep,
    DPMSolverStep,
    EulerAncestralStep,
    EulerStep,
    FlowEulerStep,
    StepNode,
)
from .dpmpp_2m_sde import DPMSolverSDEStep, dpmpp_2m_sde_step
from .heun import HeunCorrection, HeunStep, heun_correction, heun_step

DISCRETE = ("epsilon", "v_prediction")
FLOW = ("flow_prediction",)
# The optional make_plan arguments a row may accept (diffusers' set_alpha_to_one, final_sigmas_type;
# FlowMatchEulerDiscreteScheduler's time_shift_type with set_timesteps' mu, shift_terminal, and
# the sigmas FluxPipeline passes to set_timesteps).
PLAN_OPTIONS = ("set_alpha_to_one", "final_sigma", "time_shift", "shift_terminal", "sigma_grid")


@dataclass(frozen=True)
class SolverSpec:
    """One solver, as the rest of the package needs to know it.

    name:             the `solver` value of LG_SamplingPlan and LG_Sampler, and `SamplingPlan.solver`.
    build_plan:       its timesteps and sigmas, as its diffusers scheduler's `set_timesteps`.
    parameterization: how its samples mix data and noise; decides `add_noise`, whether the model
                      sees x / sqrt(sigma^2 + 1) (`ve`: LG_ScaleModelInput before every call) and,
                      with the plan builder, the initial noise scale `init_noise_sigma`.
    step, step_node:  the pure update of one step and the node that runs it (for a two-evaluation
                      solver: the first stage, whose `stage` output the correction reads).
    prediction_types: the network outputs it accepts; flow solvers take flow schedules only.
    stochastic:       draws noise every step: its nodes take `seed` and `rng` and output `rng`.
    stateful:         carries SOLVER_STATE from step to step: `state` in, `state` out.
    model_calls:      model evaluations per step: 1, or 2 for a predictor-corrector (Heun). The
                      second is at the level the first stage moved to, step + 1's, so the plan's
                      last step has only the first (nothing to evaluate past the end).
    correction, correction_node: the second stage, for model_calls = 2.
    plan_options:     which of PLAN_OPTIONS `make_plan` accepts for it.
    """

    name: str
    build_plan: PlanBuilder
    parameterization: Parameterization
    step: Callable[..., Any]
    step_node: type[StepNode]
    prediction_types: tuple[str, ...] = DISCRETE
    stochastic: bool = False
    stateful: bool = False
    model_calls: int = 1
    correction: Callable[..., Any] | None = None
    correction_node: type[StepNode] | None = None
    plan_options: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        problems = list(self._problems())
        if problems:
            raise TypeError(f"solver row {self.name!r}: " + "; ".join(problems))

    @property
    def flow(self) -> bool:
        """Whether it samples rectified flow (and so needs a 'flow' schedule)."""
        return "flow_prediction" in self.prediction_types

    @property
    def steppers(self) -> tuple[Callable[..., Any], ...]:
        """The step functions that may advance its plans (`SamplingPlan.steppers`)."""
        return (self.step,) if self.correction is None else (self.step, self.correction)

    @property
    def nodes(self) -> tuple[type[StepNode], ...]:
        return (
            (self.step_node,)
            if self.correction_node is None
            else (self.step_node, self.correction_node)
        )

    @property
    def scales_model_input(self) -> bool:
        """Whether the model sees x / sqrt(sigma^2 + 1) rather than the sample itself."""
        return self.parameterization == "ve"

    def _problems(self) -> Iterator[str]:
        if not self.name.isidentifier():
            yield "name must be an identifier"
        if self.parameterization not in PARAMETERIZATIONS:
            yield f"parameterization must be one of {PARAMETERIZATIONS}"
        if not self.prediction_types or not set(self.prediction_types) <= set(PREDICTION_TYPES):
            yield f"prediction_types must be some of {PREDICTION_TYPES}"
        elif self.flow and self.prediction_types != FLOW:
            yield "a flow solver takes flow_prediction only (flow and discrete schedules differ)"
        if (self.parameterization == "flow") != self.flow:
            yield "the 'flow' parameterization goes with flow_prediction, and only with it"
        if not set(self.plan_options) <= set(PLAN_OPTIONS):
            yield f"plan_options must be some of {PLAN_OPTIONS}"
        if self.model_calls not in (1, 2):
            yield "model_calls must be 1 or 2"
        two_stage = (self.correction is not None, self.correction_node is not None)
        if two_stage != ((self.model_calls == 2),) * 2:
            yield "correction and correction_node are given exactly when model_calls is 2"
        yield from _node_problems(self.step_node, self.step, "step_node")
        step_in, step_out = _fields(self.step_node)
        if self.stochastic != ("rng" in step_in):
            yield f"stochastic={self.stochastic}, but step_node {'lacks' if self.stochastic else 'has'} an rng input"
        elif self.stochastic and ("seed" not in step_in or "rng" not in step_out):
            yield "a stochastic step_node takes seed and rng and outputs rng"
        if self.stateful != ("state" in step_in) or self.stateful != ("state" in step_out):
            yield f"stateful={self.stateful}, but step_node's state input and output say otherwise"
        if self.correction_node is not None and self.correction is not None:
            yield from _node_problems(self.correction_node, self.correction, "correction_node")
            if "stage" not in step_out or "stage" not in _fields(self.correction_node)[0]:
                yield "step_node outputs a 'stage' and correction_node takes it"


def _fields(node: type[StepNode]) -> tuple[set[str], set[str]]:
    return set(node.In.model_fields), set(node.Out.model_fields)


def _node_problems(node: type[StepNode], function: Callable[..., Any], role: str) -> Iterator[str]:
    if not (isinstance(node, type) and issubclass(node, StepNode) and "spec" in node.__dict__):
        yield f"{role} must be a StepNode class with a class_type"
        return
    if node.step_function is not function:
        yield f"{role} {node.class_type} runs {node.step_function.__name__}, not {function.__name__}"
    inputs, outputs = _fields(node)
    if not {"sample", "model_output", "plan", "step"} <= inputs:
        yield f"{role} {node.class_type} takes sample, model_output, plan and step"
    if node.spec.output_names[:2] != ("sample", "denoised"):
        yield f"{role} {node.class_type} outputs sample and denoised first"


SOLVER_TABLE: tuple[SolverSpec, ...] = (
    SolverSpec(
        name="ddpm",
        build_plan=ddpm_plan,
        parameterization="alpha_bar",
        step=ddpm_step,
        step_node=DDPMStep,
        stochastic=True,
    ),
    SolverSpec(
        name="ddim",
        build_plan=ddim_plan,
        parameterization="alpha_bar",
        step=ddim_step,
        step_node=DDIMStep,
        stochastic=True,
        plan_options=("set_alpha_to_one",),
    ),
    SolverSpec(
        name="euler",
        build_plan=euler_plan,
        parameterization="ve",
        step=euler_step,
        step_node=EulerStep,
        plan_options=("final_sigma",),
    ),
    SolverSpec(
        name="euler_ancestral",
        build_plan=euler_plan,
        parameterization="ve",
        step=euler_ancestral_step,
        step_node=EulerAncestralStep,
        stochastic=True,
    ),
    SolverSpec(
        name="heun",
        build_plan=euler_plan,
        parameterization="ve",
        step=heun_step,
        step_node=HeunStep,
        model_calls=2,
        correction=heun_correction,
        correction_node=HeunCorrection,
    ),
    SolverSpec(
        name="dpmpp_2m",
        build_plan=dpm_plan,
        parameterization="vp",
        step=dpmpp_2m_step,
        step_node=DPMSolverStep,
        stateful=True,
        plan_options=("final_sigma",),
    ),
    SolverSpec(
        name="dpmpp_2m_sde",
        build_plan=dpm_plan,
        parameterization="vp",
        step=dpmpp_2m_sde_step,
        step_node=DPMSolverSDEStep,
        stochastic=True,
        stateful=True,
        plan_options=("final_sigma",),
    ),
    SolverSpec(
        name="flow_euler",
        build_plan=flow_euler_plan,
        parameterization="flow",
        step=flow_euler_step,
        step_node=FlowEulerStep,
        prediction_types=FLOW,
        plan_options=("time_shift", "shift_terminal", "sigma_grid"),
    ),
    SolverSpec(
        name="flow_dpmpp_2m",
        build_plan=flow_dpm_plan,
        parameterization="flow",
        step=dpmpp_2m_step,
        step_node=DPMSolverStep,
        prediction_types=FLOW,
        stateful=True,
    ),
    SolverSpec(
        name="flow_dpmpp_2m_sde",
        build_plan=flow_dpm_plan,
        parameterization="flow",
        step=dpmpp_2m_sde_step,
        step_node=DPMSolverSDEStep,
        prediction_types=FLOW,
        stochastic=True,
        stateful=True,
    ),
)

SOLVERS: dict[str, SolverSpec] = {spec.name: spec for spec in SOLVER_TABLE}
if len(SOLVERS) != len(SOLVER_TABLE):
    raise TypeError("two rows of SOLVER_TABLE share a name")
SOLVER_NAMES: tuple[str, ...] = tuple(SOLVERS)
# The solver enum of LG_SamplingPlan and LG_Sampler, built from the table (a widget combo).
Solver = Literal[SOLVER_NAMES]  # type: ignore[valid-type]
# Every step node a row names, once, in table order; the node pack registers them.
NODES = list(dict.fromkeys(node for spec in SOLVER_TABLE for node in spec.nodes))


def make_plan(
    schedule: Schedule,
    steps: int,
    solver: str,
    spacing: str = "leading",
    steps_offset: int = 0,
    denoise: float = 1.0,
    *,
    set_alpha_to_one: bool = False,
    final_sigma: str = "zero",
    time_shift: str = "static",
    mu: float | None = None,
    shift_terminal: float | None = None,
    sigma_grid: str = "training",
) -> SamplingPlan:
    """Build the plan diffusers' scheduler for `solver` would after `set_timesteps(steps)`.

    Args:
        schedule: the training schedule; flow solvers need `beta_schedule="flow"`, the others a
            discrete schedule.
        steps: number of inference steps before `denoise` truncation.
        solver: a name of SOLVER_TABLE; each step function accepts only its own solver's plans.
        spacing, steps_offset: timestep spacing of Lin et al. 2024 (Table 2) for discrete
            schedules. Flow solvers ignore both, as diffusers' flow schedulers do.
        denoise: img2img strength in (0, 1]. Discrete solvers keep `int(steps * denoise)` steps
            (StableDiffusionImg2ImgPipeline.get_timesteps); flow solvers keep
            `steps - int(steps - steps * denoise)` (StableDiffusion3Img2ImgPipeline.get_timesteps).
        set_alpha_to_one: DDIM only; whether the step after t = 0 lands on alpha_bar = 1 (True) or
            on alpha_bar_0 (False, as SD1.5 configures it).
        final_sigma: solvers whose row accepts it only; end at sigma 0 or at the schedule's
            smallest sigma (diffusers' `final_sigmas_type`).
        time_shift, mu: solvers whose row accepts it only; how the flow sigmas are warped:
            'static' by the schedule's shift (SD3), or 'exponential' / 'linear' by `mu`, which a
            dynamic shift requires (FLUX: `use_dynamic_shifting`, `time_shift_type`,
            `set_timesteps(mu=...)`; the schedule's shift must then be 1).
        shift_terminal: solvers whose row accepts it only; None, or the value in (0, 1) the
            last sigma is stretched to (diffusers' `shift_terminal`).
        sigma_grid: solvers whose row accepts it only; 'training' (the scheduler's own evenly
            spaced sigmas) or 'steps' (FluxPipeline's custom sigmas, 1 down to 1 / steps).
    """
    if not isinstance(schedule, Schedule):
        raise ArgumentError("schedule", f"schedule must be a Schedule, got {type(schedule).__name__}")
    spec = SOLVERS.get(solver) if isinstance(solver, str) else None
    if spec is None:
        raise ArgumentError("solver", f"solver must be one of {SOLVER_NAMES}, got {solver!r}")
    if spec.flow != schedule.is_flow:
        wanted = "a 'flow'" if spec.flow else "a discrete (non-flow)"
        raise ArgumentError(
            "schedule",
            f"solver {solver!r} needs {wanted} schedule, got beta_schedule={schedule.beta_schedule!r}"
        )
    if schedule.prediction_type not in spec.prediction_types:
        raise ArgumentError(
            "schedule",
            f"solver {solver!r} takes {', '.join(spec.prediction_types)} models, not the "
            f"schedule's prediction_type {schedule.prediction_type!r}"
        )
    request = PlanRequest(
        schedule,
        steps,
        spacing,
        steps_offset,
        set_alpha_to_one,
        final_sigma,
        time_shift,
        mu,
        shift_terminal,
        sigma_grid,
    )
    for option, given in (
        ("time_shift", time_shift != "static" or mu is not None),
        ("shift_terminal", shift_terminal is not None),
        ("sigma_grid", sigma_grid != "training"),
    ):
        if given and option not in spec.plan_options:
            raise ArgumentError(
                "mu" if option == "time_shift" and time_shift == "static" else option,
                f"{option} only applies to {_solvers_taking(option)}, not {solver!r}"
            )
    check_plan_request(request, denoise)
    if set_alpha_to_one and "set_alpha_to_one" not in spec.plan_options:
        raise ArgumentError(
            "set_alpha_to_one",
            f"set_alpha_to_one only applies to {_solvers_taking('set_alpha_to_one')}, not {solver!r}"
        )
    if final_sigma != "zero" and "final_sigma" not in spec.plan_options:
        raise ArgumentError(
            "final_sigma",
            f"final_sigma={final_sigma!r} only applies to {_solvers_taking('final_sigma')}"
        )
    return build_plan(
        spec.name, spec.build_plan, spec.parameterization, spec.steppers, request, denoise
    )


def _solvers_taking(option: str) -> str:
    """'the 'ddim' solver', or 'the 'euler', 'dpmpp_2m' and 'dpmpp_2m_sde' solvers'."""
    names = [repr(spec.name) for spec in SOLVER_TABLE if option in spec.plan_options]
    if len(names) == 1:
        return f"the {names[0]} solver"
    return f"the {', '.join(names[:-1])} and {names[-1]} solvers"


__all__ = ["NODES", "SOLVERS", "SOLVER_NAMES", "SOLVER_TABLE", "Solver", "SolverSpec", "make_plan"]
