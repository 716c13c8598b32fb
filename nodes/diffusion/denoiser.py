"""The DENOISER contract that samplers drive, and TEXT_EMBEDS, what text encoders produce.

A denoiser takes x_t (already scaled where the solver needs it), the timestep in the units its
network was trained on, and text embeddings for both classifier-free-guidance branches; it
returns both predictions from ONE batched forward ordered [uncond, cond], exactly as diffusers'
pipelines batch them. :class:`DenoiserProtocol` is that contract, structurally; model families
(SD U-Net, SANA DiT, ...) usually subclass :class:`Denoiser`, which implements ``predict`` on
top of their :meth:`Denoiser.forward`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch

from .math import ArgumentError, Schedule


@dataclass(frozen=True, eq=False)
class TextEmbeds:
    """Per-token embeddings (B, L, D), an optional attention mask (B, L), an optional pooled
    embedding (B, D), as a text encoder hands them to a denoiser; ``guidance`` is the distilled
    guidance scale a guidance-embedding model (FLUX.1-dev) is conditioned on, if one was set
    (LG_FluxGuidance, as ComfyUI's FluxGuidance sets it on the conditioning)."""

    embeddings: torch.Tensor
    mask: torch.Tensor | None = None
    pooled: torch.Tensor | None = None
    guidance: float | None = None

    @property
    def batch(self) -> int:
        return self.embeddings.shape[0]

    def repeat_to(self, batch: int) -> TextEmbeds:
        """One prompt for a batch of latents: repeat each prompt as pipelines do for
        num_images_per_prompt."""
        if self.batch == batch:
            return self
        if batch % self.batch:
            raise ValueError(f"{self.batch} prompt(s) cannot be spread over a batch of {batch} latents")
        times = batch // self.batch

        def rep(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.repeat_interleave(times, dim=0)

        return TextEmbeds(rep(self.embeddings), rep(self.mask), rep(self.pooled), self.guidance)

    @staticmethod
    def cat(first: TextEmbeds, second: TextEmbeds) -> TextEmbeds:
        """The negative (uncond) embeddings ``first``, then the positive ones, in one batch."""
        if first.embeddings.shape[1:] != second.embeddings.shape[1:]:
            raise ArgumentError(
                "negative",
                f"positive and negative embeddings differ in shape: {tuple(second.embeddings.shape)} "
                f"vs {tuple(first.embeddings.shape)}"
            )

        def join(a: torch.Tensor | None, b: torch.Tensor | None) -> torch.Tensor | None:
            return None if a is None or b is None else torch.cat([a, b])

        return TextEmbeds(join(first.embeddings, second.embeddings), join(first.mask, second.mask),
                          join(first.pooled, second.pooled), second.guidance)


@runtime_checkable
class DenoiserProtocol(Protocol):
    """What a DENOISER socket carries: the training schedule and scheduler configuration a
    sampler builds its plan from, and the network's predictions. Runtime-checkable, so a node can
    check what reached it."""

    #: How the network was trained (beta schedule, prediction type, flow shift).
    schedule: Schedule
    #: The scheduler configuration it ships with, used when a sampler builds its plan.
    spacing: str
    steps_offset: int

    def forward(
        self, sample: torch.Tensor, timestep: torch.Tensor, context: TextEmbeds | None
    ) -> torch.Tensor: ...

    def predict(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor,
        positive: TextEmbeds | None,
        negative: TextEmbeds | None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]: ...


class Denoiser:
    """Base of the DENOISERs (satisfies :class:`DenoiserProtocol` once ``forward`` is given).
    Lives in the executor's model tier (``is_model``)."""

    is_model = True
    #: How the network was trained (beta schedule, prediction type, flow shift).
    schedule: Schedule
    #: The scheduler configuration it ships with, used when a sampler builds its plan.
    spacing: str = "leading"
    steps_offset: int = 0

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, context: TextEmbeds | None) -> torch.Tensor:
        """The network's prediction for a batch; ``timestep`` is a scalar tensor."""
        raise NotImplementedError

    def predict(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor,
        positive: TextEmbeds | None,
        negative: TextEmbeds | None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(cond, uncond) from one forward over cat([uncond, cond]); uncond is None without a
        negative prompt (guidance is then off, and only the conditional branch runs)."""
        batch = sample.shape[0]
        if negative is None:
            context = _spread(positive, batch, "positive") if positive is not None else None
            return self.forward(sample, timestep, context), None
        if positive is None:
            raise ArgumentError("negative", "a negative prompt needs a positive one")
        context = TextEmbeds.cat(_spread(negative, batch, "negative"), _spread(positive, batch, "positive"))
        uncond, cond = self.forward(torch.cat([sample, sample]), timestep, context).chunk(2)
        return cond, uncond


def _spread(embeds: TextEmbeds, batch: int, argument: str) -> TextEmbeds:
    """``embeds.repeat_to(batch)``; a prompt count that does not divide the batch names ``argument``."""
    try:
        return embeds.repeat_to(batch)
    except ValueError as err:
        raise ArgumentError(argument, str(err)) from None
