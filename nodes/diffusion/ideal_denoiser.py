"""The ideal denoiser of a finite dataset, and pixel-space latents: diffusion with no network.

For data that is a finite set of images {y_i}, the best possible x_0 estimate is the posterior
mean  E[x_0 | x_t] = sum_i w_i y_i  with  w = softmax(-|x_t - a y_i|^2 / (2 s^2)),  where
x_t = a x_0 + s noise  (Karras et al. 2022, section 2 and appendix B.3). Sampling with it
reproduces one of the images: it makes the schedules and solvers visible without training
anything, and it is an exact reference for tests.
"""

from __future__ import annotations

import torch

from ...executor.node import InputError, Inputs, Node, Outputs
from ...executor.pixels import image_to_pixels, pixels_to_image
from ...executor.types import Image, Latent
from .denoiser import Denoiser, TextEmbeds
from .math import Schedule
from .noise_nodes import samples_of
from .sockets import DenoiserSocket, ScheduleSocket

CATEGORY = "latentgraph/sampling/teaching"


class IdealDenoiser(Denoiser):
    """Posterior-mean denoiser for a dataset of pixel-space images (N, C, H, W) in [-1, 1]."""

    def __init__(self, data: torch.Tensor, schedule: Schedule, spacing: str = "leading", steps_offset: int = 1) -> None:
        self.data = data
        self.schedule = schedule
        self.spacing = spacing
        self.steps_offset = steps_offset
        if not schedule.is_flow:
            # Variance-exploding sigma per training timestep; fractional timesteps (Euler's
            # linspace plans) interpolate it linearly, as EulerDiscreteScheduler does.
            ab = schedule.alphas_cumprod_for_sigmas.double()
            self._sigmas = ((1 - ab) / ab).sqrt()

    def _signal_and_noise(self, timestep: torch.Tensor) -> tuple[float, float]:
        t = float(timestep)
        if self.schedule.is_flow:
            sigma = t / self.schedule.num_train_timesteps
            return 1.0 - sigma, sigma
        low = int(min(max(t, 0.0), len(self._sigmas) - 1))
        high = min(low + 1, len(self._sigmas) - 1)
        frac = t - low
        sigma = float(self._sigmas[low] * (1 - frac) + self._sigmas[high] * frac)
        alpha = (1.0 / (1.0 + sigma**2)) ** 0.5
        return alpha, sigma * alpha

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, context: TextEmbeds | None) -> torch.Tensor:
        a, s = self._signal_and_noise(timestep)
        s = max(s, 1e-4)  # t = 0: the posterior collapses onto the nearest image
        data = self.data.to(sample.device, sample.dtype)
        flat_x, flat_y = sample.flatten(1).double(), data.flatten(1).double()
        distance = torch.cdist(flat_x, a * flat_y) ** 2  # (B, N)
        weights = torch.softmax(-distance / (2 * s * s), dim=1)
        x0 = (weights @ flat_y).to(sample.dtype).view_as(sample)
        noise = (sample - a * x0) / s
        kind = self.schedule.prediction_type
        if kind == "epsilon":
            return noise
        if kind == "v_prediction":
            return a * noise - s * x0  # v = alpha eps - sigma x0 (Salimans & Ho 2022)
        return noise - x0  # rectified-flow velocity


class MakeIdealDenoiser(Node):
    """A denoiser that knows a set of images exactly: sampling with it returns one of them.
    For teaching graphs (DDPM vs DDIM, unrolled steps) and as a reference without a network."""

    class_type = "LG_IdealDenoiser"
    category = CATEGORY

    class In(Inputs):
        images: Image
        schedule: ScheduleSocket

    class Out(Outputs):
        denoiser: DenoiserSocket

    def run(self, x: In) -> Out:
        if x.images.ndim != 4 or x.images.shape[0] < 1:
            raise InputError("images", f"expected an IMAGE batch (B,H,W,C), got {tuple(x.images.shape)}")
        return self.Out(denoiser=IdealDenoiser(image_to_pixels(x.images).contiguous(), x.schedule))


class ImageToPixels(Node):
    """Use an image itself as the latent (pixel-space diffusion): (B,H,W,C) 0..1 -> (B,C,H,W) -1..1."""

    class_type = "LG_ImageToPixels"
    category = CATEGORY

    class In(Inputs):
        image: Image

    class Out(Outputs):
        latent: Latent

    def run(self, x: In) -> Out:
        return self.Out(latent={"samples": image_to_pixels(x.image).contiguous()})


class PixelsToImage(Node):
    """A pixel-space latent back to an image, clamped to 0..1."""

    class_type = "LG_PixelsToImage"
    category = CATEGORY

    class In(Inputs):
        latent: Latent

    class Out(Outputs):
        image: Image

    def run(self, x: In) -> Out:
        samples = samples_of(x.latent, "latent")
        if samples.ndim != 4 or samples.shape[1] not in (1, 3):
            raise InputError("latent", f"expected pixels (B,3,H,W), got {tuple(samples.shape)}")
        return self.Out(image=pixels_to_image(samples))


NODES = [MakeIdealDenoiser, ImageToPixels, PixelsToImage]
