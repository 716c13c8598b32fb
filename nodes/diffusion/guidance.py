"""The model call and classifier-free guidance, as two nodes (the call batches both branches)."""

from __future__ import annotations

from typing import Optional

from ...executor.node import Input, InputError, Inputs, Node, Outputs
from ...executor.types import Latent
from .math import ArgumentError, cfg_combine
from .noise_nodes import samples_of
from .sockets import DenoiserSocket, PlanSocket, TextEmbedsSocket

CATEGORY = "latentgraph/sampling"


class Denoise(Node):
    """Evaluate a denoiser at one step of a plan: the conditional and unconditional predictions
    from ONE batched forward ordered [uncond, cond], as diffusers' pipelines do. Without a
    negative prompt only the conditional branch runs and uncond repeats cond."""

    class_type = "LG_Denoise"
    category = CATEGORY

    class In(Inputs):
        denoiser: DenoiserSocket
        sample: Latent = Input(tooltip="the model input (after LG_ScaleModelInput for Euler solvers)")
        plan: PlanSocket
        step: int = Input(0, ge=0)
        positive: Optional[TextEmbedsSocket] = Input(None, tooltip="unconditional models take none")  # noqa: UP045
        negative: Optional[TextEmbedsSocket] = None  # noqa: UP045

    class Out(Outputs):
        cond: Latent
        uncond: Latent

    def run(self, x: In) -> Out:
        sample = samples_of(x.sample, "sample")
        if not 0 <= x.step < len(x.plan):
            raise InputError("step", f"step {x.step} is outside the plan's {len(x.plan)} steps")
        try:
            cond, uncond = x.denoiser.predict(
                sample, x.plan.timestep_on(x.step, sample.device), x.positive, x.negative
            )
        except ArgumentError as err:
            if err.argument not in ("positive", "negative", "sample"):
                raise
            raise InputError(err.argument, str(err)) from None
        return self.Out(cond={"samples": cond}, uncond={"samples": cond if uncond is None else uncond})


class CFGCombine(Node):
    """Classifier-free guidance (Ho & Salimans 2022): uncond + scale * (cond - uncond), in the
    pipelines' order of operations."""

    class_type = "LG_CFGCombine"
    category = CATEGORY

    class In(Inputs):
        uncond: Latent
        cond: Latent
        scale: float = Input(7.5, ge=0.0, le=100.0, step=0.1)

    class Out(Outputs):
        guided: Latent

    def run(self, x: In) -> Out:
        uncond, cond = samples_of(x.uncond, "uncond"), samples_of(x.cond, "cond")
        if uncond.shape != cond.shape:
            raise InputError("cond", f"shape {tuple(cond.shape)} differs from uncond's {tuple(uncond.shape)}")
        return self.Out(guided={"samples": cfg_combine(uncond, cond, x.scale)})


NODES = [Denoise, CFGCombine]
