"""DPM-Solver++(2M): the multistep second-order data-prediction solver (Lu et al. 2022, Alg. 2).

The solver works in log-SNR time lambda = log(alpha_t / sigma_t). Discrete schedules use the VP
pair alpha_t = 1 / sqrt(sigma^2 + 1), sigma_t = sigma * alpha_t of the plan's VE sigma; flow plans
use alpha_t = 1 - sigma, sigma_t = sigma. Each step reuses the previous step's x0 prediction, so
the history travels in an explicit, immutable `DPMSolverState` and a run can resume from any
cached step. Arithmetic mirrors diffusers' DPMSolverMultistepScheduler (solver_order=2,
algorithm_type="dpmsolver++", solver_type="midpoint") operation by operation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ._validation import check_same_shape, check_step_call, in_dtype
from .plan import SamplingPlan

# diffusers drops to first order on the last step of plans shorter than this (lower_order_final).
LOWER_ORDER_FINAL_MAX_STEPS = 15


@dataclass(frozen=True, eq=False)
class DPMSolverState:
    """Multistep history after a step: the x0 prediction of step `step_index` (Alg. 2's
    m_{i-1} for the next step). Treat the tensor as read-only."""

    previous_denoised: torch.Tensor
    step_index: int


def alpha_sigma(plan: SamplingPlan, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(alpha_t, sigma_t) of a plan level: rectified flow's pair, else the VP pair of a VE sigma."""
    if plan.parameterization == "flow":
        return 1 - sigma, sigma
    alpha_t = 1 / ((sigma**2 + 1) ** 0.5)
    return alpha_t, sigma * alpha_t


def log_snr(alpha_t: torch.Tensor, sigma_t: torch.Tensor) -> torch.Tensor:
    """lambda_t = log(alpha_t) - log(sigma_t); +inf at sigma_t = 0."""
    return torch.log(alpha_t) - torch.log(sigma_t)


def predict_x0(
    sample: torch.Tensor, model_output: torch.Tensor, plan: SamplingPlan, index: int
) -> torch.Tensor:
    """The data prediction x_theta(x_t, t) that DPM-Solver++ integrates, from the model output."""
    sigma = plan.sigma_levels[index]
    prediction_type = plan.schedule.prediction_type
    if prediction_type == "flow_prediction":
        return sample - sigma * model_output
    alpha_t, sigma_t = alpha_sigma(plan, sigma)
    if prediction_type == "epsilon":
        return (sample - sigma_t * model_output) / alpha_t
    return alpha_t * sample - sigma_t * model_output


def _first_order_update(
    sample: torch.Tensor, denoised: torch.Tensor, plan: SamplingPlan, index: int
) -> torch.Tensor:
    """First-order step, the first line of Alg. 2 (DDIM in data prediction):
    x_t = (sigma_t / sigma_s) x_s - alpha_t (e^{-h} - 1) x0, h = lambda_t - lambda_s."""
    alpha_t, sigma_t = alpha_sigma(plan, plan.sigma_levels[index + 1])
    alpha_s, sigma_s = alpha_sigma(plan, plan.sigma_levels[index])
    h = log_snr(alpha_t, sigma_t) - log_snr(alpha_s, sigma_s)
    return ((sigma_t / sigma_s) * sample).sub_((alpha_t * (torch.exp(-h) - 1.0)) * denoised)


