"""Stepwise class-conditional VAR generation (Tian et al. 2024, Sec. 3.2).

Generation is split into `start` and `scale_step` so that a graph node can run one scale at a time
and cache every intermediate `GenerationState`. States are immutable: a step builds a new f_hat
(out-of-place addition) and extends the KV cache copy-on-write (`KVArena`), so any cached state
can be resumed any number of times with identical results.

Randomness: the official sampler seeds one `torch.Generator` once and lets every scale consume it
in turn. To reproduce that across separate calls, the generator's state is stored in the
`GenerationState` after each draw and restored into a fresh generator by the next step. With
`seed=None` the global torch RNG is used instead, exactly like the official `g_seed=None`; such
states can still be resumed, but the draws then depend on whatever else used the global RNG.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

import torch

from .quantizer import area_downsample
from .sampling import (
    classifier_free_guidance,
    filter_top_k_top_p,
    guidance_strength,
    gumbel_softmax,
    sample_tokens,
    scale_progress,
    smoothing_temperature,
)
from .var import VAR, KVCache
from .vqvae import VQVAE


@dataclass(frozen=True)
class ForcedTokens:
    """Tokens to teacher-force at one scale: ids [B, pn*pn] and where to force them (bool [B, pn*pn])."""

    indices: torch.Tensor
    known: torch.Tensor


@dataclass(frozen=True)
class GenerationState:
    """Everything needed to continue generation after `scale_index` finished scales.

    labels: [B] class ids; the null class (num_classes) gives unconditional samples.
    scale_index: the scale that the next `scale_step` samples.
    f_hat: [B, z_channels, pn_K, pn_K] float32 latent summed over all finished scales.
    next_scale_input: f_hat area-downsampled to the next scale's size; None before scale 0.
    token_maps: sampled ids [B, pn*pn] of every finished scale.
    kv_cache: keys/values of all finished scales; None before scale 0 (LG_VARScaleStep also drops
        it from the last state, which nothing can follow).
    rng_state: generator state to continue from; None means the global torch RNG.
    """

    patch_nums: tuple[int, ...]
    labels: torch.Tensor
    scale_index: int
    f_hat: torch.Tensor
    next_scale_input: torch.Tensor | None
    token_maps: tuple[torch.Tensor, ...]
    kv_cache: KVCache | None
    rng_state: torch.Tensor | None

    @property
    def batch_size(self) -> int:
        return self.labels.shape[0]

    @property
    def is_complete(self) -> bool:
        return self.scale_index == len(self.patch_nums)


@dataclass(frozen=True)
class GenerationResult:
    image: torch.Tensor  # [B, 3, H, W] in [0, 1]
    state: GenerationState


def _resolve_labels(
    var: VAR,
    labels: torch.Tensor | int | None,
    batch_size: int | None,
    generator: torch.Generator | None,
) -> torch.Tensor:
    num_classes = var.config.num_classes
    if isinstance(labels, torch.Tensor):
        if batch_size is not None and labels.numel() != batch_size:
            raise ValueError(f"{labels.numel()} labels given for batch_size {batch_size}")
        return labels.to(device=var.device, dtype=torch.long).reshape(-1)
    if batch_size is None:
        raise ValueError("batch_size is required when labels is an int or None")
    if labels is None:
        uniform = torch.full(
            (1, num_classes), 1.0 / num_classes, dtype=torch.float32, device=var.device
        )
        drawn = torch.multinomial(
            uniform, num_samples=batch_size, replacement=True, generator=generator
        )
        return drawn.reshape(batch_size)
    # A negative class id requests unconditional generation (the null class).
    return torch.full((batch_size,), num_classes if labels < 0 else labels, device=var.device)


def _restore_generator(
    rng_state: torch.Tensor | None, device: torch.device
) -> torch.Generator | None:
    if rng_state is None:
        return None
    generator = torch.Generator(device=device)
    generator.set_state(rng_state)
    return generator


def _check_compatible(var: VAR, vqvae: VQVAE) -> None:
    if (var.config.vocab_size, var.config.z_channels) != (
        vqvae.config.vocab_size,
        vqvae.config.z_channels,
    ):
        raise ValueError(
            f"VAR (vocab {var.config.vocab_size}, z_channels {var.config.z_channels}) does not match "
            f"VQVAE (vocab {vqvae.config.vocab_size}, z_channels {vqvae.config.z_channels})"
        )


@torch.no_grad()
def start(
    var: VAR,
    labels: torch.Tensor | int | None,
    *,
    batch_size: int | None = None,
    seed: int | None = None,
) -> GenerationState:
    """Initial state before scale 0. `labels=None` draws labels uniformly from the seeded generator."""
    generator = None
    if seed is not None:
        generator = torch.Generator(device=var.device)
        generator.manual_seed(seed)
    resolved = _resolve_labels(var, labels, batch_size, generator)
    full = var.config.patch_nums[-1]
    f_hat = torch.zeros(resolved.shape[0], var.config.z_channels, full, full, device=var.device)
    return GenerationState(
        patch_nums=var.config.patch_nums,
        labels=resolved,
        scale_index=0,
        f_hat=f_hat,
        next_scale_input=None,
        token_maps=(),
        kv_cache=None,
        rng_state=None if generator is None else generator.get_state(),
    )


def _guided_logits(
    state: GenerationState, var: VAR, cfg: float, cache: Literal["extend", "peek"]
) -> tuple[torch.Tensor, KVCache | None]:
    if state.is_complete:
        raise ValueError("generation is already complete; no scale left to predict")
    if state.patch_nums != var.config.patch_nums:
        raise ValueError(
            f"state patch_nums {state.patch_nums} != VAR patch_nums {var.config.patch_nums}"
        )
    scale_index = state.scale_index
    null_labels = torch.full_like(state.labels, var.config.num_classes)
    condition = var.class_emb(torch.cat((state.labels, null_labels)))
    if state.next_scale_input is None:  # scale 0: the class token starts the sequence
        tokens = var.start_tokens(condition)
    else:
        tokens = var.scale_tokens(state.next_scale_input, scale_index).repeat(2, 1, 1)
    # Tokens of earlier scales are already in the KV cache, so no mask is needed (Sec. 3.2).
    logits, kv_cache = var.transformer_logits(
        tokens, condition, attn_bias=None, kv_cache=state.kv_cache, cache=cache
    )
    t = guidance_strength(cfg, scale_index, len(state.patch_nums))
    return classifier_free_guidance(logits, t), kv_cache


@torch.no_grad()
def scale_logits(state: GenerationState, var: VAR, cfg: float = 1.5) -> torch.Tensor:
    """Guided logits [B, pn*pn, V] for the state's next scale, before any top-k/top-p filtering."""
    return _guided_logits(state, var, cfg, cache="peek")[0]


