"""ADM sampling as nodes: respaced plans, the model call, the classifier gradient and the guided
DDPM / DDIM steps (``diffusion.py`` holds their arithmetic; ``sampler.py`` chains them)."""

from __future__ import annotations

from typing import Any, Literal, Optional

import torch

from ...executor.node import Input, InputError, Inputs, Node, Outputs
from ...executor.types import Latent
from ..diffusion.math import ArgumentError, randn_like_diffusers
from ..diffusion.noise_nodes import SEED_MAX, generator, samples_of
from ..diffusion.preview import latent_preview
from ..diffusion.sockets import DenoiserSocket, PlanSocket, RngSocket
from ..var.checks import parse_ints
from . import diffusion
from .models import ADMClassifier, ADMDenoiser
from .sockets import ClassifierSocket

CATEGORY = "latentgraph/adm"
ADMSolver = Literal["ddpm", "ddim"]


def checked_denoiser(value: object, input_name: str = "denoiser") -> ADMDenoiser:
    if not isinstance(value, ADMDenoiser):
        raise InputError(input_name, f"expected an ADM denoiser (LG_LoadADM), got {type(value).__name__}")
    return value


def parse_labels(text: str, batch: int, num_classes: int, input_name: str, what: str) -> torch.Tensor:
    """'3' (for the whole batch) or one class id per image -> int64 [batch], each in range."""
    labels = parse_ints(text, input_name)
    if len(labels) not in (1, batch):
        raise InputError(input_name, f"{len(labels)} labels for a batch of {batch}: give one, or one per image")
    for label in labels:
        if not 0 <= label < num_classes:
            raise InputError(input_name, f"{label} is not a class of {what} (0..{num_classes - 1})")
    ids = torch.tensor(labels, dtype=torch.long)
    return ids.expand(batch).clone() if len(labels) == 1 else ids


def check_classifier_fits(classifier: ADMClassifier, channels: int, height: int, width: int,
                          input_name: str, what: str) -> None:
    """The classifier reads images of the sample's channels and, with an attention pool, only
    of the resolution it was built for."""
    config = classifier.config
    if config.in_channels != channels:
        raise InputError(input_name, f"the classifier reads {config.in_channels}-channel images, "
                                     f"{what} has {channels} channels")
    side = config.image_size
    if side is not None and (height, width) != (side, side):
        raise InputError(input_name, f"the classifier was trained at {side}x{side}, {what} is {width}x{height}")
    factor = config.downsample_factor
    if height % factor or width % factor:
        raise InputError(input_name, f"{what} ({width}x{height}) is not a multiple of the classifier's "
                                     f"downsampling factor {factor}")


def _check_step(plan: Any, step: int) -> int:
    if not 0 <= step < plan.num_steps:
        raise InputError("step", f"step {step} is outside the plan's {plan.num_steps} steps (0..{plan.num_steps - 1})")
    if plan.parameterization != "alpha_bar":
        raise InputError("plan", f"ADM steps take 'ddpm' or 'ddim' plans, not a {plan.solver!r} plan")
    return step


class ADMPlan(Node):
    """guided-diffusion's timestep respacing as a plan: '250' keeps 250 of the 1000 training
    timesteps evenly (by rounding), '10,20,30' takes 10, 20 and 30 from three equal sections,
    'ddim25' DDIM's even stride. The betas between kept timesteps are recomputed from alpha_bar,
    as SpacedDiffusion does."""

    class_type = "LG_ADMPlan"
    category = CATEGORY

    class In(Inputs):
        denoiser: DenoiserSocket
        respacing: str = Input("250", tooltip="'250', '10,20,30' (per section) or 'ddim25'")
        solver: ADMSolver = Input("ddpm")

    class Out(Outputs):
        plan: PlanSocket

    def run(self, x: In) -> Out:
        try:
            return self.Out(plan=diffusion.respaced_plan(x.denoiser.schedule, x.respacing, x.solver))
        except ArgumentError as err:
            raise InputError("respacing" if err.argument == "respacing" else "denoiser", str(err)) from None


