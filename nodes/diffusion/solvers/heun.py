"""Heun's method: an Euler predictor and a trapezoidal corrector per step, two model calls.

Karras et al. 2022 (EDM), Algorithm 1 without churn (gamma = 0): from x_i at sigma_i,

    d_i       = (x_i - D(x_i; sigma_i)) / sigma_i                       (line 5)
    x~        = x_i + (sigma_{i+1} - sigma_i) d_i                       (line 6, the predictor)
    d'_i      = (x~ - D(x~; sigma_{i+1})) / sigma_{i+1}                 (line 7)
    x_{i+1}   = x_i + (sigma_{i+1} - sigma_i) (d_i + d'_i) / 2          (line 8, the corrector)

and the last step, down to sigma = 0, is the Euler predictor alone (line 9's "if sigma_{i+1} != 0").
Samples are variance exploding as in the Euler family (the model sees x / sqrt(sigma^2 + 1)), and
the plan is Euler's: diffusers' HeunDiscreteScheduler lists every level but the first twice so that
its scheduler can count model calls; here each plan step makes both calls and its second
evaluation is at the plan level the predictor moved to, step i + 1's timestep and sigma.

The predictor and the corrector are two pure nodes: the predictor hands its x_i and d_i to the
corrector as an explicit HEUN_STAGE (diffusers keeps them on the scheduler as `sample`,
`prev_derivative` and `dt`), and between them a graph evaluates the model at the predictor's sample
with LG_ScaleModelInput / LG_Denoise at step + 1. The arithmetic mirrors HeunDiscreteScheduler.step
(epsilon and v prediction, no sample clipping) operation by operation, so results are bitwise
equal; like it, the update runs in the sample's own dtype.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import torch

from ....executor.node import Input, InputError, Outputs
from ....executor.types import Latent, Socket
from ..math import SamplingPlan
from ..math._validation import check_same_shape, check_step_call, plus
from ..math.euler import denoise_ve
from ..step_nodes import (
    CATEGORY,
    StepInputs,
    StepNode,
    StepOutputs,
    checked_tensors,
    report,
    step_outputs,
)

# --- the math -------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class HeunStage:
    """What the corrector of step `step_index` needs from its predictor: x_i and d_i (lines 5-6).
    Treat the tensors as read-only."""

    sample: torch.Tensor
    derivative: torch.Tensor
    step_index: int


def heun_step(
    sample: torch.Tensor, model_output: torch.Tensor, plan: SamplingPlan, step_index: int
) -> tuple[torch.Tensor, torch.Tensor, HeunStage]:
    """The Euler predictor of step `step_index`; returns (x~, denoised x0, stage).

    x~ sits at sigma_{i+1}. On the plan's last step it is the result (the step to sigma = 0 is
    first order); on every other step pass it, the model output there and `stage` to
    `heun_correction`.
    """
    index = check_step_call(heun_step, sample, model_output, plan, step_index)
    sigma = plan.sigma_levels[index]  # sigma_hat = sigma * (gamma + 1) = sigma: no churn
    denoised = denoise_ve(sample, model_output, sigma, plan.schedule.prediction_type)
    derivative = (sample - denoised).div_(sigma)
    predicted = plus(sample, derivative * plan.sigma_deltas[index])
    return predicted, denoised, HeunStage(sample=sample, derivative=derivative, step_index=index)


def heun_correction(
    sample: torch.Tensor,
    model_output: torch.Tensor,
    plan: SamplingPlan,
    step_index: int,
    stage: HeunStage,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The trapezoidal corrector of step `step_index`; returns (x_{i+1}, denoised x0 at x~).

    `sample` is the predictor's x~ and `model_output` the model's output for it at step
    `step_index + 1`'s timestep; `stage` is what the predictor returned.
    """
    index = check_step_call(heun_correction, sample, model_output, plan, step_index)
    check_stage(stage, index, sample)
    if index + 1 >= len(plan):
        raise ValueError(
            f"step_index {index} is the plan's last step, which Heun takes first order (down to "
            f"sigma = 0 there is no second evaluation): its predictor's sample is the result"
        )
    sigma_next = plan.sigma_levels[index + 1]
    denoised = denoise_ve(sample, model_output, sigma_next, plan.schedule.prediction_type)
    derivative = (sample - denoised).div_(sigma_next)
    average = derivative.add_(stage.derivative).div_(2)  # (d_i + d'_i) / 2
    return plus(stage.sample, average.mul_(plan.sigma_deltas[index])), denoised


def check_stage(stage: HeunStage, index: int, sample: torch.Tensor) -> None:
    """That `stage` is what the predictor of step `index` returned for a sample of this shape."""
    if not isinstance(stage, HeunStage):
        raise ValueError(f"stage must be a HeunStage, got {type(stage).__name__}")
    if stage.step_index != index:
        raise ValueError(
            f"stage comes from the predictor of step {stage.step_index}, but step_index is {index}"
        )
    check_same_shape("stage.sample", stage.sample, "sample", sample)


# --- the nodes ------------------------------------------------------------------------------------

HeunStageSocket = Annotated[HeunStage, Socket("HEUN_STAGE")]


class HeunPredictorOutputs(StepOutputs):
    stage: HeunStageSocket


class HeunStep(StepNode):
    """Heun's method, first half (Karras et al. 2022, alg. 1 lines 5-6): the Euler predictor to the
    next level. Evaluate the model at its sample with step + 1 and finish the step with
    LG_HeunCorrection; on the plan's last step its sample is already the result."""

    class_type = "LG_HeunStep"
    category = CATEGORY
    In = StepInputs
    Out = HeunPredictorOutputs
    step_function = staticmethod(heun_step)

    def run(self, x: StepInputs) -> tuple[Any, Any, HeunStage]:
        sample, output = checked_tensors(self, x)
        predicted, denoised, stage = heun_step(sample, output, x.plan, x.step)
        report(self, x, denoised)
        values = step_outputs(x, predicted, denoised)
        return values["sample"], values["denoised"], stage


class HeunCorrectionInputs(StepInputs):
    sample: Latent = Input(tooltip="the predictor's sample (LG_HeunStep of the same step)")
    model_output: Latent = Input(tooltip="the (guided) model output at that sample, for step + 1")
    stage: HeunStageSocket = Input(tooltip="LG_HeunStep's stage output of the same step")


class HeunCorrection(StepNode):
    """Heun's method, second half (Karras et al. 2022, alg. 1 lines 7-8): the trapezoidal
    corrector, from the model output at the predictor's sample evaluated at step + 1."""

    class_type = "LG_HeunCorrection"
    category = CATEGORY
    In = HeunCorrectionInputs
    Out = StepOutputs
    step_function = staticmethod(heun_correction)

    def run(self, x: HeunCorrectionInputs) -> Outputs:
        sample, output = checked_tensors(self, x)
        if x.stage.step_index != x.step:
            raise InputError(
                "stage",
                f"the stage comes from the predictor of step {x.stage.step_index}, "
                f"not step {x.step}",
            )
        if x.step + 1 >= len(x.plan):
            raise InputError(
                "step",
                f"step {x.step} is the plan's last: Heun takes it first order, so "
                f"LG_HeunStep's sample is the result",
            )
        if x.stage.sample.shape != sample.shape:
            raise InputError(
                "stage",
                f"its sample has shape {tuple(x.stage.sample.shape)}, not the "
                f"sample's {tuple(sample.shape)}",
            )
        prev, denoised = heun_correction(sample, output, x.plan, x.step, x.stage)
        report(self, x, denoised)
        return StepOutputs(**step_outputs(x, prev, denoised))
