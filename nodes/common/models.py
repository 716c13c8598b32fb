"""What the model-family loaders share: building a network without wasting time on random init,
strict weight loading, and the TEXT_ENCODER / AUTOENCODER interfaces. (The device/dtype policy is
``families.compute_dtype``, with each family's half dtype in its Family record.)"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch
from torch import nn

from ..diffusion.denoiser import TextEmbeds
from .files import CheckpointError, StateDict

ModuleT = TypeVar("ModuleT", bound=nn.Module)


def build_empty(factory: Callable[[], ModuleT]) -> ModuleT:
    """``factory()`` with torch's and transformers' weight initialisers switched off: every
    parameter is overwritten by the checkpoint, and initialising a billion parameters at random
    first costs seconds. (transformers' context patches ``torch.nn.init`` for both libraries.)"""
    try:
        from transformers.initialization import no_init_weights
    except ImportError:  # transformers 4.x, e.g. pinned by something else in a ComfyUI environment
        from importlib.metadata import version

        raise RuntimeError(
            f"latentgraph needs transformers 5 or newer, this environment has {version('transformers')}: "
            "pip install 'transformers>=5'"
        ) from None

    with no_init_weights():
        return factory()


def load_strict(model: nn.Module, state_dict: StateDict, source: str) -> None:
    """Load every parameter and persistent buffer, refusing missing, unexpected or misshapen keys
    (a checkpoint of another model must fail loudly, never load half-way)."""
    expected = model.state_dict()
    state_dict = align_prefix(state_dict, set(expected))
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})")
        raise CheckpointError(
            f"{source}: the weights do not fit {type(model).__name__}: {'; '.join(parts)}"
        )
    bad = [k for k, v in state_dict.items() if v.shape != expected[k].shape]
    if bad:
        k = bad[0]
        raise CheckpointError(
            f"{source}: {len(bad)} tensor(s) of the wrong shape, e.g. {k}: "
            f"{tuple(state_dict[k].shape)} where {tuple(expected[k].shape)} is needed"
        )
    model.load_state_dict(state_dict, strict=True)


def align_prefix(state_dict: StateDict, expected: set[str]) -> StateDict:
    """Checkpoint keys with the wrapper prefix the model's own keys have or lack. transformers 5
    dropped ``text_model.`` from CLIPTextModel's parameters that every CLIP checkpoint still
    carries, and a causal-LM checkpoint keeps its base model under ``model.``."""
    if set(state_dict) & expected or not state_dict or not expected:
        return state_dict
    theirs = {k.split(".", 1)[0] for k in state_dict}
    ours = {k.split(".", 1)[0] for k in expected}
    if len(theirs) == 1:
        prefix = next(iter(theirs)) + "."
        stripped = {k[len(prefix) :]: v for k, v in state_dict.items()}
        if set(stripped) & expected:
            return stripped
    if len(ours) == 1:
        prefix = next(iter(ours)) + "."
        return {prefix + k: v for k, v in state_dict.items()}
    return state_dict


def ready(model: ModuleT, device: torch.device, dtype: torch.dtype) -> ModuleT:
    """Inference mode on the target device: eval, no gradients."""
    current = next(model.parameters()).dtype
    if current != dtype:  # (diffusers warns on every dtype cast, even a no-op one)
        model = model.to(dtype=dtype)
    return model.to(device=device).eval().requires_grad_(False)


class HoldsModules:
    """A graph object wrapping torch modules. The executor's model tier calls ``to(device)`` to
    offload it to the CPU under memory pressure and to bring it back."""

    _modules: tuple[str, ...] = ()
    _placed: tuple[torch.device, torch.dtype] | None = None
    #: How often the weights moved: whatever recorded their addresses (a CUDA graph) is stale
    #: once this changes.
    moves: int = 0

    def to(self, device: torch.device | str) -> HoldsModules:
        for name in self._modules:
            getattr(self, name).to(device)
        self._placed = None
        self.moves += 1
        return self

    @property
    def placement(self) -> tuple[torch.device, torch.dtype]:
        """(device, dtype) of the main module, remembered: diffusers' ``.device``/``.dtype`` walk
        every submodule, which costs several percent of a small model's step."""
        if self._placed is None:
            first = next(getattr(self, self._modules[0]).parameters())
            self._placed = (first.device, first.dtype)
        return self._placed


class TextEncoder(HoldsModules):
    """A tokenizer plus text model that turns prompts into TEXT_EMBEDS, the way the family's
    reference pipeline does it. Lives in the executor's model tier."""

    is_model = True
    family: str = ""

    def encode(self, texts: list[str], instruction: bool = True) -> TextEmbeds:
        raise NotImplementedError


class Autoencoder(HoldsModules):
    """Pixels <-> latents for one family (SD-VAE or DC-AE). ``encode`` returns latents already
    multiplied by ``scaling_factor``; ``decode`` takes such latents. Pixels are (B,3,H,W) in
    [-1, 1]. Lives in the executor's model tier."""

    is_model = True
    kind: str = ""
    latent_channels: int
    scaling_factor: float
    downsample: int
    #: dtype the family's pipeline keeps its latents in (SD: the model dtype; SANA: float32).
    latent_dtype: torch.dtype
    #: whether encoding samples a posterior (and so takes a random generator).
    stochastic: bool = False

    def encode(
        self, pixels: torch.Tensor, generator: torch.Generator | None, sample: bool = True
    ) -> torch.Tensor:
        raise NotImplementedError

    def decode(self, latents: torch.Tensor, tiled: bool = False) -> torch.Tensor:
        raise NotImplementedError
