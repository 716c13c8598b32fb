"""Sampling plans: the timesteps and noise levels one sampling run visits, fixed up front.

Each plan builder here reproduces the `set_timesteps` of a diffusers scheduler exactly, including
its dtypes (timesteps are int64 or float32 as diffusers feeds them to the model; sigmas are float32
after any float64 interpolation), and `truncate` its img2img truncation. Nothing here knows a
solver by name: which builder a solver uses, and what its plans say about it (the
parameterization of its samples, the step functions that may advance them), is one row of the
solver table in ``nodes/diffusion/solvers``, whose `make_plan` assembles plans with `build_plan`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal, get_args

import numpy as np
import torch

from .errors import ArgumentError
from .schedule import Schedule

Spacing = Literal["leading", "trailing", "linspace"]
FinalSigma = Literal["zero", "sigma_min"]
# How a flow plan warps its evenly spaced sigmas t: `static` by the schedule's shift s,
# s t / (1 + (s - 1) t) (SD3, Esser et al. 2024, sec. 5.3.2); `exponential` and `linear` by a
# resolution-dependent mu instead (FLUX): e^mu / (e^mu + (1/t - 1)) and mu / (mu + (1/t - 1)).
TimeShift = Literal["static", "exponential", "linear"]
# Which evenly spaced sigmas a flow-Euler plan shifts: `training`, the scheduler's own grid between
# the ends of its training grid (sigma 1 and 1 / T, in float64); `steps`, N sigmas from 1 down to
# 1 / N in float32, the custom sigmas FluxPipeline passes to set_timesteps.
SigmaGrid = Literal["training", "steps"]
# How a plan's samples mix data and noise; it decides q(x_t | x_0) (`add_noise`), whether the
# model input is rescaled (`scale_model_input`) and the VP pair DPM-Solver works with:
#   alpha_bar  sqrt(ab_t) x0 + sqrt(1 - ab_t) eps from the alpha_bar tables (DDPM eq. 4)
#   ve         x0 + sigma eps, variance exploding (Karras et al. 2022)
#   vp         alpha_t x0 + sigma_t eps with alpha_t = 1 / sqrt(sigma^2 + 1), sigma_t = sigma alpha_t
#   flow       (1 - sigma) x0 + sigma eps, rectified flow
Parameterization = Literal["alpha_bar", "ve", "vp", "flow"]

SPACINGS: tuple[str, ...] = get_args(Spacing)
FINAL_SIGMAS: tuple[str, ...] = get_args(FinalSigma)
TIME_SHIFTS: tuple[str, ...] = get_args(TimeShift)
SIGMA_GRIDS: tuple[str, ...] = get_args(SigmaGrid)
PARAMETERIZATIONS: tuple[str, ...] = get_args(Parameterization)


@dataclass(frozen=True, eq=False)
class SamplingPlan:
    """Everything a step function needs to know about a sampling run. Treat tensors as read-only.

    Step `i` takes the sample at noise level `sigmas[i]`, evaluates the model at `timesteps[i]`
    and moves the sample to `sigmas[i + 1]` (a two-evaluation solver such as Heun evaluates the
    model a second time at `timesteps[i + 1]` on its way there). For `alpha_bar` plans (DDPM,
    DDIM) the sigmas are the equivalent variance-exploding levels sqrt((1 - alpha_bar) / alpha_bar)
    of `alpha_bars` followed by that of `alpha_bars_prev[-1]`; those solvers step with the tables.

    `parameterization` and `steppers` come from the solver's row in the solver table: how the
    samples mix data and noise, and the step functions that may advance this plan (a step
    function refuses the plans of other solvers).

    With `denoise < 1` the plan is the tail of the full `num_inference_steps`-step plan, starting
    `skipped_steps` in: img2img noises the input to `start_sigma` / `start_timestep` (see
    `add_noise`) and runs the remaining steps.
    """

    solver: str
    schedule: Schedule
    timesteps: torch.Tensor
    sigmas: torch.Tensor
    num_inference_steps: int
    skipped_steps: int
    init_noise_sigma: float
    parameterization: Parameterization
    steppers: tuple[Callable[..., Any], ...]
    alpha_bars: torch.Tensor | None = None
    alpha_bars_prev: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.num_steps

    # Per-step lookups, built once per plan: a step reads them from a tuple instead of indexing
    # and subtracting tensors (about 3 us a step, a fifth of a cheap solver's update).

    @cached_property
    def num_steps(self) -> int:
        return int(self.timesteps.shape[0])

    @cached_property
    def sigma_levels(self) -> tuple[torch.Tensor, ...]:
        """`sigmas` as 0-d tensors: `sigma_levels[i]` is `sigmas[i]`."""
        return self.sigmas.unbind(0)

    @cached_property
    def sigma_deltas(self) -> tuple[torch.Tensor, ...]:
        """`sigmas[i + 1] - sigmas[i]` per step, as 0-d float32 tensors; a difference of two
        float32 values rounds the same elementwise as alone, so it equals diffusers' `dt`."""
        return (self.sigmas[1:] - self.sigmas[:-1]).unbind(0)

    def timestep_on(self, index: int, device: torch.device) -> torch.Tensor:
        """`timesteps[index]` on `device`. The whole table moves once per plan and device: a
        0-d tensor copied from pageable host memory to a GPU at every step would wait for the
        GPU to finish the previous step first (a stream sync), so the next network call could
        not be queued while one runs. diffusers keeps its timesteps on the device for this."""
        if device.type == "cpu":
            return self.timesteps[index]
        table = self._timesteps_by_device.get(device)
        if table is None:
            table = self._timesteps_by_device[device] = self.timesteps.to(device).unbind(0)
        return table[index]

    @cached_property
    def _timesteps_by_device(self) -> dict[torch.device, tuple[torch.Tensor, ...]]:
        return {}

    @cached_property
    def _alpha_bar_pairs(self) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
        if self.alpha_bars is None or self.alpha_bars_prev is None:
            raise ValueError(
                f"a {self.solver!r} plan has no alpha_bar tables; only alpha_bar plans do"
            )
        return tuple(zip(self.alpha_bars.unbind(0), self.alpha_bars_prev.unbind(0), strict=True))

    @property
    def start_timestep(self) -> torch.Tensor:
        """Model timestep of the first step, the level img2img noises its input to."""
        return self.timesteps[0]

    @property
    def start_sigma(self) -> torch.Tensor:
        """Noise level of the first step, the level img2img noises its input to."""
        return self.sigmas[0]

    def alpha_bar_step(self, step_index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(alpha_bar at step `step_index`, alpha_bar the step moves to); alpha_bar plans only."""
        return self._alpha_bar_pairs[step_index]


@dataclass(frozen=True)
class PlanRequest:
    """What a plan builder is asked for, after `check_plan_request`.

    `spacing` and `steps_offset` are the timestep spacing of Lin et al. 2024 (Table 2) for
    discrete schedules (flow builders ignore both, as diffusers' flow schedulers do);
    `set_alpha_to_one` and `final_sigma` are read only by the builders of solvers whose row
    accepts them (diffusers' `set_alpha_to_one` and `final_sigmas_type`), and so are the flow
    options: `time_shift` with its `mu` (FlowMatchEulerDiscreteScheduler's `use_dynamic_shifting`,
    `time_shift_type` and `set_timesteps(mu=...)`), `shift_terminal` (None: no stretch) and
    `sigma_grid` (the sigmas shifted: the scheduler's own, or FluxPipeline's custom ones).
    """

    schedule: Schedule
    steps: int
    spacing: str = "leading"
    steps_offset: int = 0
    set_alpha_to_one: bool = False
    final_sigma: str = "zero"
    time_shift: str = "static"
    mu: float | None = None
    shift_terminal: float | None = None
    sigma_grid: str = "training"


@dataclass(frozen=True, eq=False)
class PlanTables:
    """What a plan builder computes: the levels of a full (untruncated) run."""

    timesteps: torch.Tensor
    sigmas: torch.Tensor
    init_noise_sigma: float = 1.0
    alpha_bars: torch.Tensor | None = None
    alpha_bars_prev: torch.Tensor | None = None


PlanBuilder = Callable[[PlanRequest], PlanTables]


def check_plan_request(request: PlanRequest, denoise: float) -> None:
    """The checks every plan shares; each error names the offending argument."""
    schedule, steps = request.schedule, request.steps
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ArgumentError("steps", f"steps must be a positive int, got {steps!r}")
    if not schedule.is_flow and steps > schedule.num_train_timesteps:
        raise ArgumentError(
            "steps",
            f"steps ({steps}) cannot exceed the schedule's num_train_timesteps "
            f"({schedule.num_train_timesteps})"
        )
    if request.spacing not in SPACINGS:
        raise ArgumentError("spacing", f"spacing must be one of {SPACINGS}, got {request.spacing!r}")
    offset = request.steps_offset
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise ArgumentError("steps_offset", f"steps_offset must be a non-negative int, got {offset!r}")
    if not 0 < denoise <= 1:
        raise ArgumentError("denoise", f"denoise must be in (0, 1], got {denoise}")
    if request.final_sigma not in FINAL_SIGMAS:
        raise ArgumentError("final_sigma", f"final_sigma must be one of {FINAL_SIGMAS}, got {request.final_sigma!r}")
    _check_flow_shift(request)


def _check_flow_shift(request: PlanRequest) -> None:
    """time_shift, mu and shift_terminal: mu goes with a dynamic shift and only with it, and a
    dynamic shift replaces the schedule's static one (diffusers ignores `shift` then; we refuse
    to, so a set shift is never silently dropped)."""
    time_shift, mu, terminal = request.time_shift, request.mu, request.shift_terminal
    if request.sigma_grid not in SIGMA_GRIDS:
        raise ArgumentError(
            "sigma_grid", f"sigma_grid must be one of {SIGMA_GRIDS}, got {request.sigma_grid!r}"
        )
    if time_shift not in TIME_SHIFTS:
        raise ArgumentError("time_shift", f"time_shift must be one of {TIME_SHIFTS}, got {time_shift!r}")
    if time_shift == "static":
        if mu is not None:
            raise ArgumentError("mu", "mu applies to a dynamic time_shift ('exponential' or 'linear'), not 'static'")
    else:
        if isinstance(mu, bool) or not isinstance(mu, int | float) or not math.isfinite(mu):
            raise ArgumentError("mu", f"time_shift={time_shift!r} needs a finite mu, got {mu!r}")
        if time_shift == "linear" and not mu > 0:
            raise ArgumentError("mu", f"the linear time shift needs mu > 0, got {mu}")
        if request.schedule.shift != 1.0:
            raise ArgumentError(
                "time_shift",
                f"time_shift={time_shift!r} replaces the schedule's shift; use a schedule with "
                f"shift=1.0, not {request.schedule.shift}"
            )
    if terminal is not None and (
        isinstance(terminal, bool) or not isinstance(terminal, int | float) or not 0 < terminal < 1
    ):
        raise ArgumentError("shift_terminal", f"shift_terminal must be in (0, 1), got {terminal!r}")


def build_plan(
    solver: str,
    builder: PlanBuilder,
    parameterization: Parameterization,
    steppers: tuple[Callable[..., Any], ...],
    request: PlanRequest,
    denoise: float = 1.0,
) -> SamplingPlan:
    """The plan `builder` makes for `request`, labelled with its solver's facts and truncated
    for img2img (`denoise < 1`, see `truncate`)."""
    tables = builder(request)
    plan = SamplingPlan(
        solver=solver,
        schedule=request.schedule,
        timesteps=tables.timesteps,
        sigmas=tables.sigmas,
        num_inference_steps=int(tables.timesteps.shape[0]),
        skipped_steps=0,
        init_noise_sigma=tables.init_noise_sigma,
        parameterization=parameterization,
        steppers=steppers,
        alpha_bars=tables.alpha_bars,
        alpha_bars_prev=tables.alpha_bars_prev,
    )
    return truncate(plan, denoise)


# --- timestep grids -------------------------------------------------------------------------------


def _integer_grid(train_steps: int, steps: int, spacing: str, steps_offset: int) -> np.ndarray:
    """Descending int64 timesteps as DDPM/DDIM space them (Lin et al. 2024, Table 2)."""
    if spacing == "linspace":
        grid = np.linspace(0, train_steps - 1, steps).round()[::-1].astype(np.int64)
    elif spacing == "leading":
        grid = (np.arange(0, steps) * (train_steps // steps))[::-1].astype(np.int64) + steps_offset
    else:
        grid = np.round(np.arange(train_steps, 0, -train_steps / steps)).astype(np.int64) - 1
        # Float arange sometimes yields one extra point whose timestep is -1; diffusers passes it on.
        if len(grid) != steps:
            raise ArgumentError(
                "spacing",
                f"spacing='trailing' with steps={steps} over {train_steps} training steps makes "
                f"{len(grid)} timesteps ending at {grid[-1]} (a float-rounding defect diffusers "
                f"shares); choose another steps or spacing"
            )
    return grid


def _euler_grid(train_steps: int, steps: int, spacing: str, steps_offset: int) -> np.ndarray:
    """Float32 timesteps of the Euler and Heun schedulers; 'linspace' is left unrounded there."""
    if spacing == "linspace":
        return np.linspace(0, train_steps - 1, steps, dtype=np.float32)[::-1].copy()
    return _integer_grid(train_steps, steps, spacing, steps_offset).astype(np.float32)


def _dpm_grid(train_steps: int, steps: int, spacing: str, steps_offset: int) -> np.ndarray:
    """Int64 timesteps of DPMSolverMultistep: it spaces steps + 1 points and drops t = 0."""
    if spacing == "linspace":
        return np.linspace(0, train_steps - 1, steps + 1).round()[::-1][:-1].astype(np.int64)
    if spacing == "leading":
        ratio = train_steps // (steps + 1)
        return (np.arange(0, steps + 1) * ratio)[::-1][:-1].astype(np.int64) + steps_offset
    return _integer_grid(train_steps, steps, spacing, steps_offset)


# --- plan builders (one per set_timesteps) --------------------------------------------------------


def _train_sigmas(schedule: Schedule) -> torch.Tensor:
    """Variance-exploding noise level of each training step, sigma = sqrt((1 - ab) / ab) (float32)."""
    alpha_bars = schedule.alphas_cumprod_for_sigmas
    return ((1 - alpha_bars) / alpha_bars) ** 0.5


def _interpolated_sigmas(schedule: Schedule, timesteps: np.ndarray, final: float) -> torch.Tensor:
    """Sigmas at (possibly fractional) timesteps, linearly interpolated in float64 as diffusers
    does, with the final level appended and the result rounded to float32."""
    train_sigmas = _train_sigmas(schedule).numpy()
    sigmas = np.interp(timesteps, np.arange(0, len(train_sigmas)), train_sigmas)
    return torch.from_numpy(np.concatenate([sigmas, [final]]).astype(np.float32))


def _final_sigma_value(schedule: Schedule, final_sigma: str) -> float:
    return float(_train_sigmas(schedule)[0]) if final_sigma == "sigma_min" else 0.0


def _alpha_bar_tables(
    request: PlanRequest, prev_timesteps: torch.Tensor, timesteps: torch.Tensor, final: torch.Tensor
) -> PlanTables:
    alphas_cumprod = request.schedule.alphas_cumprod
    alpha_bars = alphas_cumprod[timesteps]
    alpha_bars_prev = torch.where(
        prev_timesteps >= 0, alphas_cumprod[prev_timesteps.clamp(min=0)], final
    )
    levels = torch.cat([alpha_bars, alpha_bars_prev[-1:]])
    return PlanTables(
        timesteps=timesteps,
        sigmas=((1 - levels) / levels) ** 0.5,
        alpha_bars=alpha_bars,
        alpha_bars_prev=alpha_bars_prev,
    )


def _discrete_timesteps(request: PlanRequest) -> torch.Tensor:
    train_steps = request.schedule.num_train_timesteps
    return torch.from_numpy(
        _integer_grid(train_steps, request.steps, request.spacing, request.steps_offset)
    )


def ddpm_plan(request: PlanRequest) -> PlanTables:
    """DDPMScheduler.set_timesteps: each step goes to the next planned timestep; past the last
    one lies x_0 (alpha_bar = 1)."""
    timesteps = _discrete_timesteps(request)
    prev_timesteps = torch.cat([timesteps[1:], torch.tensor([-1])])
    return _alpha_bar_tables(request, prev_timesteps, timesteps, torch.tensor(1.0))


def ddim_plan(request: PlanRequest) -> PlanTables:
    """DDIMScheduler.set_timesteps: a step always jumps by T // steps, whatever the spacing
    (DDIMScheduler.step); the step after t = 0 lands on alpha_bar = 1 with `set_alpha_to_one`,
    else on alpha_bar_0 (as SD1.5 configures it)."""
    timesteps = _discrete_timesteps(request)
    prev_timesteps = timesteps - request.schedule.num_train_timesteps // request.steps
    alphas_cumprod = request.schedule.alphas_cumprod
    final = torch.tensor(1.0) if request.set_alpha_to_one else alphas_cumprod[0]
    return _alpha_bar_tables(request, prev_timesteps, timesteps, final)


def euler_plan(request: PlanRequest) -> PlanTables:
    """EulerDiscreteScheduler.set_timesteps (also Euler ancestral's, and Heun's before it
    repeats every level but the first for its second evaluations)."""
    schedule = request.schedule
    timesteps = _euler_grid(
        schedule.num_train_timesteps, request.steps, request.spacing, request.steps_offset
    )
    sigmas = _interpolated_sigmas(
        schedule, timesteps, _final_sigma_value(schedule, request.final_sigma)
    )
    # Pure-noise latents have variance sigma_max^2 in the VE parameterisation. With 'leading'
    # spacing diffusers scales by sqrt(sigma_max^2 + 1) instead; we follow it for parity.
    sigma_max = sigmas.max()
    leading = request.spacing == "leading"
    init_noise_sigma = (sigma_max**2 + 1) ** 0.5 if leading else sigma_max
    return PlanTables(
        timesteps=torch.from_numpy(timesteps),
        sigmas=sigmas,
        init_noise_sigma=float(init_noise_sigma),
    )


def dpm_plan(request: PlanRequest) -> PlanTables:
    """DPMSolverMultistepScheduler.set_timesteps on a discrete schedule."""
    schedule = request.schedule
    timesteps = _dpm_grid(
        schedule.num_train_timesteps, request.steps, request.spacing, request.steps_offset
    )
    return PlanTables(
        timesteps=torch.from_numpy(timesteps),
        sigmas=_interpolated_sigmas(
            schedule, timesteps, _final_sigma_value(schedule, request.final_sigma)
        ),
    )


def flow_euler_plan(request: PlanRequest) -> PlanTables:
    """FlowMatchEulerDiscreteScheduler.set_timesteps, with a static shift (SD3) or a dynamic
    one from `mu` (FLUX, `use_dynamic_shifting`), the optional `shift_terminal` stretch, and on
    the scheduler's own sigma grid or FluxPipeline's (`sigma_grid`)."""
    schedule, steps = request.schedule, request.steps
    train_steps = schedule.num_train_timesteps
    dynamic = request.time_shift != "static"
    # FlowMatchEulerDiscreteScheduler spaces steps between the ends of its float32 training grid
    # (sigma = 1 and 1 / T), *already shifted* for a static shift, and then shifts again in
    # float64, so the last sigma is shift(shift(1 / T)). A dynamic shift leaves the training
    # grid as it is and shifts once. Reproduced for parity.
    if request.sigma_grid == "steps":
        # FluxPipeline's sigmas: np.linspace(1, 1 / N, N), which set_timesteps turns into float32
        # before shifting (so the shift runs in float32 here).
        unshifted = np.linspace(1.0, 1 / steps, steps).astype(np.float32)
    else:
        training_ends = torch.tensor([train_steps, 1], dtype=torch.float32) / train_steps
        if not dynamic:
            training_ends = schedule.shift_sigmas(training_ends)
        sigma_max, sigma_min = training_ends.tolist()
        unshifted = np.linspace(sigma_max * train_steps, sigma_min * train_steps, steps) / train_steps
    if dynamic:
        assert request.mu is not None  # check_plan_request
        shifted = _dynamic_time_shift(request.time_shift, float(request.mu), unshifted)
    else:
        shifted = schedule.shift_sigmas(unshifted)
    if request.shift_terminal is not None:
        shifted = _stretch_to_terminal(shifted, float(request.shift_terminal))
    sigmas = torch.from_numpy(shifted).to(torch.float32)
    return PlanTables(timesteps=sigmas * train_steps, sigmas=torch.cat([sigmas, torch.zeros(1)]))


def _dynamic_time_shift(kind: str, mu: float, t: np.ndarray, exponent: float = 1.0) -> np.ndarray:
    """The resolution-dependent shift of FLUX: the static shift's s t / (1 + (s - 1) t) written
    as 1 / (1 + (1/t - 1) / s) with s = e^mu ('exponential') or s = mu ('linear'), in float64."""
    scale = math.exp(mu) if kind == "exponential" else mu
    return scale / (scale + (1 / t - 1) ** exponent)


def _stretch_to_terminal(t: np.ndarray, terminal: float) -> np.ndarray:
    """Scale 1 - t so the last sigma lands on `terminal` (LTX-Video's shift_terminal)."""
    one_minus_t = 1 - t
    if one_minus_t[-1] == 0:
        raise ArgumentError(
            "shift_terminal",
            "shift_terminal cannot stretch a plan whose last sigma is 1 (one step); use more steps"
        )
    scale = one_minus_t[-1] / (1 - terminal)
    return 1 - (one_minus_t / scale)


def flow_dpm_plan(request: PlanRequest) -> PlanTables:
    """DPMSolverMultistepScheduler(use_flow_sigmas=True).set_timesteps."""
    schedule = request.schedule
    train_steps = schedule.num_train_timesteps
    # steps + 1 unshifted sigmas from 0 to 1 - 1/T, shifted in float64, reversed, and the
    # terminal 0 dropped (it returns as the final sigma). Timesteps are sigma * T truncated to int64.
    unshifted = 1.0 - np.linspace(1, 1 / train_steps, request.steps + 1)
    sigmas = np.flip(schedule.shift_sigmas(unshifted))[:-1].copy()
    return PlanTables(
        timesteps=torch.from_numpy(sigmas * train_steps).to(torch.int64),
        sigmas=torch.from_numpy(np.concatenate([sigmas, [0]]).astype(np.float32)),
    )


# --- img2img --------------------------------------------------------------------------------------


def _skipped_steps(plan: SamplingPlan, denoise: float) -> int:
    steps = len(plan)
    # StableDiffusion3Img2ImgPipeline.get_timesteps (flow) and StableDiffusionImg2ImgPipeline's.
    if plan.schedule.is_flow:
        return int(max(steps - min(steps * denoise, steps), 0))
    return max(steps - min(int(steps * denoise), steps), 0)


def truncate(plan: SamplingPlan, denoise: float) -> SamplingPlan:
    """Drop the first steps like diffusers' img2img `get_timesteps(steps, strength)`.

    Discrete schedules keep `int(steps * denoise)` steps, flow schedules
    `steps - int(steps - steps * denoise)`. Every remaining step keeps its own sigma and the next
    one. The first remaining step has no solver history, so DPM-Solver starts with a first-order
    step there, as diffusers does after `set_begin_index`.
    """
    start = _skipped_steps(plan, denoise)
    if start >= len(plan):
        raise ArgumentError(
            "denoise",
            f"denoise={denoise} leaves no steps to run out of {len(plan)}; raise denoise or steps"
        )
    if start == 0:
        return plan

    def tail(values: torch.Tensor | None) -> torch.Tensor | None:
        return None if values is None else values[start:]

    return dataclasses.replace(
        plan,
        timesteps=plan.timesteps[start:],
        sigmas=plan.sigmas[start:],
        skipped_steps=start,
        alpha_bars=tail(plan.alpha_bars),
        alpha_bars_prev=tail(plan.alpha_bars_prev),
    )
