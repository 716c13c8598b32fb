"""What goes into the denoiser and how guided outputs are combined."""

from __future__ import annotations

import torch

from ._validation import check_same_shape, checked_step_index
from .plan import SamplingPlan


def scale_model_input(sample: torch.Tensor, plan: SamplingPlan, step_index: int) -> torch.Tensor:
    """The tensor to feed the model at step `step_index`.

    Plans in the "ve" parameterization (the Euler family, Heun) hold x in the variance-exploding
    form x0 + sigma * eps, while the network was trained on unit-variance inputs, so they divide
    by sqrt(sigma^2 + 1) (Karras et al. 2022, c_in of Table 1). Every other plan feeds the sample
    unchanged.
    """
    index = checked_step_index(plan, step_index)
    if plan.parameterization != "ve":
        return sample
    sigma = plan.sigmas[index]
    return sample / ((sigma**2 + 1) ** 0.5)


def cfg_combine(uncond: torch.Tensor, cond: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance (Ho & Salimans 2022): uncond + scale * (cond - uncond).

    Evaluated in exactly the order diffusers' SD and SANA pipelines use, so it is bitwise equal.
    """
    check_same_shape("cond", cond, "uncond", uncond)
    return uncond + scale * (cond - uncond)
