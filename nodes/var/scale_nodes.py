"""Next-scale prediction one scale per node (Tian et al. 2024, Sec. 3.2).

LG_VARStart makes the state before the 1x1 scale; each LG_VARScaleStep predicts the next token
map from all coarser ones, so a generation is K cached nodes that a graph can show, branch from
and resume. States are immutable, so any cached state can be stepped again with other settings.

Seeding: like the official ``autoregressive_infer_cfg(g_seed=seed)``, one generator is seeded
once, in LG_VARStart, and every scale continues its stream (the state carries the generator's
state). A step therefore has no seed of its own, and a chain of steps draws exactly the official
sequence of random numbers. The generator lives on the VAR's device, as in the official code: the
golden-token equality holds on the CPU; on CUDA the same seed gives other (equally valid) samples.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Optional

import torch

from ...executor.node import Input, InputError, Inputs, Node, Outputs
from ...executor.types import Image, Mask
from .checks import (
    SEED_MAX,
    check_batch,
    check_pair,
    check_state_size,
    check_top_k,
    checked_mask,
    image_side,
    parse_class_labels,
)
from .model import (
    VQVAE,
    ForcedTokens,
    GenerationState,
    TokenMaps,
    known_token_masks,
    scale_step,
    start,
)
from .model.quantizer import area_downsample
from .sockets import TokenMapsSocket, VARModelSocket, VARStateSocket, VQVAESocket
from .tokenizer_nodes import decode_latent

CATEGORY = "latentgraph/var"
# Previews decode f_hat area-downsampled to at most this many latent cells a side (16 px each),
# so a preview costs a small fraction of a step even for the 256 px models.
PREVIEW_MAX_LATENT_SIDE = 8


def class_labels_input() -> Any:
    return Input("0, 1", tooltip="comma-separated class ids, one image each; -1 = unconditional")


def seed_input() -> Any:
    return Input(0, ge=0, le=SEED_MAX, control_after_generate=True,
                 tooltip="seeds the one generator that every scale draws from")


def cfg_input() -> Any:
    return Input(4.0, ge=0.0, le=100.0, step=0.1,
                 tooltip="classifier-free guidance, ramped linearly from 0 at the 1x1 scale to "
                         "this at the last")


def top_k_input() -> Any:
    return Input(900, ge=0, tooltip="keep the k most likely tokens (0 = all)")


def top_p_input() -> Any:
    return Input(0.95, ge=0.0, le=1.0, step=0.01, tooltip="nucleus sampling mass (0 = off)")


def more_smooth_input() -> Any:
    return Input(False, tooltip="Gumbel-softmax mixture of codebook entries instead of the sampled "
                                "token (smoother images; the tokens are still sampled)")


class VARStart(Node):
    """The generation state before the first scale: class labels (their count is the batch size)
    and the seeded random stream that all scales continue."""

    class_type = "LG_VARStart"
    category = CATEGORY

    class In(Inputs):
        var: VARModelSocket
        class_labels: str = class_labels_input()
        seed: int = seed_input()

    class Out(Outputs):
        state: VARStateSocket

    def run(self, x: In) -> Out:
        labels = parse_class_labels(x.class_labels, x.var)
        check_state_size(len(labels), x.var, self.ctx.limits)
        return self.Out(state=start(x.var, labels, seed=x.seed))


class VARScaleStep(Node):
    """Predict the next scale's token map from every coarser one (one transformer pass over this
    scale's tokens, earlier scales from the KV cache), with CFG, top-k and top-p. With a mask and
    reference token maps, tokens outside the mask are teacher-forced (zero-shot in-painting)."""

    class_type = "LG_VARScaleStep"
    category = CATEGORY

    class In(Inputs):
        state: VARStateSocket
        var: VARModelSocket
        vqvae: VQVAESocket
        cfg: float = cfg_input()
        top_k: int = top_k_input()
        top_p: float = top_p_input()
        more_smooth: bool = more_smooth_input()
        reference: Optional[TokenMapsSocket] = Input(  # noqa: UP045
            None, tooltip="token maps of the image to in-paint (LG_VQVAEQuantize)")
        mask: Optional[Mask] = Input(None, tooltip="1 where to generate; needs reference")  # noqa: UP045

    class Out(Outputs):
        state: VARStateSocket

    def run(self, x: In) -> Out:
        state, var, vqvae = x.state, x.var, x.vqvae
        check_pair(var, vqvae)
        check_top_k(x.top_k, var)
        if state.patch_nums != var.config.patch_nums:
            raise InputError("var", f"the state follows scales {state.patch_nums}, this VAR "
                                    f"{var.config.patch_nums}")
        if state.is_complete:
            raise InputError("state", f"all {len(state.patch_nums)} scales are already sampled")
        check_batch(state.batch_size, image_side(vqvae, state.patch_nums), self.ctx.limits)
        forced = None
        if x.reference is not None or x.mask is not None:
            forced = forced_tokens(state, vqvae, x.reference, x.mask)
        after = scale_step(state, var, vqvae, cfg=x.cfg, top_k=x.top_k, top_p=x.top_p,
                           more_smooth=x.more_smooth, forced=forced)
        if after.is_complete:
            # Nothing can follow the last scale, so its keys and values would only fill the cache.
            after = replace(after, kv_cache=None)
        self.ctx.progress(after.scale_index, len(after.patch_nums),
                          preview=lambda: scale_preview(vqvae, after))
        return self.Out(state=after)


def forced_tokens(
    state: GenerationState, vqvae: VQVAE, reference: TokenMaps | None, mask: torch.Tensor | None
) -> ForcedTokens:
    """The reference's tokens at this scale, kept wherever the mask does not ask to generate."""
    if reference is None:
        raise InputError("reference", "in-painting with a mask needs the reference's token maps")
    if mask is None:
        raise InputError("mask", "reference token maps need a mask (1 where to generate)")
    sizes = tuple(idx.shape[-1] for idx in reference.indices)
    if sizes != tuple(pn * pn for pn in state.patch_nums):
        raise InputError("reference", f"token maps of {len(sizes)} scales ({sizes} tokens) do not "
                                      f"follow the VAR's scales {state.patch_nums}")
    batch, scale = state.batch_size, state.scale_index
    indices = reference.indices[scale].to(state.labels.device)
    if indices.shape[0] not in (1, batch):
        raise InputError("reference", f"holds {indices.shape[0]} images for a batch of {batch}")
    generate = checked_mask(mask, image_side(vqvae, state.patch_nums), batch)
    known = known_token_masks(generate.to(indices.device), (state.patch_nums[scale],), batch)[0]
    return ForcedTokens(indices=indices.expand(batch, -1), known=known)


