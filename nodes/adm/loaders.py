"""Loaders of guided-diffusion checkpoints: the diffusion U-Net (as a DENOISER) and the noisy
classifier. Files are safetensors or pickles read weights-only (torch.load(weights_only=True):
a file carrying code is refused, never run), found by the shared model-path rules; their
configuration is read off the weights (``model/config.py``), but for what the weights do not
store: the attention heads, the attention order and the noise schedule."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, Literal

from ...executor.context import Folders
from ...executor.node import Input, InputError, Inputs, Node, Outputs
from ..common.files import CheckpointError, WeightFile, path_fingerprint, resolve_model_path
from ..core.provenance import record_models
from ..diffusion.math import ArgumentError, Schedule
from ..diffusion.sockets import DenoiserSocket
from .family import FAMILY
from .model import ConfigError, build
from .model.config import StateDict
from .models import ADMClassifier, ADMDenoiser
from .sockets import ClassifierSocket

CATEGORY = "latentgraph/adm/loaders"
SUFFIXES = (".safetensors", ".pt", ".pth")
NoiseSchedule = Literal["linear", "cosine"]


def adm_schedule(kind: str, steps: int) -> Schedule:
    """guided-diffusion's named schedules over `steps` training steps: 'linear' (Ho et al.'s
    range 1e-4..0.02, scaled by 1000 / steps) or 'cosine' (Nichol & Dhariwal 2021)."""
    if kind == "cosine":
        return Schedule("squaredcos_cap_v2", steps)
    scale = 1000 / steps
    return Schedule("linear", steps, 0.0001 * scale, 0.02 * scale)


class HeadInputs(Inputs):
    path: str = Input(tooltip="a guided-diffusion checkpoint in the models folder (.pt, .safetensors)")
    num_head_channels: int = Input(64, ge=0, le=4096, tooltip="channels per attention head (not stored in "
                                                              "the file); 0: use num_heads")
    num_heads: int = Input(4, ge=1, le=256, tooltip="heads per attention layer when num_head_channels is 0 "
                                                    "(the 128x128 models use 4)")
    new_attention_order: bool = Input(False, tooltip="guided-diffusion's use_new_attention_order")


class _Loader(Node):
    category = CATEGORY
    kind: str

    @classmethod
    def fingerprint(cls, inputs: dict[str, Any], folders: Folders) -> Hashable:
        return path_fingerprint(folders, inputs.get("path"))

    def read(self, name: str) -> StateDict:
        if not name.lower().endswith(SUFFIXES):
            raise InputError("path", f"'{name}' is not a checkpoint ({', '.join(SUFFIXES)})")
        try:
            path = resolve_model_path(self.ctx.folders, name)
            return WeightFile(path).tensors()
        except CheckpointError as err:
            raise InputError("path", str(err)) from None

    def network(self, x: HeadInputs) -> Any:
        try:
            return build(self.read(x.path), self.kind, num_head_channels=x.num_head_channels,
                         num_heads=x.num_heads, new_attention_order=x.new_attention_order,
                         dtype=FAMILY.compute_dtype(self.ctx.device), device=self.ctx.device,
                         source=f"'{x.path}'")
        except ConfigError as err:
            raise InputError("path", str(err)) from None


class LoadADM(_Loader):
    """Load a guided-diffusion diffusion U-Net (e.g. 256x256_diffusion_uncond.pt, or the
    class-conditional 64x64_diffusion.pt) as a DENOISER predicting eps, and with learned sigma
    its variance channels too."""

    class_type = "LG_LoadADM"
    kind = "unet"

    class In(HeadInputs):
        noise_schedule: NoiseSchedule = Input("linear", tooltip="its training schedule: the 64x64 model "
                                                                "uses cosine, the others linear")
        diffusion_steps: int = Input(1000, ge=2, le=100_000)

    class Out(Outputs):
        denoiser: DenoiserSocket

    def run(self, x: In) -> Out:
        try:
            schedule = adm_schedule(x.noise_schedule, x.diffusion_steps)
        except ArgumentError as err:
            raise InputError("diffusion_steps", str(err)) from None
        denoiser = ADMDenoiser(self.network(x), schedule)
        record_models(self, {"denoiser": denoiser.unet})
        return self.Out(denoiser=denoiser)


class LoadADMClassifier(_Loader):
    """Load a guided-diffusion noisy classifier (e.g. 64x64_classifier.pt): the U-Net's encoder
    half with an attention-pooled head, trained on noisy images at every timestep."""

    class_type = "LG_LoadADMClassifier"
    kind = "classifier"
    In = HeadInputs

    class Out(Outputs):
        classifier: ClassifierSocket

    def run(self, x: HeadInputs) -> Out:
        classifier = ADMClassifier(self.network(x))
        record_models(self, {"classifier": classifier.net})
        return self.Out(classifier=classifier)


NODES = [LoadADM, LoadADMClassifier]
