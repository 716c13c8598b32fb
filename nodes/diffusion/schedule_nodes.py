"""Noise schedules and sampling plans as nodes."""

from __future__ import annotations

from collections.abc import Mapping

from ...executor.node import Input, InputError, Inputs, Node, Outputs
from .math import ArgumentError, BetaSchedule, PredictionType, Schedule, Spacing
from .math import SamplingPlan as PlanT
from .sockets import PlanSocket, ScheduleSocket
from .solvers import Solver, make_plan

CATEGORY = "latentgraph/sampling/schedules"


class NoiseSchedule(Node):
    """How the model was trained to corrupt data: a discrete beta schedule (linear, SD's
    scaled_linear, cosine squaredcos_cap_v2, sigmoid) or rectified flow with a resolution shift
    t' = s t / (1 + (s - 1) t) (SD3 section 5.3.2; SANA uses s = 3)."""

    class_type = "LG_NoiseSchedule"
    category = CATEGORY

    class In(Inputs):
        kind: BetaSchedule = Input("scaled_linear", tooltip="beta schedule, or 'flow' for rectified flow")
        num_train_timesteps: int = Input(1000, ge=1, le=100_000)
        beta_start: float = Input(0.00085, ge=0.0, le=1.0, step=0.00001)
        beta_end: float = Input(0.012, ge=0.0, le=1.0, step=0.0001)
        prediction_type: PredictionType = Input("epsilon", tooltip="what the network predicts")
        shift: float = Input(1.0, ge=0.01, le=100.0, step=0.1, tooltip="flow only: timestep shift")
        zero_terminal_snr: bool = Input(False, tooltip="rescale betas so the last step is pure noise "
                                                       "(Lin et al. 2024)")

    class Out(Outputs):
        schedule: ScheduleSocket

    def run(self, x: In) -> Out:
        try:
            schedule = Schedule(x.kind, x.num_train_timesteps, x.beta_start, x.beta_end, x.prediction_type, x.shift,
                                x.zero_terminal_snr)
        except ArgumentError as err:  # Schedule's arguments are the inputs, but for the kind
            raise InputError("kind" if err.argument == "beta_schedule" else err.argument, str(err)) from None
        return self.Out(schedule=schedule)


class SamplingPlan(Node):
    """The timesteps and noise levels of an N-step run for one solver, equal to diffusers'
    set_timesteps of the matching scheduler (Heun's without the repeated levels diffusers lists
    for its second model calls). denoise < 1 keeps the tail of the plan (img2img)."""

    class_type = "LG_SamplingPlan"
    category = CATEGORY

    class In(Inputs):
        schedule: ScheduleSocket
        steps: int = Input(20, ge=1, le=10_000)
        solver: Solver = Input("euler")
        spacing: Spacing = Input("leading", tooltip="timestep spacing (Lin et al. 2024, table 2)")
        steps_offset: int = Input(1, ge=0, le=1000, tooltip="SD 1.x uses 1")
        denoise: float = Input(1.0, ge=0.0, le=1.0, step=0.01, tooltip="img2img strength")

    class Out(Outputs):
        plan: PlanSocket

    def run(self, x: In) -> Out:
        return self.Out(plan=checked_plan(x.schedule, x.steps, x.solver, x.spacing, x.steps_offset, x.denoise))


def checked_plan(schedule: Schedule, steps: int, solver: str, spacing: str, steps_offset: int,
                 denoise: float, inputs: Mapping[str, str] | None = None) -> PlanT:
    """make_plan, with its complaints turned into errors that name the offending input: the
    input of the argument's name (LG_SamplingPlan's), or the one ``inputs`` maps it to."""
    try:
        return make_plan(schedule, steps, solver, spacing, steps_offset, denoise)
    except ArgumentError as err:
        raise InputError((inputs or {}).get(err.argument, err.argument), str(err)) from None


NODES = [NoiseSchedule, SamplingPlan]
