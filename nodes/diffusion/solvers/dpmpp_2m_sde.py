"""DPM-Solver++(2M) SDE: the multistep data-prediction solver of the reverse diffusion SDE.

Lu et al. 2022 (DPM-Solver++) integrate the diffusion equation in log-SNR time
lambda = log(alpha_t / sigma_t), h = lambda_t - lambda_s, with the data prediction x0 = D(x_s).
Solving the linear part of the reverse SDE exactly instead of the ODE's (so half the noise the
forward process would add is put back, as in DDPM's ancestral step) gives the first-order update

    x_t = (sigma_t / sigma_s) e^{-h} x_s + alpha_t (1 - e^{-2h}) x0 + sigma_t sqrt(1 - e^{-2h}) z

with fresh z ~ N(0, I), and the 2M variant replaces x0 by the multistep estimate of Alg. 2,
D0 + D1 / 2 with D0 = m_i, D1 = (m_i - m_{i-1}) / r and r = h_{i-1} / h_i (the "midpoint" form).
Everything else is DPM-Solver++(2M)'s (`math.dpm_solver`): the VP pair of the plan's sigmas (or
rectified flow's), the explicit multistep `DPMSolverState`, the first-order first step and the
first-order last step of short plans and of plans ending at sigma = 0.

The noise is one float32 draw of the model output's shape per step, on every step, from the
step's seed or the random stream handed on, exactly as diffusers' step draws it (`randn_tensor`
with the pipeline's CPU generator), so a chain of steps reproduces a pipeline bit for bit. The
arithmetic mirrors DPMSolverMultistepScheduler(algorithm_type="sde-dpmsolver++", solver_order=2,
solver_type="midpoint") operation by operation.
"""

from __future__ import annotations

from typing import Any, Optional

import torch

from ....executor.node import Input
from ..math import DPMSolverState, SamplingPlan, Seed, randn_like_diffusers
from ..math._validation import check_step_call, in_dtype
from ..math.dpm_solver import (
    alpha_sigma,
    check_state,
    last_step_is_first_order,
    log_snr,
    predict_x0,
)
from ..noise_nodes import SEED_MAX, generator
from ..sockets import RngSocket
from ..step_nodes import (
    CATEGORY,
    DPMSolverInputs,
    DPMSolverOutputs,
    StepNode,
    check_state_input,
    checked_tensors,
    report,
    step_outputs,
)

# --- the math -------------------------------------------------------------------------------------


def _sde_coefficients(
    plan: SamplingPlan, index: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(alpha_t, (sigma_t / sigma_s) e^{-h}, 1 - e^{-2h}, sigma_t sqrt(1 - e^{-2h})) of the step
    from level `index` to `index + 1`, and the log-SNR step h."""
    alpha_t, sigma_t = alpha_sigma(plan, plan.sigma_levels[index + 1])
    alpha_s, sigma_s = alpha_sigma(plan, plan.sigma_levels[index])
    h = log_snr(alpha_t, sigma_t) - log_snr(alpha_s, sigma_s)
    kept = 1 - torch.exp(-2.0 * h)
    return h, sigma_t / sigma_s * torch.exp(-h), alpha_t * kept, sigma_t * torch.sqrt(kept)


def _first_order_update(
    sample: torch.Tensor,
    denoised: torch.Tensor,
    noise: torch.Tensor,
    plan: SamplingPlan,
    index: int,
) -> torch.Tensor:
    """x_t = (sigma_t / sigma_s) e^{-h} x_s + alpha_t (1 - e^{-2h}) x0 + sigma_t sqrt(1 - e^{-2h}) z."""
    _, decay, data_weight, noise_weight = _sde_coefficients(plan, index)
    # ((a + b) + c) as diffusers sums it, each sum in the first term's buffer.
    return (decay * sample).add_(data_weight * denoised).add_(noise.mul_(noise_weight))


def _second_order_update(
    sample: torch.Tensor,
    denoised: torch.Tensor,
    previous_denoised: torch.Tensor,
    noise: torch.Tensor,
    plan: SamplingPlan,
    index: int,
) -> torch.Tensor:
    """The first-order update with x0 replaced by D0 + D1 / 2 (midpoint), D1 = (m_i - m_{i-1}) / r,
    r = h_{i-1} / h_i, each term weighted and summed in diffusers' order."""
    h, decay, data_weight, noise_weight = _sde_coefficients(plan, index)
    alpha_s1, sigma_s1 = alpha_sigma(plan, plan.sigma_levels[index - 1])
    alpha_s0, sigma_s0 = alpha_sigma(plan, plan.sigma_levels[index])
    r0 = (log_snr(alpha_s0, sigma_s0) - log_snr(alpha_s1, sigma_s1)) / h
    d1 = (1.0 / r0) * (denoised - previous_denoised)
    return (
        (decay * sample)
        .add_(data_weight * denoised)
        .add_((0.5 * data_weight) * d1)
        .add_(noise.mul_(noise_weight))
    )


def dpmpp_2m_sde_step(
    sample: torch.Tensor,
    model_output: torch.Tensor,
    plan: SamplingPlan,
    step_index: int,
    state: DPMSolverState | None,
    seed: Seed,
    lower_order_final: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, DPMSolverState]:
    """One DPM-Solver++(2M) SDE step; returns (prev_sample, denoised x0, new_state).

    State as for `dpmpp_2m_step` (None on the first step, then the state the previous step
    returned); the noise comes from `seed` (an int or a torch.Generator, see `math.noise`).
    """
    index = check_step_call(dpmpp_2m_sde_step, sample, model_output, plan, step_index)
    check_state(state, index, sample)
    denoised = predict_x0(sample, model_output, plan, index)
    sample = in_dtype(sample, torch.float32)
    noise = randn_like_diffusers(model_output.shape, seed, torch.float32, model_output.device)
    if state is None or last_step_is_first_order(plan, index, lower_order_final):
        prev_sample = _first_order_update(sample, denoised, noise, plan, index)
    else:
        prev_sample = _second_order_update(
            sample, denoised, state.previous_denoised, noise, plan, index
        )
    new_state = DPMSolverState(previous_denoised=denoised, step_index=index)
    return in_dtype(prev_sample, model_output.dtype), denoised, new_state


# --- the node -------------------------------------------------------------------------------------


class DPMSolverSDEInputs(DPMSolverInputs):
    seed: int = Input(0, ge=0, le=SEED_MAX)
    rng: Optional[RngSocket] = Input(None, tooltip="continue this random stream instead of seeding")  # noqa: UP045


class DPMSolverSDEOutputs(DPMSolverOutputs):
    rng: RngSocket


class DPMSolverSDEStep(StepNode):
    """DPM-Solver++(2M) SDE (Lu et al. 2022): the multistep DPM-Solver++ update of the reverse SDE,
    fresh noise every step. Its history travels as an explicit SOLVER_STATE, its noise from the
    seed or the random stream handed on, so a resumed run is exact."""

    class_type = "LG_DPMSolverSDEStep"
    category = CATEGORY
    In = DPMSolverSDEInputs
    Out = DPMSolverSDEOutputs
    step_function = staticmethod(dpmpp_2m_sde_step)

    def run(self, x: DPMSolverSDEInputs) -> tuple[Any, ...]:
        sample, output = checked_tensors(self, x)
        check_state_input(x)
        gen = generator(x.seed, x.rng)
        prev, denoised, state = dpmpp_2m_sde_step(
            sample, output, x.plan, x.step, x.state, gen, x.lower_order_final
        )
        report(self, x, denoised)
        values = step_outputs(x, prev, denoised)
        return values["sample"], values["denoised"], state, gen.get_state()