@torch.no_grad()
def scale_step(
    state: GenerationState,
    var: VAR,
    vqvae: VQVAE,
    *,
    cfg: float = 1.5,
    top_k: int = 0,
    top_p: float = 0.0,
    more_smooth: bool = False,
    forced: ForcedTokens | None = None,
) -> GenerationState:
    """Sample one scale and return the next state; `state` itself is left unchanged.

    `forced` teacher-forces known tokens (zero-shot in-/out-painting of the paper's Fig. 8). Every
    position is still sampled first, so the random stream is the same as without forcing.
    """
    _check_compatible(var, vqvae)
    logits, kv_cache = _guided_logits(state, var, cfg, cache="extend")
    generator = _restore_generator(state.rng_state, var.device)
    scale_index, batch = state.scale_index, state.batch_size
    pn = state.patch_nums[scale_index]
    progress = scale_progress(scale_index, len(state.patch_nums))
    codebook = vqvae.quantize.embedding

    filtered = filter_top_k_top_p(logits, top_k, top_p)
    indices = sample_tokens(filtered, generator)[:, :, 0]
    if forced is not None:
        indices = torch.where(forced.known, forced.indices, indices)
    if more_smooth:
        # Visualisation-only smoothing: a soft codebook mixture instead of the sampled token.
        soft = gumbel_softmax(
            filtered.mul(1 + progress), smoothing_temperature(progress), generator
        )
        h_BlC = soft.to(codebook.weight.dtype) @ codebook.weight.unsqueeze(0)
        if forced is not None:
            h_BlC = torch.where(forced.known.unsqueeze(-1), codebook(forced.indices), h_BlC)
    else:
        h_BlC = codebook(indices)
    h_BChw = h_BlC.transpose(1, 2).reshape(batch, -1, pn, pn)
    f_hat = vqvae.quantize.add_scale(state.f_hat, h_BChw, scale_index, state.patch_nums)
    is_last = scale_index == len(state.patch_nums) - 1
    # VAR conditions the next scale on f_hat area-downsampled to that scale's size.
    next_scale_input = (
        None if is_last else area_downsample(f_hat, state.patch_nums[scale_index + 1])
    )
    return replace(
        state,
        scale_index=scale_index + 1,
        f_hat=f_hat,
        next_scale_input=next_scale_input,
        token_maps=(*state.token_maps, indices),
        kv_cache=kv_cache,
        rng_state=None if generator is None else generator.get_state(),
    )


@torch.no_grad()
def state_to_image(vqvae: VQVAE, state: GenerationState) -> torch.Tensor:
    """Decode the state's f_hat (complete or partial) to an image in [0, 1]."""
    return vqvae.latent_to_image(state.f_hat).add(1).mul(0.5)


@torch.no_grad()
def generate(
    var: VAR,
    vqvae: VQVAE,
    labels: torch.Tensor | int | None,
    *,
    batch_size: int | None = None,
    seed: int | None = None,
    cfg: float = 1.5,
    top_k: int = 0,
    top_p: float = 0.0,
    more_smooth: bool = False,
    forced_per_scale: Sequence[ForcedTokens] | None = None,
) -> GenerationResult:
    """All scales in one call; equals the official `autoregressive_infer_cfg(B, label_B, g_seed,
    cfg, top_k, top_p, more_smooth)` token for token."""
    state = start(var, labels, batch_size=batch_size, seed=seed)
    while not state.is_complete:
        forced = None if forced_per_scale is None else forced_per_scale[state.scale_index]
        state = scale_step(
            state,
            var,
            vqvae,
            cfg=cfg,
            top_k=top_k,
            top_p=top_p,
            more_smooth=more_smooth,
            forced=forced,
        )
    return GenerationResult(image=state_to_image(vqvae, state), state=state)
