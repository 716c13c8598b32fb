"""Training-time sampling of rectified-flow timesteps, for teaching graphs of how SD3 and FLUX
are trained (Esser et al. 2024, sec. 3.1): draw u per sample from a density over [0, 1], pick
the training timestep at index floor(u * N) of the schedule's shifted grid, and make the noisy
input and the flow-matching target from it. Equal to diffusers' SD3 training scripts
(``compute_density_for_timestep_sampling``, then ``scheduler.timesteps[indices]`` and their
sigmas) with the same CPU generator."""

from __future__ import annotations

import math
from typing import Annotated, Literal, Optional

import torch

from ...executor.node import Input, InputError, Inputs, Node, Outputs
from ...executor.types import Latent, Socket
from .math import Schedule
from .noise_nodes import SEED_MAX, generator, samples_of
from .sockets import RngSocket, ScheduleSocket

Weighting = Literal["logit_normal", "mode", "uniform"]
# Per-sample timesteps in the units the network takes (sigma * num_train_timesteps).
TimestepsSocket = Annotated[torch.Tensor, Socket("TIMESTEPS")]


def timestep_density(weighting: str, batch: int, gen: torch.Generator, *, logit_mean: float,
                     logit_std: float, mode_scale: float) -> torch.Tensor:
    """u in [0, 1] per sample: sigmoid of a normal (logit-normal), SD3's mode density with heavy
    tails (``mode_scale``), or uniform."""
    if weighting == "logit_normal":
        return torch.sigmoid(torch.normal(logit_mean, logit_std, size=(batch,), generator=gen))
    u = torch.rand(batch, generator=gen)
    if weighting == "mode":
        return 1 - u - mode_scale * (torch.cos(math.pi * u / 2) ** 2 - 1 + u)
    return u


def training_sigmas(schedule: Schedule) -> torch.Tensor:
    """The flow schedule's training grid, highest first: t = N..1 over N, shifted (float32, as
    FlowMatchEulerDiscreteScheduler builds it)."""
    n = schedule.num_train_timesteps
    grid = torch.linspace(1, n, n, dtype=torch.float32).flip(0) / n
    return schedule.shift_sigmas(grid)


class FlowTrainingSample(Node):
    """One rectified-flow training example per latent: sigma drawn by the density, the noisy
    input (1 - sigma) x0 + sigma noise, the target noise - x0, and the timesteps to give the
    network. A teaching node: wire a denoiser after it to see what it is trained to predict."""

    class_type = "LG_FlowTrainingSample"
    category = "latentgraph/sampling/training"

    class In(Inputs):
        sample: Latent = Input(tooltip="clean latents x0")
        noise: Latent
        schedule: ScheduleSocket = Input(tooltip="a 'flow' schedule; its shift shifts the training grid")
        weighting: Weighting = Input("logit_normal", tooltip="density of u (SD3 trains with logit_normal 0, 1)")
        logit_mean: float = Input(0.0, ge=-10.0, le=10.0, step=0.01)
        logit_std: float = Input(1.0, ge=0.01, le=10.0, step=0.01)
        mode_scale: float = Input(1.29, ge=-1.0, le=2.0, step=0.01, tooltip="'mode' only")
        seed: int = Input(0, ge=0, le=SEED_MAX, control_after_generate=True)
        rng: Optional[RngSocket] = Input(None, tooltip="continue this random stream instead of seeding")  # noqa: UP045

    class Out(Outputs):
        noisy: Latent
        target: Latent
        timesteps: TimestepsSocket
        rng: RngSocket

    def run(self, x: In) -> Out:
        if not x.schedule.is_flow:
            raise InputError("schedule", f"expected a 'flow' schedule, got {x.schedule.beta_schedule!r}")
        x0, noise = samples_of(x.sample, "sample"), samples_of(x.noise, "noise")
        if x0.shape != noise.shape:
            raise InputError("noise", f"shape {tuple(noise.shape)} differs from the sample's {tuple(x0.shape)}")
        gen = generator(x.seed, x.rng)
        u = timestep_density(x.weighting, x0.shape[0], gen, logit_mean=x.logit_mean,
                             logit_std=x.logit_std, mode_scale=x.mode_scale)
        n = x.schedule.num_train_timesteps
        # 'mode' can leave [0, 1] for mode_scale outside its documented range: clamp the index.
        indices = (u * n).long().clamp(0, n - 1)
        sigmas = training_sigmas(x.schedule)[indices]
        sigma = sigmas.to(x0.device, x0.dtype).view(-1, *([1] * (x0.ndim - 1)))
        noise = noise.to(x0.device)
        return self.Out(
            noisy={**x.sample, "samples": (1.0 - sigma) * x0 + sigma * noise},
            target={"samples": noise - x0},
            timesteps=(sigmas * n).to(x0.device),
            rng=gen.get_state(),
        )


NODES = [FlowTrainingSample]
