"""The text encoders of the MM-DiT families (SD3 / SD3.5 and FLUX.1), used as their pipelines use
them, and the embeddings they hand each other on the graph.

* CLIP-L (OpenAI ViT-L/14) and CLIP-G (OpenCLIP ViT-bigG/14): :class:`ClipEncoder` over
  transformers' CLIPTextModel(WithProjection). One forward gives everything either pipeline
  reads: the penultimate hidden state (SD3, ``clip_skip`` None), the projected pooled output
  (SD3's ``text_embeds``; CLIP-L's projection is the identity in SD3's release) and the
  unprojected one (FLUX's ``pooler_output``): a :class:`ClipEmbeds`.
* T5 v1.1 XXL: :class:`T5Encoder` over T5EncoderModel, padded/truncated to
  ``max_sequence_length`` tokens (SD3 256, FLUX 512), no attention mask, the last hidden state:
  a :class:`T5Embeds`.

:func:`sd3_embeds` and :func:`flux_embeds` join them into TEXT_EMBEDS exactly as
``StableDiffusion3Pipeline.encode_prompt`` and ``FluxPipeline.encode_prompt`` do.
:class:`SD3TextEncoders` and :class:`FluxTextEncoders` bundle a pipeline's encoders (what
LG_LoadCheckpoint gives for a whole SD3 or FLUX model) so that LG_TextEncode encodes a prompt
in one node; the separate encode nodes take their members, so a T5 embedding can be cached and
shared.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F

from ..common.files import CheckpointError
from ..common.models import TextEncoder
from ..diffusion.denoiser import TextEmbeds

ClipRole = Literal["clip_l", "clip_g"]
CLIP_TITLES = {"clip_l": "CLIP-L", "clip_g": "CLIP-G"}
CLIP_MAX_LENGTH = 77
SD3_T5_TOKENS = 256  # StableDiffusion3Pipeline's max_sequence_length default
FLUX_T5_TOKENS = 512  # FluxPipeline's
T5_MAX_TOKENS = 512  # both pipelines refuse more


@dataclass(frozen=True, eq=False)
class ClipEmbeds:
    """What one CLIP forward gives the MM-DiT pipelines, for a batch of prompts.

    ``hidden`` is the penultimate layer's hidden state (B, 77, D) (SD3's ``hidden_states[-2]``),
    ``pooled`` the final-layer-norm state at the EOS token (B, D) (FLUX's ``pooler_output``),
    ``projected`` that through ``text_projection`` (B, P) (SD3's ``text_embeds``), None for a
    CLIPTextModel without one. ``role`` and ``source`` (the file or folder) are for messages.
    """

    hidden: torch.Tensor
    pooled: torch.Tensor
    projected: torch.Tensor | None
    role: ClipRole
    source: str


@dataclass(frozen=True, eq=False)
class T5Embeds:
    """T5's last hidden state (B, L, D) for a batch of prompts padded to L tokens."""

    hidden: torch.Tensor
    source: str

    @property
    def tokens(self) -> int:
        return self.hidden.shape[1]


class ClipEncoder(TextEncoder):
    """CLIP-L or CLIP-G with its tokenizer (77 tokens, padded with the tokenizer's pad token:
    ``<|endoftext|>`` for CLIP-L, ``!`` for SD3's CLIP-G), run without an attention mask as
    both pipelines run it."""

    family = "mmdit"
    _modules = ("model",)

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        role: ClipRole,
        source: str,
        project: bool = True,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.role: ClipRole = role
        self.source = source
        #: whether SD3 reads the pooled output through the model's projection (see
        #: ``sd3_embeds``; a CLIP-L read from a single file does not)
        self.project = project

    @property
    def title(self) -> str:
        return CLIP_TITLES[self.role]

    @property
    def has_projection(self) -> bool:
        return hasattr(self.model, "text_projection")

    @property
    def layers(self) -> int:
        return int(self.model.config.num_hidden_layers)

    def embed(self, texts: list[str], clip_skip: int = 0) -> ClipEmbeds:
        """``clip_skip``: layers skipped from the end beyond the penultimate one SD3 reads
        (StableDiffusion3Pipeline's ``hidden_states[-(clip_skip + 2)]``; 0 is its None)."""
        if not 0 <= clip_skip < self.layers:
            raise ValueError(
                f"clip_skip {clip_skip} is not in 0..{self.layers - 1} ({self.title} "
                f"has {self.layers} layers)"
            )
        ids = self.tokenizer(
            texts,
            padding="max_length",
            max_length=CLIP_MAX_LENGTH,
            truncation=True,
            return_tensors="pt",
        ).input_ids
        device, dtype = self.placement
        # CLIPTextModelWithProjection.forward is text_model then text_projection of its pooled
        # output; calling the two ourselves gives SD3's projected and FLUX's unprojected pooled
        # output from one forward, with the same operations as either pipeline.
        text_model = getattr(self.model, "text_model", self.model)
        with torch.no_grad():
            out = text_model(ids.to(device), output_hidden_states=True)
            pooled = out.pooler_output
            projects = self.project and self.has_projection
            projected = self.model.text_projection(pooled) if projects else None
        return ClipEmbeds(
            hidden=out.hidden_states[-(clip_skip + 2)].to(dtype),
            pooled=pooled.to(dtype),
            projected=projected,
            role=self.role,
            source=self.source,
        )

    def encode(self, texts: list[str], instruction: bool = True) -> TextEmbeds:
        """On its own (LG_TextEncode): the penultimate hidden state and the pooled output SD3
        reads (projected where the model has a projection)."""
        clip = self.embed(texts)
        return TextEmbeds(
            clip.hidden, pooled=clip.projected if clip.projected is not None else clip.pooled
        )


class T5Encoder(TextEncoder):
    """T5EncoderModel with its tokenizer. A single weight file carries no tokenizer: then
    ``tokenizer`` is None and encoding says where to give one."""

    family = "mmdit"
    _modules = ("model",)

    def __init__(self, model: torch.nn.Module, tokenizer: Any | None, source: str) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.source = source

    @property
    def width(self) -> int:
        return int(self.model.config.d_model)

    def embed(self, texts: list[str], max_length: int = SD3_T5_TOKENS) -> T5Embeds:
        if self.tokenizer is None:
            raise CheckpointError(
                f"{self.source}: a T5 weight file carries no tokenizer; load it with "
                "LG_LoadT5TextEncoder and name T5's tokenizer folder (tokenizer.json or "
                "spiece.model, e.g. the tokenizer_3/ of an SD3 or the tokenizer_2/ of a FLUX "
                "diffusers folder), or put those files beside the weights"
            )
        if not 1 <= max_length <= T5_MAX_TOKENS:
            raise ValueError(f"max_length {max_length} is not in 1..{T5_MAX_TOKENS}")
        ids = self.tokenizer(
            texts,
            padding="max_length",
            max_length=max_length,
            truncation=True,
            add_special_tokens=True,
            return_tensors="pt",
        ).input_ids
        device, dtype = self.placement
        with torch.no_grad():
            hidden = self.model(ids.to(device))[0]
        return T5Embeds(hidden.to(dtype), self.source)

    def encode(self, texts: list[str], instruction: bool = True) -> TextEmbeds:
        """On its own (LG_TextEncode): T5's hidden states over SD3's 256 tokens."""
        return TextEmbeds(self.embed(texts).hidden)


# --- joining them as the pipelines do -----------------------------------------------------------


def sd3_embeds(
    clip_l: ClipEmbeds,
    clip_g: ClipEmbeds,
    t5: T5Embeds | None,
    t5_tokens: int = SD3_T5_TOKENS,
    t5_width: int = 4096,
) -> TextEmbeds:
    """StableDiffusion3Pipeline.encode_prompt: [CLIP-L | CLIP-G] penultimate states concatenated
    on the feature axis and zero-padded to T5's width, then T5's states after them on the token
    axis (77 + 256 tokens); pooled = [CLIP-L | CLIP-G] projected pooled outputs. Without T5, the
    pipeline's zeros of (B, ``t5_tokens``, ``t5_width`` = the transformer's joint_attention_dim)
    in CLIP-L's dtype stand in for it.

    SD3 was trained on CLIP-L's pooled output without projection: Stability's and ComfyUI's SD3
    code skip CLIP-L's projection, and the diffusers release holds the identity there (which
    diffusers' single-file conversion puts in). So CLIP-L's pooled output goes through the
    projection its diffusers folder holds, and unprojected where it has none (a single file).
    CLIP-G's projection is real and required."""
    if clip_g.projected is None:
        raise ValueError(
            f"clip_g: {clip_g.source} has no text projection; SD3 reads CLIP-G's projected "
            "pooled output (CLIPTextModelWithProjection's text_embeds)"
        )
    pooled_l = clip_l.projected if clip_l.projected is not None else clip_l.pooled
    # The pipeline casts both CLIP states to CLIP-L's dtype (its `text_encoder.dtype`).
    clip = torch.cat([clip_l.hidden, clip_g.hidden.to(clip_l.hidden.dtype)], dim=-1)
    if t5 is None:
        t5_hidden = torch.zeros(
            (clip.shape[0], t5_tokens, t5_width), device=clip.device, dtype=clip_l.hidden.dtype
        )
    else:
        t5_hidden = t5.hidden
        if t5_hidden.shape[0] != clip.shape[0]:
            raise ValueError(
                f"t5: {t5_hidden.shape[0]} prompt(s) where the CLIP embeddings have {clip.shape[0]}"
            )
    # The pipeline's F.pad to T5's width (which crops a CLIP pair wider than T5, as toy models
    # can be; the releases' 768 + 1280 < 4096).
    clip = F.pad(clip, (0, t5_hidden.shape[-1] - clip.shape[-1]))
    embeddings = torch.cat([clip, t5_hidden.to(clip.device)], dim=-2)
    pooled = torch.cat([pooled_l, clip_g.projected.to(pooled_l.device)], dim=-1)
    return TextEmbeds(embeddings, pooled=pooled)


def flux_embeds(clip_l: ClipEmbeds, t5: T5Embeds) -> TextEmbeds:
    """FluxPipeline.encode_prompt: T5's states are the token embeddings, CLIP-L's unprojected
    pooled output the pooled one (text_ids are zeros the transformer makes itself)."""
    if t5.hidden.shape[0] != clip_l.pooled.shape[0]:
        raise ValueError(
            f"t5: {t5.hidden.shape[0]} prompt(s) where the CLIP-L embeddings have "
            f"{clip_l.pooled.shape[0]}"
        )
    return TextEmbeds(t5.hidden, pooled=clip_l.pooled.to(t5.hidden.device))


# --- a pipeline's encoders as one TEXT_ENCODER --------------------------------------------------


class _Bundle(TextEncoder):
    """Several encoders as one graph object: the model tier moves them together, and a saved
    PNG names their dtypes (``_modules`` reads the members' modules)."""

    _modules = ("clip_l_model", "clip_g_model", "t5_model")

    @property
    def members(self) -> dict[str, TextEncoder]:
        raise NotImplementedError

    def to(self, device: torch.device | str) -> _Bundle:
        for member in self.members.values():
            member.to(device)
        self._placed = None
        self.moves += 1
        return self

    def _model(self, name: str) -> torch.nn.Module | None:
        member = self.members.get(name)
        return None if member is None else member.model  # type: ignore[attr-defined]

    clip_l_model = property(lambda self: self._model("clip_l"))
    clip_g_model = property(lambda self: self._model("clip_g"))
    t5_model = property(lambda self: self._model("t5"))


class SD3TextEncoders(_Bundle):
    """SD3's three encoders as one TEXT_ENCODER: ``encode`` is the pipeline's encode_prompt for
    one side (the negative prompt is encoded the same way, "" by default). ``t5`` may be None
    (a checkpoint without it, or T5 left off): zeros of (B, ``t5_tokens``, ``t5_width``) then."""

    family = "sd3"

    def __init__(
        self,
        clip_l: ClipEncoder,
        clip_g: ClipEncoder,
        t5: T5Encoder | None,
        t5_width: int,
        t5_tokens: int = SD3_T5_TOKENS,
    ) -> None:
        self.clip_l, self.clip_g, self.t5 = clip_l, clip_g, t5
        self.t5_width = t5_width
        self.t5_tokens = t5_tokens

    @property
    def members(self) -> dict[str, TextEncoder]:
        found = {"clip_l": self.clip_l, "clip_g": self.clip_g, "t5": self.t5}
        return {k: v for k, v in found.items() if v is not None}

    def encode(self, texts: list[str], instruction: bool = True) -> TextEmbeds:
        t5 = self.t5.embed(texts, self.t5_tokens) if self.t5 is not None else None
        return sd3_embeds(
            self.clip_l.embed(texts), self.clip_g.embed(texts), t5, self.t5_tokens, self.t5_width
        )


class FluxTextEncoders(_Bundle):
    """FLUX's CLIP-L and T5 as one TEXT_ENCODER: ``encode`` is the pipeline's encode_prompt."""

    family = "flux"

    def __init__(self, clip_l: ClipEncoder, t5: T5Encoder, t5_tokens: int = FLUX_T5_TOKENS) -> None:
        self.clip_l, self.t5 = clip_l, t5
        self.t5_tokens = t5_tokens

    @property
    def members(self) -> dict[str, TextEncoder]:
        return {"clip_l": self.clip_l, "t5": self.t5}

    def encode(self, texts: list[str], instruction: bool = True) -> TextEmbeds:
        return flux_embeds(self.clip_l.embed(texts), self.t5.embed(texts, self.t5_tokens))
