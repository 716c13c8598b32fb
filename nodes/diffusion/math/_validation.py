"""Argument checks shared by the step functions; each error names the offending argument."""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import torch

from .plan import SamplingPlan


def checked_step_index(plan: SamplingPlan, step_index: int) -> int:
    """`step_index` as an int, or a ValueError if it is not a step of `plan`."""
    try:
        index = operator.index(step_index)
    except TypeError:
        raise ValueError(f"step_index must be an int, got {step_index!r}") from None
    if not 0 <= index < len(plan):
        raise ValueError(
            f"step_index {index} is out of range for a {len(plan)}-step plan "
            f"(valid: 0 to {len(plan) - 1})"
        )
    return index


def check_plan_solver(plan: SamplingPlan, step_function: Callable[..., Any]) -> None:
    """That `plan` is one `step_function` may advance: its solver's row lists the function."""
    if not isinstance(plan, SamplingPlan):
        raise ValueError(f"plan must be a SamplingPlan, got {type(plan).__name__}")
    if step_function not in plan.steppers:
        made_by = ", ".join(f.__name__ for f in plan.steppers) or "no step function"
        raise ValueError(
            f"plan was made for solver {plan.solver!r}, which {step_function.__name__} does not "
            f"step ({made_by} does)"
        )


def check_same_shape(
    name: str, tensor: torch.Tensor, reference_name: str, reference: torch.Tensor
) -> None:
    if tensor.shape != reference.shape:
        raise ValueError(
            f"{name} has shape {tuple(tensor.shape)} but {reference_name} has shape "
            f"{tuple(reference.shape)}; they must match"
        )


def check_step_call(
    step_function: Callable[..., Any],
    sample: torch.Tensor,
    model_output: torch.Tensor,
    plan: SamplingPlan,
    step_index: int,
) -> int:
    """Validate the arguments every step function shares; returns the step index as an int."""
    if (type(step_index) is int and type(plan) is SamplingPlan and step_function in plan.steppers
            and 0 <= step_index < plan.num_steps and sample.shape == model_output.shape):
        return step_index  # all is well: one test instead of the calls that name what is wrong
    check_plan_solver(plan, step_function)
    check_same_shape("model_output", model_output, "sample", sample)
    return checked_step_index(plan, step_index)


def in_dtype(tensor: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``tensor.to(dtype)`` without a dispatcher round trip when it is already that dtype (the
    common case: a step's casts to and from float32 are no-ops for float32 latents)."""
    return tensor if tensor.dtype == dtype else tensor.to(dtype)


def plus(tensor: torch.Tensor, temporary: torch.Tensor) -> torch.Tensor:
    """``tensor + temporary``, written into ``temporary`` (a buffer the caller made and drops)
    when dtype and shape allow. IEEE addition commutes, so the result is bitwise the same, and a
    step allocates one buffer fewer: inside the executor a fresh buffer costs more than the
    arithmetic that fills it."""
    if temporary.dtype == tensor.dtype and temporary.shape == tensor.shape:
        return temporary.add_(tensor)
    return tensor + temporary
