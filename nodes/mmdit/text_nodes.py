"""Prompt encoding for SD3 / SD3.5 and FLUX.1 as separate nodes, so that each encoder's output
is a cached value of its own: one T5 embedding serves every graph that asks for the same prompt.

LG_CLIPTextEncodeMMDiT and LG_T5TextEncode run one encoder (a single encoder loaded by
LG_LoadTextEncoder / LG_LoadT5TextEncoder, or one member of a checkpoint's bundled encoders);
LG_SD3Conditioning and LG_FluxConditioning join their outputs into TEXT_EMBEDS as
StableDiffusion3Pipeline and FluxPipeline do. (LG_TextEncode on a checkpoint's bundled encoders
does the same in one node.)
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Annotated, Any, Literal, Optional

from ...executor.context import Folders
from ...executor.node import Input, InputError, Inputs, Node, Outputs
from ...executor.types import Socket
from ..common.files import CheckpointError, path_fingerprint, resolve_model_path
from ..common.sockets import TextEncoderSocket
from ..core.provenance import record_models
from ..diffusion.sockets import TextEmbedsSocket
from . import text_encoders as te
from .layouts import load_t5, t5_tokenizer

CATEGORY = "latentgraph/conditioning/mmdit"
ClipEmbedsSocket = Annotated[te.ClipEmbeds, Socket("CLIP_EMBEDS")]
T5EmbedsSocket = Annotated[te.T5Embeds, Socket("T5_EMBEDS")]


def _kind(value: Any) -> str:
    if isinstance(value, te.ClipEncoder):
        return f"the {value.title} of {value.source}"
    if isinstance(value, te.T5Encoder):
        return f"the T5 of {value.source}"
    if isinstance(value, te.SD3TextEncoders | te.FluxTextEncoders):
        return f"the bundled text encoders ({', '.join(value.members)})"
    return f"a {type(value).__name__}"


def _as_clip(value: Any) -> te.ClipEncoder | None:
    """A CLIP encoder from what reached the input: ours, or SD 1.x's loaders' CLIPTextModel
    (a clip_l file without a projection is read by them), as a CLIP-L."""
    if isinstance(value, te.ClipEncoder):
        return value
    from ..ldm.clip import ClipTextEncoder

    if isinstance(value, ClipTextEncoder):
        return te.ClipEncoder(value.model, value.tokenizer, "clip_l", "a CLIP-L (SD 1.x loader)")
    return None


class CLIPTextEncodeMMDiT(Node):
    """One CLIP encoder (CLIP-L or CLIP-G) over a prompt, as SD3's and FLUX's pipelines run it:
    77 tokens; the penultimate hidden state, the pooled output and its projection."""

    class_type = "LG_CLIPTextEncodeMMDiT"
    category = CATEGORY

    class In(Inputs):
        clip: TextEncoderSocket
        text: str = Input("", multiline=True)
        which: Literal["auto", "clip_l", "clip_g"] = Input(
            "auto",
            tooltip="which CLIP of a checkpoint's bundled encoders; for a single one, the one "
            "it must be",
        )
        clip_skip: int = Input(
            0,
            ge=0,
            le=47,
            tooltip="layers skipped from the end beyond the penultimate one SD3 reads "
            "(StableDiffusion3Pipeline's clip_skip; 0 is its default)",
        )

    class Out(Outputs):
        clip: ClipEmbedsSocket

    def run(self, x: In) -> Out:
        encoder = x.clip
        if isinstance(encoder, te.SD3TextEncoders | te.FluxTextEncoders):
            if x.which == "auto":
                raise InputError("which", f"{_kind(encoder)}: choose clip_l or clip_g")
            if x.which not in encoder.members:
                raise InputError("which", f"{_kind(encoder)} have no {x.which}")
            encoder = encoder.members[x.which]
        clip = _as_clip(encoder)
        if clip is None:
            raise InputError("clip", f"expected a CLIP text encoder, got {_kind(encoder)}")
        if x.which != "auto" and clip.role != x.which:
            raise InputError(
                "clip", f"{clip.source} is a {clip.title}, not a {te.CLIP_TITLES[x.which]}"
            )
        self.ctx.check_interrupted()
        try:
            return self.Out(clip=clip.embed([x.text], x.clip_skip))
        except ValueError as err:
            raise InputError("clip_skip", str(err)) from None


class T5TextEncode(Node):
    """T5 over a prompt, as SD3's and FLUX's pipelines run it: padded to max_length tokens (SD3
    256, FLUX 512), no attention mask, the last hidden state."""

    class_type = "LG_T5TextEncode"
    category = CATEGORY

    class In(Inputs):
        t5: TextEncoderSocket
        text: str = Input("", multiline=True)
        max_length: int = Input(
            te.SD3_T5_TOKENS,
            ge=1,
            le=te.T5_MAX_TOKENS,
            tooltip="max_sequence_length: 256 for SD3, 512 for FLUX (the pipelines' defaults)",
        )

    class Out(Outputs):
        t5: T5EmbedsSocket

    def run(self, x: In) -> Out:
        encoder = x.t5
        if isinstance(encoder, te.SD3TextEncoders | te.FluxTextEncoders):
            if encoder.t5 is None:
                raise InputError("t5", f"{_kind(encoder)} hold no T5")
            encoder = encoder.t5
        if not isinstance(encoder, te.T5Encoder):
            raise InputError("t5", f"expected a T5 text encoder, got {_kind(encoder)}")
        self.ctx.check_interrupted()
        try:
            return self.Out(t5=encoder.embed([x.text], x.max_length))
        except CheckpointError as err:  # no tokenizer
            raise InputError("t5", str(err)) from None


def _clip_input(name: str, clip: Any, role: te.ClipRole) -> te.ClipEmbeds:
    if not isinstance(clip, te.ClipEmbeds):
        raise InputError(name, f"expected CLIP_EMBEDS, got {type(clip).__name__}")
    if clip.role != role:
        raise InputError(
            name,
            f"{clip.source} is a {te.CLIP_TITLES[clip.role]}; this input takes the "
            f"{te.CLIP_TITLES[role]} embeddings",
        )
    return clip


class SD3Conditioning(Node):
    """SD3's prompt embeddings from its three encoders, as StableDiffusion3Pipeline joins them:
    [CLIP-L | CLIP-G] penultimate states zero-padded to T5's width, then T5's tokens (77 + 256);
    pooled [CLIP-L | CLIP-G]. Without T5, zeros of t5_tokens x t5_width stand in, as the
    pipeline makes them."""

    class_type = "LG_SD3Conditioning"
    category = CATEGORY

    class In(Inputs):
        clip_l: ClipEmbedsSocket
        clip_g: ClipEmbedsSocket
        t5: Optional[T5EmbedsSocket] = None  # noqa: UP045
        t5_tokens: int = Input(
            te.SD3_T5_TOKENS, ge=1, le=te.T5_MAX_TOKENS, tooltip="without T5: the zeros' tokens"
        )
        t5_width: int = Input(
            4096, ge=1, le=16384, tooltip="without T5: the transformer's joint_attention_dim"
        )

    class Out(Outputs):
        embeds: TextEmbedsSocket

    def run(self, x: In) -> Out:
        clip_l = _clip_input("clip_l", x.clip_l, "clip_l")
        clip_g = _clip_input("clip_g", x.clip_g, "clip_g")
        if x.t5 is not None and not isinstance(x.t5, te.T5Embeds):
            raise InputError("t5", f"expected T5_EMBEDS, got {type(x.t5).__name__}")
        if clip_g.projected is None:
            raise InputError(
                "clip_g",
                f"{clip_g.source} has no text projection; SD3 reads CLIP-G's projected pooled "
                "output (CLIPTextModelWithProjection's text_embeds)",
            )
        try:
            embeds = te.sd3_embeds(clip_l, clip_g, x.t5, x.t5_tokens, x.t5_width)
        except ValueError as err:
            raise InputError("t5", str(err)) from None
        return self.Out(embeds=embeds)


class FluxConditioning(Node):
    """FLUX's prompt embeddings, as FluxPipeline joins them: T5's states as the tokens, CLIP-L's
    pooled output (unprojected) as the pooled vector."""

    class_type = "LG_FluxConditioning"
    category = CATEGORY

    class In(Inputs):
        clip_l: ClipEmbedsSocket
        t5: T5EmbedsSocket

    class Out(Outputs):
        embeds: TextEmbedsSocket

    def run(self, x: In) -> Out:
        clip_l = _clip_input("clip_l", x.clip_l, "clip_l")
        if not isinstance(x.t5, te.T5Embeds):
            raise InputError("t5", f"expected T5_EMBEDS, got {type(x.t5).__name__}")
        try:
            return self.Out(embeds=te.flux_embeds(clip_l, x.t5))
        except ValueError as err:
            raise InputError("t5", str(err)) from None


class LoadT5TextEncoder(Node):
    """Load T5 with its tokenizer: a t5xxl file (fp16/bf16/fp8, ComfyUI's scaled fp8, or a
    GGUF-quantised one through the gguf package), the T5 inside an SD3/FLUX
    all-in-one checkpoint, a T5EncoderModel folder or an SD3/FLUX diffusers folder. A weight
    file carries no tokenizer: name T5's tokenizer folder (e.g. tokenizer_3/ of SD3)."""

    class_type = "LG_LoadT5TextEncoder"
    category = "latentgraph/loaders"
    disk_cacheable = False

    class In(Inputs):
        path: str = Input(tooltip="a T5 file or folder inside a models folder")
        tokenizer: str = Input(
            "",
            tooltip="a folder with T5's tokenizer (tokenizer.json or spiece.model); empty: "
            "the model folder's own, or files beside the weight file",
        )

    class Out(Outputs):
        t5: TextEncoderSocket

    @classmethod
    def fingerprint(cls, inputs: dict[str, Any], folders: Folders) -> Hashable:
        tokenizer = inputs.get("tokenizer")
        return (
            path_fingerprint(folders, inputs.get("path")),
            path_fingerprint(folders, tokenizer) if tokenizer else None,
        )

    def run(self, x: In) -> Out:
        folders = self.ctx.folders
        tokenizer = None
        if x.tokenizer:
            try:
                folder = resolve_model_path(folders, x.tokenizer)
                if not folder.is_dir():
                    raise CheckpointError(f"'{x.tokenizer}' is not a folder")
                tokenizer = t5_tokenizer(folder)
            except CheckpointError as err:
                raise InputError("tokenizer", str(err)) from None
        try:
            path = resolve_model_path(folders, x.path)
            t5 = load_t5(path, tokenizer, self.ctx.device)
        except CheckpointError as err:
            raise InputError("path", str(err)) from None
        if t5.tokenizer is None:
            raise InputError(
                "tokenizer",
                f"{t5.source} carries no tokenizer (a weight file holds none): name a folder "
                "with T5's tokenizer.json or spiece.model, e.g. tokenizer_3/ of an SD3 or "
                "tokenizer_2/ of a FLUX diffusers folder",
            )
        record_models(self, {"t5": t5})
        return self.Out(t5=t5)


NODES = [CLIPTextEncodeMMDiT, T5TextEncode, SD3Conditioning, FluxConditioning, LoadT5TextEncoder]
