"""Noise: seeded draws identical on every device, the forward process q(x_t | x_0)."""

from __future__ import annotations

from typing import Optional

import torch

from ...executor.node import Input, InputError, Inputs, Node, Outputs
from ...executor.types import Latent
from .math import add_noise, randn_like_diffusers
from .sockets import PlanSocket, RngSocket

CATEGORY = "latentgraph/sampling/noise"
SEED_MAX = 2**64 - 1


def generator(seed: int, state: torch.Tensor | None) -> torch.Generator:
    """A CPU generator continuing ``state`` when given, else freshly seeded."""
    gen = torch.Generator("cpu")
    if state is not None:
        gen.set_state(state)
    else:
        gen.manual_seed(seed)
    return gen


def samples_of(latent: dict, name: str) -> torch.Tensor:
    samples = latent.get("samples") if isinstance(latent, dict) else None
    if not isinstance(samples, torch.Tensor):
        raise InputError(name, "expected a LATENT: a dict with a 'samples' tensor")
    return samples


class Noise(Node):
    """Gaussian noise shaped like a latent, drawn as diffusers' randn_tensor does with a CPU
    generator and then moved to the device, so a seed gives the same image everywhere."""

    class_type = "LG_Noise"
    category = CATEGORY

    class In(Inputs):
        like: Latent
        seed: int = Input(0, ge=0, le=SEED_MAX, control_after_generate=True)
        rng: Optional[RngSocket] = Input(None, tooltip="continue this random stream instead of seeding")  # noqa: UP045

    class Out(Outputs):
        noise: Latent
        rng: RngSocket

    def run(self, x: In) -> Out:
        like = samples_of(x.like, "like")
        gen = generator(x.seed, x.rng)
        noise = randn_like_diffusers(like.shape, gen, dtype=like.dtype, device=like.device)
        return self.Out(noise={"samples": noise}, rng=gen.get_state())


class AddNoise(Node):
    """The forward process at step `step` of a plan: sqrt(ab) x0 + sqrt(1-ab) noise (DDPM eq. 4),
    x0 + sigma noise (Euler family), (1 - sigma) x0 + sigma noise (rectified flow)."""

    class_type = "LG_AddNoise"
    category = CATEGORY

    class In(Inputs):
        sample: Latent
        noise: Latent
        plan: PlanSocket
        step: int = Input(0, ge=0)

    class Out(Outputs):
        sample: Latent

    def run(self, x: In) -> Out:
        x0, noise = samples_of(x.sample, "sample"), samples_of(x.noise, "noise")
        if x0.shape != noise.shape:
            raise InputError("noise", f"shape {tuple(noise.shape)} differs from the sample's {tuple(x0.shape)}")
        if not 0 <= x.step < len(x.plan):
            raise InputError("step", f"step {x.step} is outside the plan's {len(x.plan)} steps")
        return self.Out(sample={**x.sample, "samples": add_noise(x0, noise.to(x0.device), x.plan, x.step)})


class InitialNoise(Node):
    """Start of a text-to-image run: noise x init_noise_sigma, exactly as the pipelines start."""

    class_type = "LG_InitialNoise"
    category = CATEGORY

    class In(Inputs):
        noise: Latent
        plan: PlanSocket

    class Out(Outputs):
        sample: Latent

    def run(self, x: In) -> Out:
        return self.Out(sample={"samples": samples_of(x.noise, "noise") * x.plan.init_noise_sigma})


NODES = [Noise, AddNoise, InitialNoise]
