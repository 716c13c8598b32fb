"""LG_ADMSampler: guided-diffusion's classifier_sample.py as one node that expands into steps.

It expands into  plan, empty sample, noise -> (U-Net call -> classifier gradient -> guided
DDPM or DDIM step) x N,  every step an ordinary cached node, the random stream threaded from
step to step as LG_Sampler threads it. Without a classifier (or at scale 0) the gradient nodes
are left out and the steps are unguided.
"""

from __future__ import annotations

from typing import Any, Optional

from ...executor.graph_builder import GraphBuilder
from ...executor.node import Expand, Input, InputError, Inputs, Node, Outputs, ParentInput
from ...executor.types import Latent
from ..diffusion.math import ArgumentError
from ..diffusion.noise_nodes import SEED_MAX
from ..diffusion.sockets import DenoiserSocket
from . import diffusion
from .nodes import CATEGORY, ADMSolver, check_classifier_fits, checked_denoiser, parse_labels
from .sockets import ClassifierSocket


class ADMSampler(Node):
    """Sample an ADM model, guided by a noisy classifier towards `labels` with scale s
    (Dhariwal & Nichol 2021: Algorithm 1 with DDPM, Algorithm 2 with DDIM), on a respaced plan
    ('250', 'ddim25', ...). Expands into visible, cached step nodes."""

    class_type = "LG_ADMSampler"
    category = CATEGORY

    class In(Inputs):
        denoiser: DenoiserSocket
        classifier: Optional[ClassifierSocket] = Input(None, tooltip="without it, sampling is unguided")  # noqa: UP045
        labels: str = Input("0", tooltip="class ids: one for the batch, or one per image")
        scale: float = Input(1.0, ge=0.0, le=1000.0, step=0.1, tooltip="classifier scale s; 0 turns guidance off")
        width: int = Input(64, ge=8, le=4096, step=8)
        height: int = Input(64, ge=8, le=4096, step=8)
        batch: int = Input(1, ge=1, le=4096)
        seed: int = Input(0, ge=0, le=SEED_MAX, control_after_generate=True)
        respacing: str = Input("250", tooltip="guided-diffusion's timestep_respacing: '250', '10,20,30' or 'ddim25'")
        solver: ADMSolver = Input("ddpm")
        eta: float = Input(0.0, ge=0.0, le=1.0, step=0.01, tooltip="ddim only: 0 is deterministic")
        clip_denoised: bool = Input(True, tooltip="clip the predicted x_0 to [-1, 1] at every step")

    class Out(Outputs):
        latent: Latent

    def run(self, x: In) -> Expand:
        model = checked_denoiser(x.denoiser)
        try:
            steps = len(diffusion.space_timesteps(model.schedule.num_train_timesteps, x.respacing))
        except ArgumentError as err:
            raise InputError("respacing", str(err)) from None
        guided = x.classifier is not None and x.scale > 0
        if guided:
            check_classifier_fits(x.classifier, model.channels, x.height, x.width, "classifier",
                                  f"the {x.width}x{x.height} sample")
            parse_labels(x.labels, x.batch, x.classifier.num_classes, "labels", "the classifier")
        if model.config.num_classes is not None:
            parse_labels(x.labels, x.batch, model.config.num_classes, "labels", "the U-Net")
        return Expand(*sampling_graph(steps, guided, x.solver))


def sampling_graph(steps: int, guided: bool, solver: str) -> tuple[dict[str, dict[str, Any]], tuple[tuple[str, int], ...]]:
    """The expansion: its shape depends on the step count, guidance and the solver only."""
    g = GraphBuilder()
    P = ParentInput  # noqa: N806 - reads as "the sampler's own input"
    plan = g.node("LG_ADMPlan", id="plan", denoiser=P("denoiser"), respacing=P("respacing"), solver=P("solver"))
    empty = g.node("LG_ADMEmptySample", id="empty", denoiser=P("denoiser"), width=P("width"),
                   height=P("height"), batch=P("batch"))
    noise = g.node("LG_Noise", id="noise", like=empty, seed=P("seed"))
    start = g.node("LG_InitialNoise", id="start", noise=noise, plan=plan)
    sample, rng, last = start.out(), noise.out(1), start
    step_node = "LG_ADMDDPMStep" if solver == "ddpm" else "LG_ADMDDIMStep"
    for i in range(steps):
        model = g.node("LG_ADMDenoise", id=f"model{i}", denoiser=P("denoiser"), sample=sample, plan=plan,
                       step=i, labels=P("labels"))
        inputs: dict[str, Any] = {"sample": sample, "model_output": model.out(), "plan": plan, "step": i,
                                  "clip_denoised": P("clip_denoised"), "seed": P("seed"), "rng": rng}
        if guided:
            inputs["gradient"] = g.node("LG_ClassifierGradient", id=f"grad{i}", classifier=P("classifier"),
                                        sample=sample, plan=plan, step=i, labels=P("labels"),
                                        scale=P("scale")).out()
        if solver == "ddim":
            inputs["eta"] = P("eta")
        last = g.node(step_node, id=f"step{i}", **inputs)
        sample, rng = last.out(0), last.out(2)
    return g.build(), ((last.id, 0),)


NODES = [ADMSampler]
