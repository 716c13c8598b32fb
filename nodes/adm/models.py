"""The ADM U-Net as a DENOISER and the noisy classifier, as graph objects."""

from __future__ import annotations

import torch

from ..common.models import HoldsModules
from ..diffusion.denoiser import Denoiser, TextEmbeds
from ..diffusion.math import ArgumentError, Schedule
from .model import EncoderUNetModel, UNetModel


class ADMDenoiser(Denoiser, HoldsModules):
    """A guided-diffusion U-Net. As a DENOISER (``forward``) it gives eps alone, so LG_Sampler's
    solvers can drive an unconditional model; ``full`` gives everything it predicts (eps and,
    with learned sigma, the variance channels) for the ADM steps, with class labels when it is
    class-conditional."""

    _modules = ("unet",)
    # guided-diffusion's usual respacings ('250', '50') keep the rounded linspace of timesteps
    spacing = "linspace"
    steps_offset = 0

    def __init__(self, unet: UNetModel, schedule: Schedule) -> None:
        self.unet = unet
        self.schedule = schedule

    @property
    def config(self):  # noqa: ANN201 - the ADMConfig
        return self.unet.config

    @property
    def channels(self) -> int:
        return self.unet.config.in_channels

    def full(self, sample: torch.Tensor, timestep: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        device, dtype = self.placement
        with torch.no_grad():
            out = self.unet(sample.to(device, dtype), timestep.to(device).expand(sample.shape[0]),
                            None if labels is None else labels.to(device))
        return out.to(sample.dtype)

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, context: TextEmbeds | None) -> torch.Tensor:
        if self.unet.config.num_classes is not None:
            raise ArgumentError("positive", "this ADM model is class-conditional: sample it with "
                                            "LG_ADMSampler, which takes class labels")
        return self.full(sample, timestep, None)[:, : self.channels]


class ADMClassifier(HoldsModules):
    """A noisy classifier p_phi(y | x_t, t) of guided-diffusion's layout."""

    is_model = True
    _modules = ("net",)

    def __init__(self, net: EncoderUNetModel) -> None:
        self.net = net

    @property
    def config(self):  # noqa: ANN201 - the ADMConfig
        return self.net.config

    @property
    def num_classes(self) -> int:
        return self.net.config.out_channels