def _second_order_update(
    sample: torch.Tensor,
    denoised: torch.Tensor,
    previous_denoised: torch.Tensor,
    plan: SamplingPlan,
    index: int,
) -> torch.Tensor:
    """Alg. 2 multistep update: x_t = (sigma_t / sigma_s) x_s - alpha_t (e^{-h} - 1) D with
    D = (1 + 1/(2r)) m_i - 1/(2r) m_{i-1}, r = h_{i-1} / h_i, evaluated as D0 + D1 / 2 with
    D0 = m_i and D1 = (m_i - m_{i-1}) / r (diffusers' "midpoint" form)."""
    alpha_t, sigma_t = alpha_sigma(plan, plan.sigma_levels[index + 1])
    alpha_s0, sigma_s0 = alpha_sigma(plan, plan.sigma_levels[index])
    alpha_s1, sigma_s1 = alpha_sigma(plan, plan.sigma_levels[index - 1])
    lambda_t = log_snr(alpha_t, sigma_t)
    lambda_s0 = log_snr(alpha_s0, sigma_s0)
    lambda_s1 = log_snr(alpha_s1, sigma_s1)
    h = lambda_t - lambda_s0
    r0 = (lambda_s0 - lambda_s1) / h
    d0 = denoised
    d1 = (1.0 / r0) * (denoised - previous_denoised)
    # (a - b) - c as diffusers writes it, in the buffer of a: the same operations in the same order.
    return (
        ((sigma_t / sigma_s0) * sample)
        .sub_((alpha_t * (torch.exp(-h) - 1.0)) * d0)
        .sub_(0.5 * (alpha_t * (torch.exp(-h) - 1.0)) * d1)
    )


def check_state(state: DPMSolverState | None, index: int, sample: torch.Tensor) -> None:
    """That `state` is the history step `index` needs: none at step 0, step index - 1's after."""
    if state is None and index > 0:
        raise ValueError(
            f"state is required at step_index {index}: pass the DPMSolverState returned by "
            f"step {index - 1} (only step 0 starts without history)"
        )
    if state is not None:
        if not isinstance(state, DPMSolverState):
            raise ValueError(f"state must be a DPMSolverState or None, got {type(state).__name__}")
        if state.step_index != index - 1:
            raise ValueError(
                f"state comes from step {state.step_index} but step_index is {index}; "
                f"step {index} needs the state of step {index - 1}"
            )
        check_same_shape("state.previous_denoised", state.previous_denoised, "sample", sample)


def last_step_is_first_order(plan: SamplingPlan, index: int, lower_order_final: bool) -> bool:
    """Whether step `index` falls back to first order as the last step of the plan."""
    if index != len(plan) - 1:
        return False
    # A step to sigma = 0 has h = inf, where the second-order term is inf * 0: always first order.
    # Otherwise short plans take a first-order last step for stability (diffusers'
    # lower_order_final, judged on the full plan length as diffusers does for img2img too).
    ends_at_zero = bool(plan.sigma_levels[-1] == 0)
    short_plan = plan.num_inference_steps < LOWER_ORDER_FINAL_MAX_STEPS
    return ends_at_zero or (lower_order_final and short_plan)


def dpmpp_2m_step(
    sample: torch.Tensor,
    model_output: torch.Tensor,
    plan: SamplingPlan,
    step_index: int,
    state: DPMSolverState | None,
    lower_order_final: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, DPMSolverState]:
    """One DPM-Solver++(2M) step; returns (prev_sample, denoised x0, new_state).

    Pass `state=None` on a plan's first step and the returned state to the next step. Resuming a
    run from step i needs the state returned by step i - 1. Works for `dpmpp_2m` plans (epsilon or
    v_prediction) and `flow_dpmpp_2m` plans (flow_prediction).
    """
    index = check_step_call(dpmpp_2m_step, sample, model_output, plan, step_index)
    check_state(state, index, sample)

    denoised = predict_x0(sample, model_output, plan, index)
    sample = in_dtype(sample, torch.float32)
    # Alg. 2 starts with a first-order step: there is no history yet.
    if state is None or last_step_is_first_order(plan, index, lower_order_final):
        prev_sample = _first_order_update(sample, denoised, plan, index)
    else:
        prev_sample = _second_order_update(sample, denoised, state.previous_denoised, plan, index)
    new_state = DPMSolverState(previous_denoised=denoised, step_index=index)
    return in_dtype(prev_sample, model_output.dtype), denoised, new_state
