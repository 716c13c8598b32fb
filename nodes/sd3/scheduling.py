"""The flow-matching schedule an MM-DiT checkpoint ships with: FlowMatchEulerDiscreteScheduler's
config (scheduler/scheduler_config.json) as the plan options LG_Sampler asks a denoiser for.

SD3 and SD3.5 shift statically (shift 3.0, Esser et al. 2024, sec. 5.3.2); FLUX.1 and SD3 configs
with ``use_dynamic_shifting`` shift by a mu that grows linearly with the image's token count,
from ``base_shift`` at ``base_image_seq_len`` tokens to ``max_shift`` at ``max_image_seq_len``
(the pipelines' ``calculate_shift``). Both families read this one module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..common.files import CheckpointError
from ..diffusion.math import ArgumentError, Schedule
from ..diffusion.schedule_nodes import flux_mu


@dataclass(frozen=True)
class FlowMatch:
    """A FlowMatchEulerDiscreteScheduler configuration, as the pipelines sample with it.

    ``dynamic``: (base_image_seq_len, max_image_seq_len, base_shift, max_shift) when the shift
    depends on the resolution; then the schedule's own shift is 1 and ``time_shift`` says how mu
    warps the sigmas. ``sigma_grid`` is "steps" for FluxPipeline, which passes its own sigmas.
    """

    schedule: Schedule
    dynamic: tuple[int, int, float, float] | None = None
    time_shift: str = "exponential"
    shift_terminal: float | None = None
    sigma_grid: str = "training"

    def plan_options(self, tokens: int) -> dict[str, Any]:
        """LG_SamplingPlan's options for an image of ``tokens`` patches."""
        options: dict[str, Any] = {}
        if self.dynamic is not None:
            options.update(time_shift=self.time_shift, mu=flux_mu(tokens, *self.dynamic))
        if self.shift_terminal is not None:
            options["shift_terminal"] = self.shift_terminal
        if self.sigma_grid != "training":
            options["sigma_grid"] = self.sigma_grid
        return options


def flow_match(
    config: dict[str, Any], source: str, default_max_shift: float, sigma_grid: str = "training"
) -> FlowMatch:
    """A FlowMatch from a scheduler config; ``default_max_shift`` is the pipeline's default for
    a config that leaves max_shift out (StableDiffusion3Pipeline 1.16, FluxPipeline 1.15)."""
    for option in ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas", "invert_sigmas"):
        if config.get(option):
            raise CheckpointError(f"{source}: {option} is not supported")
    dynamic = bool(config.get("use_dynamic_shifting"))
    try:
        schedule = Schedule(
            beta_schedule="flow",
            num_train_timesteps=int(config.get("num_train_timesteps", 1000)),
            prediction_type="flow_prediction",
            # A dynamic shift replaces the static one (the scheduler then ignores `shift`).
            shift=1.0 if dynamic else float(config.get("shift", 1.0)),
        )
        time_shift = str(config.get("time_shift_type", "exponential"))
        if time_shift not in ("exponential", "linear"):
            raise ArgumentError("time_shift_type", f"unknown time_shift_type {time_shift!r}")
    except (ArgumentError, ValueError, TypeError) as err:
        raise CheckpointError(f"{source}: {err}") from None
    terminal = config.get("shift_terminal")
    return FlowMatch(
        schedule,
        (
            int(config.get("base_image_seq_len", 256)),
            int(config.get("max_image_seq_len", 4096)),
            float(config.get("base_shift", 0.5)),
            float(config.get("max_shift", default_max_shift)),
        )
        if dynamic
        else None,
        time_shift,
        float(terminal) if terminal else None,
        sigma_grid,
    )


#: SD3 / SD3.5 as released: shift 3.0, no dynamic shifting.
SD3 = FlowMatch(Schedule("flow", prediction_type="flow_prediction", shift=3.0))