@torch.no_grad()
def scale_preview(vqvae: VQVAE, state: GenerationState) -> torch.Tensor:
    """IMAGE (1,h,w,3) of the first sample at the resolution the finished scales have fixed."""
    side = min(state.patch_nums[state.scale_index - 1], PREVIEW_MAX_LATENT_SIDE)
    return decode_latent(vqvae, area_downsample(state.f_hat[:1], side), "vqvae").cpu()


class VARDecodeState(Node):
    """Decode a generation state's latent to images; on a partial state this shows what the
    finished scales have fixed so far."""

    class_type = "LG_VARDecodeState"
    category = CATEGORY

    class In(Inputs):
        vqvae: VQVAESocket
        state: VARStateSocket

    class Out(Outputs):
        image: Image

    def run(self, x: In) -> Out:
        return self.Out(image=decode_latent(x.vqvae, x.state.f_hat, "vqvae"))


class VARStateToTokenMaps(Node):
    """The token maps sampled so far, with the latent they sum to after each scale. With
    more_smooth the state's own latent is a soft mixture; these maps hold the sampled tokens."""

    class_type = "LG_VARStateToTokenMaps"
    category = CATEGORY

    class In(Inputs):
        vqvae: VQVAESocket
        state: VARStateSocket

    class Out(Outputs):
        token_maps: TokenMapsSocket

    @torch.no_grad()
    def run(self, x: In) -> Out:
        state = x.state
        if not state.token_maps:
            raise InputError("state", "no scale has been sampled yet")
        if state.f_hat.shape[1] != x.vqvae.config.z_channels:
            raise InputError("vqvae", f"decodes {x.vqvae.config.z_channels} channels, the state "
                                      f"has {state.f_hat.shape[1]}")
        f_hats = x.vqvae.quantize.tokens_to_f_hats(state.token_maps, state.patch_nums)
        return self.Out(token_maps=TokenMaps(indices=state.token_maps, f_hats=f_hats))


NODES = [VARStart, VARScaleStep, VARDecodeState, VARStateToTokenMaps]
