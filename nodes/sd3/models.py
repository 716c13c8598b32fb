"""SD3 / SD3.5's MM-DiT as a DENOISER, driven exactly as StableDiffusion3Pipeline drives it:
the timestep in the scheduler's units (0..1000) broadcast over the batch, the joint text
embeddings (CLIP-L/G + T5) and the pooled CLIP-L/G vector, CFG batched [uncond, cond]; and the
skip-layer forward SD3.5's skip-layer guidance compares the conditional prediction with."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..common.models import HoldsModules
from ..diffusion.denoiser import Denoiser, TextEmbeds
from ..diffusion.math import ArgumentError
from .scheduling import FlowMatch


class SD3Denoiser(Denoiser, HoldsModules):
    """SD3Transformer2DModel predicting the flow velocity noise - x0."""

    family = "sd3"
    spacing = "linspace"
    steps_offset = 0
    _modules = ("transformer",)

    def __init__(self, transformer: Any, training: FlowMatch) -> None:
        self.transformer = transformer
        self.training = training
        self.schedule = training.schedule
        self.patch_size = int(transformer.config.patch_size)

    def plan_options(self, latent: torch.Tensor) -> dict[str, Any]:
        """A dynamic-shift config's mu from the latent's patches (the pipeline's image_seq_len)."""
        height, width = latent.shape[-2:]
        return self.training.plan_options((height // self.patch_size) * (width // self.patch_size))

    def forward(
        self, sample: torch.Tensor, timestep: torch.Tensor, context: TextEmbeds | None
    ) -> torch.Tensor:
        return self._call(sample, timestep, context, None)

    def forward_skipping(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor,
        context: TextEmbeds,
        layers: Sequence[int],
    ) -> torch.Tensor:
        """The prediction with the given transformer blocks skipped (skip-layer guidance)."""
        depth = int(self.transformer.config.num_layers)
        bad = [i for i in layers if not 0 <= i < depth]
        if bad:
            raise ArgumentError("layers", f"layer(s) {bad} are outside the MM-DiT's {depth} layers (0..{depth - 1})")
        return self._call(sample, timestep, context, list(layers))

    def _call(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor,
        context: TextEmbeds | None,
        skip_layers: list[int] | None,
    ) -> torch.Tensor:
        if context is None or context.pooled is None:
            raise ArgumentError(
                "positive",
                "SD3 is conditioned on joint text embeddings with a pooled CLIP vector: connect "
                "the TEXT_EMBEDS of an SD3 text encoding",
            )
        check_widths(self.transformer.config, context, "SD3", "CLIP-L/G + T5")
        if sample.shape[-2] % self.patch_size or sample.shape[-1] % self.patch_size:
            raise ArgumentError(
                "sample",
                f"the latent's {sample.shape[-2]}x{sample.shape[-1]} is not a whole number of the "
                f"MM-DiT's {self.patch_size}x{self.patch_size} patches",
            )
        device, dtype = self.placement
        t = timestep.to(device).expand(sample.shape[0])
        with torch.no_grad():
            return self.transformer(
                hidden_states=sample.to(device, dtype),
                timestep=t,
                encoder_hidden_states=context.embeddings.to(device, dtype),
                pooled_projections=context.pooled.to(device, dtype),
                return_dict=False,
                skip_layers=skip_layers,
            )[0]


def check_widths(config: Any, context: TextEmbeds, family: str, encoders: str) -> None:
    """That the embeddings are as wide as the transformer reads them (a prompt encoded for
    another family fails here, by name, not deep in a matrix product)."""
    tokens, pooled = context.embeddings.shape[-1], context.pooled.shape[-1] if context.pooled is not None else 0
    want_tokens, want_pooled = int(config.joint_attention_dim), int(config.pooled_projection_dim)
    if (tokens, pooled) != (want_tokens, want_pooled):
        raise ArgumentError(
            "positive",
            f"the text embeddings are {tokens} wide with a {pooled}-wide pooled vector, where this "
            f"{family} transformer reads {want_tokens} and {want_pooled} ({encoders}): were they "
            "encoded for another model family?",
        )
