"""Noise schedules and sampling plans as nodes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...executor.node import Input, InputError, Inputs, Node, Outputs
from ...executor.types import Latent
from .math import (
    ArgumentError,
    BetaSchedule,
    PredictionType,
    Schedule,
    SigmaGrid,
    Spacing,
    TimeShift,
)
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
    for its second model calls). denoise < 1 keeps the tail of the plan (img2img). flow_euler
    also takes FLUX's dynamic time shift (mu, e.g. from LG_FlowShift, on a schedule of shift 1)
    and a shift_terminal the last sigma is stretched to, on the scheduler's sigmas or FluxPipeline's."""

    class_type = "LG_SamplingPlan"
    category = CATEGORY

    class In(Inputs):
        schedule: ScheduleSocket
        steps: int = Input(20, ge=1, le=10_000)
        solver: Solver = Input("euler")
        spacing: Spacing = Input("leading", tooltip="timestep spacing (Lin et al. 2024, table 2)")
        steps_offset: int = Input(1, ge=0, le=1000, tooltip="SD 1.x uses 1")
        denoise: float = Input(1.0, ge=0.0, le=1.0, step=0.01, tooltip="img2img strength")
        time_shift: TimeShift = Input("static", tooltip="flow_euler: 'static' uses the schedule's shift (SD3); "
                                                        "'exponential' / 'linear' shift by mu (FLUX)")
        mu: float = Input(0.0, ge=-100.0, le=100.0, step=0.01,
                          tooltip="dynamic time_shift only: resolution-dependent shift (LG_FlowShift)")
        shift_terminal: float = Input(0.0, ge=0.0, le=0.999, step=0.01,
                                      tooltip="flow_euler: stretch so the last sigma is this; 0 = off")
        sigma_grid: SigmaGrid = Input("training", tooltip="flow_euler: shift the scheduler's own sigmas, or "
                                                          "'steps': 1 down to 1/steps, as FluxPipeline passes them")

    class Out(Outputs):
        plan: PlanSocket

    def run(self, x: In) -> Out:
        dynamic = x.time_shift != "static"
        return self.Out(plan=checked_plan(x.schedule, x.steps, x.solver, x.spacing, x.steps_offset, x.denoise,
                                          time_shift=x.time_shift, mu=x.mu if dynamic else None,
                                          shift_terminal=x.shift_terminal or None, sigma_grid=x.sigma_grid))


def checked_plan(schedule: Schedule, steps: int, solver: str, spacing: str, steps_offset: int,
                 denoise: float, inputs: Mapping[str, str] | None = None, **options: Any) -> PlanT:
    """make_plan, with its complaints turned into errors that name the offending input: the
    input of the argument's name (LG_SamplingPlan's), or the one ``inputs`` maps it to.
    ``options`` are make_plan's keyword-only plan options."""
    try:
        return make_plan(schedule, steps, solver, spacing, steps_offset, denoise, **options)
    except ArgumentError as err:
        raise InputError((inputs or {}).get(err.argument, err.argument), str(err)) from None


def flux_mu(image_seq_len: int, base_seq_len: int = 256, max_seq_len: int = 4096,
            base_shift: float = 0.5, max_shift: float = 1.15) -> float:
    """FLUX's mu: the shift grows linearly with the number of image tokens, from base_shift at
    base_seq_len tokens to max_shift at max_seq_len (the line through those two points)."""
    slope = (max_shift - base_shift) / (max_seq_len - base_seq_len)
    intercept = base_shift - slope * base_seq_len
    return image_seq_len * slope + intercept


class FlowShift(Node):
    """The dynamic time-shift mu FLUX uses for a latent: its image tokens are patch x patch
    blocks of the latent, (H / patch) * (W / patch) of them, and mu is linear in their count
    (0.5 at 256 tokens, 1.15 at 4096 by default). Feed it to LG_SamplingPlan's mu with an
    'exponential' time_shift."""

    class_type = "LG_FlowShift"
    category = CATEGORY

    class In(Inputs):
        latent: Latent
        patch_size: int = Input(2, ge=1, le=64, tooltip="latent pixels per token side (FLUX packs 2x2)")
        base_seq_len: int = Input(256, ge=1, le=1_000_000)
        max_seq_len: int = Input(4096, ge=1, le=1_000_000)
        base_shift: float = Input(0.5, ge=-100.0, le=100.0, step=0.01)
        max_shift: float = Input(1.15, ge=-100.0, le=100.0, step=0.01)

    class Out(Outputs):
        mu: float

    def run(self, x: In) -> Out:
        samples = x.latent.get("samples") if isinstance(x.latent, dict) else None
        if samples is None or getattr(samples, "ndim", 0) < 2:
            raise InputError("latent", "latent must hold 'samples' with height and width as its last two dims")
        height, width = int(samples.shape[-2]), int(samples.shape[-1])
        if height % x.patch_size or width % x.patch_size:
            raise InputError("patch_size", f"the latent's {height}x{width} is not a whole number of "
                                           f"{x.patch_size}x{x.patch_size} patches")
        if x.max_seq_len == x.base_seq_len:
            raise InputError("max_seq_len", "max_seq_len must differ from base_seq_len (they fix a line)")
        tokens = (height // x.patch_size) * (width // x.patch_size)
        return self.Out(mu=flux_mu(tokens, x.base_seq_len, x.max_seq_len, x.base_shift, x.max_shift))


NODES = [NoiseSchedule, SamplingPlan, FlowShift]