class ADMEmptySample(Node):
    """Zeros of the ADM model's channels at width x height pixels: the shape a sampler starts
    from (ADM diffuses pixels, no autoencoder)."""

    class_type = "LG_ADMEmptySample"
    category = CATEGORY

    class In(Inputs):
        denoiser: DenoiserSocket
        width: int = Input(64, ge=8, le=4096, step=8)
        height: int = Input(64, ge=8, le=4096, step=8)
        batch: int = Input(1, ge=1, le=4096)

    class Out(Outputs):
        latent: Latent

    def run(self, x: In) -> Out:
        model = checked_denoiser(x.denoiser)
        factor = model.config.downsample_factor
        for name, size in (("width", x.width), ("height", x.height)):
            if size % factor:
                raise InputError(name, f"{size} is not a multiple of the U-Net's downsampling factor {factor}")
        try:
            self.ctx.limits.check_pixels(x.width, x.height, x.batch)
        except ValueError as err:
            raise InputError("batch" if x.batch > 1 else "width", str(err)) from None
        shape = (x.batch, model.channels, x.height, x.width)
        return self.Out(latent={"samples": torch.zeros(shape, device=self.ctx.device)})


class ADMDenoise(Node):
    """Evaluate the ADM U-Net at one step: all it predicts, eps and (with learned sigma) the
    variance channels, given class labels when it is class-conditional."""

    class_type = "LG_ADMDenoise"
    category = CATEGORY

    class In(Inputs):
        denoiser: DenoiserSocket
        sample: Latent
        plan: PlanSocket
        step: int = Input(0, ge=0)
        labels: str = Input("0", tooltip="class ids, one or one per image; read only by a class-conditional model")

    class Out(Outputs):
        model_output: Latent

    def run(self, x: In) -> Out:
        model = checked_denoiser(x.denoiser)
        sample = samples_of(x.sample, "sample")
        step = _check_step(x.plan, x.step)
        if sample.ndim != 4 or sample.shape[1] != model.channels:
            raise InputError("sample", f"expected (B, {model.channels}, H, W) pixels for this U-Net, "
                                       f"got {tuple(sample.shape)}")
        classes = model.config.num_classes
        labels = None if classes is None else parse_labels(x.labels, sample.shape[0], classes, "labels", "the U-Net")
        out = model.full(sample, x.plan.timestep_on(step, sample.device), labels)
        return self.Out(model_output={"samples": out})


class ClassifierGradient(Node):
    """s * grad_x log p_phi(y | x_t, t) of a noisy classifier, guided-diffusion's cond_fn: the
    log-softmax of the labels' logits, summed over the batch, differentiated with respect to
    x_t and scaled (Dhariwal & Nichol 2021, Algorithms 1 and 2)."""

    class_type = "LG_ClassifierGradient"
    category = CATEGORY

    class In(Inputs):
        classifier: ClassifierSocket
        sample: Latent = Input(tooltip="x_t")
        plan: PlanSocket
        step: int = Input(0, ge=0, tooltip="the plan's step: t is its timestep")
        labels: str = Input("0", tooltip="the class ids to guide towards: one, or one per image")
        scale: float = Input(1.0, ge=0.0, le=1000.0, step=0.1, tooltip="the guidance scale s")

    class Out(Outputs):
        gradient: Latent

    def run(self, x: In) -> Out:
        if not isinstance(x.classifier, ADMClassifier):
            raise InputError("classifier", f"expected an ADM_CLASSIFIER, got {type(x.classifier).__name__}")
        sample = samples_of(x.sample, "sample")
        if sample.ndim != 4:
            raise InputError("sample", f"expected (B, C, H, W) pixels, got {tuple(sample.shape)}")
        check_classifier_fits(x.classifier, sample.shape[1], sample.shape[2], sample.shape[3], "sample", "the sample")
        step = _check_step(x.plan, x.step)
        labels = parse_labels(x.labels, sample.shape[0], x.classifier.num_classes, "labels", "the classifier")
        device, dtype = x.classifier.placement
        timestep = x.plan.timestep_on(step, device)
        grad = diffusion.classifier_gradient(x.classifier.net, sample.to(device), timestep, labels.to(device),
                                             x.scale)
        return self.Out(gradient={"samples": grad.to(sample.device, sample.dtype)})


