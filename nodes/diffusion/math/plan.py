"""Sampling plans: the timesteps and noise levels one sampling run visits, fixed up front.

`make_plan` reproduces the `set_timesteps` of the matching diffusers scheduler exactly, including
its dtypes (timesteps are int64 or float32 as diffusers feeds them to the model; sigmas are float32
after any float64 interpolation) and its img2img truncation.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import cached_property
from typing import Literal, get_args

import numpy as np
import torch

from .schedule import Schedule

Solver = Literal[
    "ddpm", "ddim", "euler", "euler_ancestral", "dpmpp_2m", "flow_euler", "flow_dpmpp_2m"
]
Spacing = Literal["leading", "trailing", "linspace"]
FinalSigma = Literal["zero", "sigma_min"]

SOLVERS: tuple[str, ...] = get_args(Solver)
SPACINGS: tuple[str, ...] = get_args(Spacing)
FLOW_SOLVERS = ("flow_euler", "flow_dpmpp_2m")
EULER_SOLVERS = ("euler", "euler_ancestral")
DPM_SOLVERS = ("dpmpp_2m", "flow_dpmpp_2m")
ALPHA_BAR_SOLVERS = ("ddpm", "ddim")


@dataclass(frozen=True, eq=False)
class SamplingPlan:
    """Everything a step function needs to know about a sampling run. Treat tensors as read-only.

    Step `i` takes the sample at noise level `sigmas[i]`, evaluates the model at `timesteps[i]`
    and moves the sample to `sigmas[i + 1]`. For `ddpm`/`ddim` the sigmas are the equivalent
    variance-exploding levels sqrt((1 - alpha_bar) / alpha_bar) of `alpha_bars` followed by that of
    `alpha_bars_prev[-1]`; those solvers step with the alpha_bar tables.

    With `denoise < 1` the plan is the tail of the full `num_inference_steps`-step plan, starting
    `skipped_steps` in: img2img noises the input to `start_sigma` / `start_timestep` (see
    `add_noise`) and runs the remaining steps.
    """

    solver: Solver
    schedule: Schedule
    timesteps: torch.Tensor
    sigmas: torch.Tensor
    num_inference_steps: int
    skipped_steps: int
    init_noise_sigma: float
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
            raise ValueError(f"a {self.solver!r} plan has no alpha_bar tables; only ddpm/ddim do")
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
        """(alpha_bar at step `step_index`, alpha_bar the step moves to); ddpm/ddim plans only."""
        return self._alpha_bar_pairs[step_index]


def make_plan(
    schedule: Schedule,
    steps: int,
    solver: Solver,
    spacing: Spacing = "leading",
    steps_offset: int = 0,
    denoise: float = 1.0,
    *,
    set_alpha_to_one: bool = False,
    final_sigma: FinalSigma = "zero",
) -> SamplingPlan:
    """Build the plan diffusers' matching scheduler would after `set_timesteps(steps)`.

    Args:
        schedule: the training schedule; flow solvers need `beta_schedule="flow"`, the others a
            discrete schedule.
        steps: number of inference steps before `denoise` truncation.
        solver: which sampler the plan is for; each step function accepts only its own plans.
        spacing, steps_offset: timestep spacing of Lin et al. 2024 (Table 2) for discrete
            schedules. Flow solvers ignore both, as diffusers' flow schedulers do.
        denoise: img2img strength in (0, 1]. Discrete solvers keep `int(steps * denoise)` steps
            (StableDiffusionImg2ImgPipeline.get_timesteps); flow solvers keep
            `steps - int(steps - steps * denoise)` (StableDiffusion3Img2ImgPipeline.get_timesteps).
        set_alpha_to_one: DDIM only; whether the step after t = 0 lands on alpha_bar = 1 (True) or
            on alpha_bar_0 (False, as SD1.5 configures it).
        final_sigma: `euler` and `dpmpp_2m` only; end at sigma 0 or at the schedule's smallest
            sigma (diffusers' `final_sigmas_type`).
    """
    _check_arguments(
        schedule, steps, solver, spacing, steps_offset, denoise, set_alpha_to_one, final_sigma
    )
    if solver in ALPHA_BAR_SOLVERS:
        plan = _alpha_bar_plan(schedule, steps, solver, spacing, steps_offset, set_alpha_to_one)
    elif solver in EULER_SOLVERS:
        plan = _euler_plan(schedule, steps, solver, spacing, steps_offset, final_sigma)
    elif solver == "dpmpp_2m":
        plan = _dpm_plan(schedule, steps, spacing, steps_offset, final_sigma)
    elif solver == "flow_euler":
        plan = _flow_euler_plan(schedule, steps)
    else:
        plan = _flow_dpm_plan(schedule, steps)
    return _truncate(plan, denoise)


def _check_arguments(
    schedule: Schedule,
    steps: int,
    solver: str,
    spacing: str,
    steps_offset: int,
    denoise: float,
    set_alpha_to_one: bool,
    final_sigma: str,
) -> None:
    if not isinstance(schedule, Schedule):
        raise ValueError(f"schedule must be a Schedule, got {type(schedule).__name__}")
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
    if (solver in FLOW_SOLVERS) != schedule.is_flow:
        wanted = "a 'flow'" if solver in FLOW_SOLVERS else "a discrete (non-flow)"
        raise ValueError(
            f"solver {solver!r} needs {wanted} schedule, got beta_schedule={schedule.beta_schedule!r}"
        )
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    if not schedule.is_flow and steps > schedule.num_train_timesteps:
        raise ValueError(
            f"steps ({steps}) cannot exceed the schedule's num_train_timesteps "
            f"({schedule.num_train_timesteps})"
        )
    if spacing not in SPACINGS:
        raise ValueError(f"spacing must be one of {SPACINGS}, got {spacing!r}")
    if isinstance(steps_offset, bool) or not isinstance(steps_offset, int) or steps_offset < 0:
        raise ValueError(f"steps_offset must be a non-negative int, got {steps_offset!r}")
    if not 0 < denoise <= 1:
        raise ValueError(f"denoise must be in (0, 1], got {denoise}")
    if set_alpha_to_one and solver != "ddim":
        raise ValueError(f"set_alpha_to_one only applies to the 'ddim' solver, not {solver!r}")
    if final_sigma not in get_args(FinalSigma):
        raise ValueError(f"final_sigma must be one of {get_args(FinalSigma)}, got {final_sigma!r}")
    if final_sigma != "zero" and solver not in ("euler", "dpmpp_2m"):
        raise ValueError(f"final_sigma={final_sigma!r} only applies to 'euler' and 'dpmpp_2m'")


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
            raise ValueError(
                f"spacing='trailing' with steps={steps} over {train_steps} training steps makes "
                f"{len(grid)} timesteps ending at {grid[-1]} (a float-rounding defect diffusers "
                f"shares); choose another steps or spacing"
            )
    return grid


def _euler_grid(train_steps: int, steps: int, spacing: str, steps_offset: int) -> np.ndarray:
    """Float32 timesteps of the Euler schedulers; 'linspace' is left unrounded there."""
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


# --- per-solver plans -----------------------------------------------------------------------------


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


def _alpha_bar_plan(
    schedule: Schedule,
    steps: int,
    solver: Solver,
    spacing: str,
    steps_offset: int,
    set_alpha_to_one: bool,
) -> SamplingPlan:
    alphas_cumprod = schedule.alphas_cumprod
    timesteps = torch.from_numpy(
        _integer_grid(schedule.num_train_timesteps, steps, spacing, steps_offset)
    )
    if solver == "ddpm":
        # DDPM steps to the next planned timestep; past the last one lies x_0 (alpha_bar = 1).
        prev_timesteps = torch.cat([timesteps[1:], torch.tensor([-1])])
        final_alpha_bar = torch.tensor(1.0)
    else:
        # DDIM always jumps by T // steps, whatever the spacing (diffusers' DDIMScheduler.step).
        prev_timesteps = timesteps - schedule.num_train_timesteps // steps
        final_alpha_bar = torch.tensor(1.0) if set_alpha_to_one else alphas_cumprod[0]
    alpha_bars = alphas_cumprod[timesteps]
    alpha_bars_prev = torch.where(
        prev_timesteps >= 0, alphas_cumprod[prev_timesteps.clamp(min=0)], final_alpha_bar
    )
    levels = torch.cat([alpha_bars, alpha_bars_prev[-1:]])
    return SamplingPlan(
        solver=solver,
        schedule=schedule,
        timesteps=timesteps,
        sigmas=((1 - levels) / levels) ** 0.5,
        num_inference_steps=len(timesteps),
        skipped_steps=0,
        init_noise_sigma=1.0,
        alpha_bars=alpha_bars,
        alpha_bars_prev=alpha_bars_prev,
    )


def _euler_plan(
    schedule: Schedule,
    steps: int,
    solver: Solver,
    spacing: str,
    steps_offset: int,
    final_sigma: str,
) -> SamplingPlan:
    timesteps = _euler_grid(schedule.num_train_timesteps, steps, spacing, steps_offset)
    sigmas = _interpolated_sigmas(schedule, timesteps, _final_sigma_value(schedule, final_sigma))
    # Pure-noise latents have variance sigma_max^2 in the VE parameterisation. With 'leading'
    # spacing diffusers scales by sqrt(sigma_max^2 + 1) instead; we follow it for parity.
    sigma_max = sigmas.max()
    init_noise_sigma = (sigma_max**2 + 1) ** 0.5 if spacing == "leading" else sigma_max
    return SamplingPlan(
        solver=solver,
        schedule=schedule,
        timesteps=torch.from_numpy(timesteps),
        sigmas=sigmas,
        num_inference_steps=len(timesteps),
        skipped_steps=0,
        init_noise_sigma=float(init_noise_sigma),
    )


def _dpm_plan(
    schedule: Schedule, steps: int, spacing: str, steps_offset: int, final_sigma: str
) -> SamplingPlan:
    timesteps = _dpm_grid(schedule.num_train_timesteps, steps, spacing, steps_offset)
    return SamplingPlan(
        solver="dpmpp_2m",
        schedule=schedule,
        timesteps=torch.from_numpy(timesteps),
        sigmas=_interpolated_sigmas(schedule, timesteps, _final_sigma_value(schedule, final_sigma)),
        num_inference_steps=len(timesteps),
        skipped_steps=0,
        init_noise_sigma=1.0,
    )


def _flow_euler_plan(schedule: Schedule, steps: int) -> SamplingPlan:
    train_steps = schedule.num_train_timesteps
    # FlowMatchEulerDiscreteScheduler spaces steps between the ends of its *already shifted*
    # float32 training grid (sigma = 1 and shift(1 / T)) and then shifts again in float64, so
    # the last sigma is shift(shift(1 / T)). Reproduced for parity.
    training_ends = schedule.shift_sigmas(
        torch.tensor([train_steps, 1], dtype=torch.float32) / train_steps
    )
    sigma_max, sigma_min = training_ends.tolist()
    unshifted = np.linspace(sigma_max * train_steps, sigma_min * train_steps, steps) / train_steps
    sigmas = torch.from_numpy(schedule.shift_sigmas(unshifted)).to(torch.float32)
    return SamplingPlan(
        solver="flow_euler",
        schedule=schedule,
        timesteps=sigmas * train_steps,
        sigmas=torch.cat([sigmas, torch.zeros(1)]),
        num_inference_steps=steps,
        skipped_steps=0,
        init_noise_sigma=1.0,
    )


def _flow_dpm_plan(schedule: Schedule, steps: int) -> SamplingPlan:
    train_steps = schedule.num_train_timesteps
    # DPMSolverMultistep(use_flow_sigmas=True): steps + 1 unshifted sigmas from 0 to 1 - 1/T,
    # shifted in float64, reversed, and the terminal 0 dropped (it returns as the final sigma).
    # Timesteps are sigma * T truncated to int64.
    unshifted = 1.0 - np.linspace(1, 1 / train_steps, steps + 1)
    sigmas = np.flip(schedule.shift_sigmas(unshifted))[:-1].copy()
    timesteps = torch.from_numpy(sigmas * train_steps).to(torch.int64)
    return SamplingPlan(
        solver="flow_dpmpp_2m",
        schedule=schedule,
        timesteps=timesteps,
        sigmas=torch.from_numpy(np.concatenate([sigmas, [0]]).astype(np.float32)),
        num_inference_steps=steps,
        skipped_steps=0,
        init_noise_sigma=1.0,
    )


# --- img2img --------------------------------------------------------------------------------------


def _skipped_steps(solver: str, steps: int, denoise: float) -> int:
    if solver in FLOW_SOLVERS:
        return int(max(steps - min(steps * denoise, steps), 0))
    return max(steps - min(int(steps * denoise), steps), 0)


def _truncate(plan: SamplingPlan, denoise: float) -> SamplingPlan:
    """Drop the first steps like diffusers' img2img `get_timesteps(steps, strength)`.

    Every remaining step keeps its own sigma and the next one. The first remaining step has no
    solver history, so DPM-Solver starts with a first-order step there, as diffusers does after
    `set_begin_index`.
    """
    start = _skipped_steps(plan.solver, len(plan), denoise)
    if start >= len(plan):
        raise ValueError(
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
