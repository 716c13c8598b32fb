"""SD3.5's skip-layer guidance, as StableDiffusion3Pipeline does it (skip_guidance_layers, after
the Spatiotemporal Skip Guidance idea of Hyung et al. 2024): at the guided steps i with
N * start < i < N * stop, the conditional prediction is also computed with some transformer
blocks skipped, and the CFG output moves away from it:
    guided + (cond - cond_skipping_layers) * scale.

LG_SkipLayerGuidance makes the setting (a STEP_GUIDANCE for LG_Sampler's ``guidance`` input);
LG_SkipLayerGuidanceStep adds the term at one step of a plan (what the sampler expands into)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from ...executor.node import Input, InputError, Inputs, Node, Outputs
from ...executor.types import Latent
from ..diffusion.math import ArgumentError
from ..diffusion.noise_nodes import samples_of
from ..diffusion.sampler import StepGuidanceSocket
from ..diffusion.sockets import DenoiserSocket, PlanSocket, TextEmbedsSocket

CATEGORY = "latentgraph/sampling/guidance"


@dataclass(frozen=True)
class SkipLayerGuidanceSetting:
    layers: tuple[int, ...]
    scale: float
    start: float
    stop: float
    step_node: str = "LG_SkipLayerGuidanceStep"

    def applies(self, step: int, steps: int) -> bool:
        """The pipeline's test, in its own arithmetic (i > N * start and i < N * stop)."""
        return step > steps * self.start and step < steps * self.stop


def parse_layers(text: str) -> tuple[int, ...]:
    try:
        layers = tuple(int(part) for part in text.replace(" ", "").split(",") if part)
    except ValueError:
        raise InputError("layers", f"expected comma-separated block indices such as '7,8,9', got {text!r}") from None
    if not layers or any(i < 0 for i in layers):
        raise InputError("layers", f"expected one or more block indices >= 0 such as '7,8,9', got {text!r}")
    return layers


class SkipLayerGuidance(Node):
    """SD3.5's skip-layer guidance for LG_Sampler: which MM-DiT blocks the comparison prediction
    skips (SD3.5-medium's default 7, 8, 9), its scale and the fraction of the steps it is on
    (StableDiffusion3Pipeline's skip_guidance_layers, skip_layer_guidance_scale/start/stop)."""

    class_type = "LG_SkipLayerGuidance"
    category = CATEGORY

    class In(Inputs):
        layers: str = Input("7,8,9", tooltip="transformer blocks to skip, comma-separated")
        scale: float = Input(2.8, ge=0.0, le=100.0, step=0.1)
        start: float = Input(0.01, ge=0.0, le=1.0, step=0.01, tooltip="on after this fraction of the steps")
        stop: float = Input(0.2, ge=0.0, le=1.0, step=0.01, tooltip="off from this fraction of the steps")

    class Out(Outputs):
        guidance: StepGuidanceSocket

    def run(self, x: In) -> Out:
        if x.stop < x.start:
            raise InputError("stop", f"stop {x.stop} is before start {x.start}")
        return self.Out(guidance=SkipLayerGuidanceSetting(parse_layers(x.layers), x.scale, x.start, x.stop))


class SkipLayerGuidanceStep(Node):
    """Add skip-layer guidance to one step's CFG output: inside the setting's window, one more
    forward of the conditional branch with the layers skipped; outside, the CFG output as it is."""

    class_type = "LG_SkipLayerGuidanceStep"
    category = CATEGORY

    class In(Inputs):
        guidance: StepGuidanceSocket
        denoiser: DenoiserSocket
        sample: Latent
        plan: PlanSocket
        step: int = Input(0, ge=0)
        positive: Optional[TextEmbedsSocket] = None  # noqa: UP045
        guided: Latent = Input(tooltip="the CFG output of this step")
        cond: Latent = Input(tooltip="the conditional prediction of this step")

    class Out(Outputs):
        guided: Latent

    def run(self, x: In) -> Out:
        setting = x.guidance
        if not isinstance(setting, SkipLayerGuidanceSetting):
            raise InputError("guidance", f"expected an LG_SkipLayerGuidance setting, got {type(setting).__name__}")
        guided, cond = samples_of(x.guided, "guided"), samples_of(x.cond, "cond")
        if not setting.applies(x.step, len(x.plan)):
            return self.Out(guided=x.guided)
        if not hasattr(x.denoiser, "forward_skipping"):
            raise InputError("denoiser", f"{type(x.denoiser).__name__} cannot skip layers (SD3 / SD3.5 MM-DiTs can)")
        if x.positive is None:
            raise InputError("positive", "skip-layer guidance compares with the conditional branch: connect a prompt")
        sample = samples_of(x.sample, "sample")
        try:
            skipping = x.denoiser.forward_skipping(
                sample, x.plan.timestep_on(x.step, sample.device), x.positive.repeat_to(sample.shape[0]), setting.layers
            )
        except ArgumentError as err:
            raise InputError("guidance" if err.argument == "layers" else err.argument, str(err)) from None
        return self.Out(guided={"samples": guided + (cond - skipping.to(cond.dtype)) * setting.scale})


NODES: list[Any] = [SkipLayerGuidance, SkipLayerGuidanceStep]