class _ADMStepInputs(Inputs):
    sample: Latent = Input(tooltip="x_t")
    model_output: Latent = Input(tooltip="LG_ADMDenoise's output: eps, or eps and the variance channels")
    plan: PlanSocket
    step: int = Input(0, ge=0)
    gradient: Optional[Latent] = Input(None, tooltip="LG_ClassifierGradient's s * grad log p(y|x_t); none: unguided")  # noqa: UP045
    clip_denoised: bool = Input(True, tooltip="clip the predicted x_0 to [-1, 1], as guided-diffusion samples")
    seed: int = Input(0, ge=0, le=SEED_MAX)
    rng: Optional[RngSocket] = Input(None, tooltip="continue this random stream instead of seeding")  # noqa: UP045


class _ADMStepOutputs(Outputs):
    sample: Latent
    denoised: Latent
    rng: RngSocket


class _ADMStep(Node):
    """Shared run(): checks, the noise draw, the update, progress."""

    category = CATEGORY
    In = _ADMStepInputs
    Out = _ADMStepOutputs

    def draws_noise(self, x: Any) -> bool:
        return x.step < x.plan.num_steps - 1

    def update(self, x: Any, sample: torch.Tensor, output: torch.Tensor, noise: torch.Tensor | None,
               gradient: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def run(self, x: Any) -> _ADMStepOutputs:
        sample, output = samples_of(x.sample, "sample"), samples_of(x.model_output, "model_output")
        _check_step(x.plan, x.step)
        if output.shape[0] != sample.shape[0] or output.shape[2:] != sample.shape[2:] or \
                output.shape[1] not in (sample.shape[1], 2 * sample.shape[1]):
            raise InputError("model_output", f"shape {tuple(output.shape)} fits no ADM output for the sample's "
                                             f"{tuple(sample.shape)} (eps, or eps and variance)")
        gradient = None if x.gradient is None else samples_of(x.gradient, "gradient")
        if gradient is not None and gradient.shape != sample.shape:
            raise InputError("gradient", f"shape {tuple(gradient.shape)} differs from the sample's {tuple(sample.shape)}")
        gen = generator(x.seed, x.rng)
        noise = (randn_like_diffusers(sample.shape, gen, dtype=sample.dtype, device=sample.device)
                 if self.draws_noise(x) else None)
        prev, denoised = self.update(x, sample, output, noise, gradient)
        self.ctx.progress(x.step + 1, x.plan.num_steps, preview=lambda: latent_preview(denoised))
        return _ADMStepOutputs(sample={**x.sample, "samples": prev}, denoised={"samples": denoised},
                               rng=gen.get_state())


class ADMDDPMStep(_ADMStep):
    """guided-diffusion's p_sample: x_{t-1} ~ N(mu + Sigma * gradient, Sigma) (Algorithm 1 of
    Dhariwal & Nichol 2021; unguided without a gradient), Sigma learned (the model's variance
    channels interpolating log beta_t and log beta_tilde_t) or beta_tilde_t."""

    class_type = "LG_ADMDDPMStep"

    def update(self, x, sample, output, noise, gradient):
        return diffusion.ddpm_step(sample, output, x.plan, x.step, noise, gradient, x.clip_denoised)


class _DDIMInputs(_ADMStepInputs):
    eta: float = Input(0.0, ge=0.0, le=1.0, step=0.01, tooltip="0: deterministic DDIM")


class ADMDDIMStep(_ADMStep):
    """guided-diffusion's ddim_sample with classifier guidance as Algorithm 2 of Dhariwal &
    Nichol 2021: eps_hat = eps - sqrt(1 - alpha_bar_t) * gradient, then DDIM's update."""

    class_type = "LG_ADMDDIMStep"
    In = _DDIMInputs

    def draws_noise(self, x: Any) -> bool:
        return x.eta > 0 and super().draws_noise(x)

    def update(self, x, sample, output, noise, gradient):
        return diffusion.ddim_step(sample, output, x.plan, x.step, x.eta, noise, gradient, x.clip_denoised)


NODES = [ADMPlan, ADMEmptySample, ADMDenoise, ClassifierGradient, ADMDDPMStep, ADMDDIMStep]
