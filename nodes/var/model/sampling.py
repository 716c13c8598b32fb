"""Token sampling primitives for VAR inference (Tian et al. 2024), matching the official sampler.

Every function here is written so that, given the same `torch.Generator` state, it consumes random
numbers in exactly the order and shape of the official implementation. Bit-level agreement matters:
the top-p filter compares a float32 cumulative sum against `1 - top_p`, and near that boundary a
different reduction order keeps one vocabulary entry more or fewer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def guidance_strength(cfg: float, scale_index: int, num_scales: int) -> float:
    """Linearly ramped CFG weight t = cfg * k / (K - 1): no guidance at the 1x1 scale, full at the last."""
    return cfg * scale_progress(scale_index, num_scales)


def scale_progress(scale_index: int, num_scales: int) -> float:
    """Position of a scale in [0, 1]; it drives the CFG ramp, the smoothing temperature and phi selection."""
    return scale_index / (num_scales - 1) if num_scales > 1 else 0.0


def classifier_free_guidance(logits_2BlV: torch.Tensor, t: float) -> torch.Tensor:
    """Mix conditional rows [:B] and null-class rows [B:] as (1 + t) * cond - t * uncond.

    The batch holds all conditional rows first, then all unconditional rows (not interleaved).
    The expression is kept in exactly this form because it is what the golden logits were made with.
    """
    batch = logits_2BlV.shape[0] // 2
    return (1 + t) * logits_2BlV[:batch] - t * logits_2BlV[batch:]


def filter_top_k_top_p(
    logits_BlV: torch.Tensor, top_k: int = 0, top_p: float = 0.0
) -> torch.Tensor:
    """Return a copy of the logits with entries outside the top-k / nucleus set to -inf.

    Top-k keeps every entry that is >= the k-th largest value, so ties at the threshold survive.
    Top-p runs on the already top-k-filtered logits: sorted ascending, entries whose cumulative
    probability is <= 1 - top_p are dropped, and the single most likely entry is always kept.
    """
    filtered = logits_BlV
    if top_k > 0:
        kth_largest = filtered.topk(top_k, dim=-1, largest=True, sorted=True).values[..., -1:]
        filtered = filtered.masked_fill(filtered < kth_largest, -torch.inf)
    if top_p > 0:
        ascending, order = filtered.sort(dim=-1, descending=False)
        drop_sorted = ascending.softmax(dim=-1).cumsum(dim=-1) <= (1 - top_p)
        drop_sorted[..., -1:] = False
        drop = drop_sorted.scatter(drop_sorted.ndim - 1, order, drop_sorted)
        filtered = filtered.masked_fill(drop, -torch.inf)
    return filtered


def sample_tokens(
    filtered_logits_BlV: torch.Tensor,
    generator: torch.Generator | None,
    num_samples: int = 1,
    replacement: bool = True,
) -> torch.Tensor:
    """Draw token ids of shape [B, l, num_samples] from softmax(logits).

    The draw is one `torch.multinomial` call over the flattened [B*l, V] matrix; drawing row by row
    would consume the generator differently and give other tokens.
    """
    batch, length, vocab = filtered_logits_BlV.shape
    probs = filtered_logits_BlV.softmax(dim=-1).view(-1, vocab)
    drawn = torch.multinomial(
        probs, num_samples=num_samples, replacement=replacement, generator=generator
    )
    return drawn.view(batch, length, num_samples)


def gumbel_softmax(
    logits: torch.Tensor, tau: float, generator: torch.Generator | None
) -> torch.Tensor:
    """Soft Gumbel-softmax sample; the noise is one exponential draw of the logits' full shape."""
    exponential = torch.empty_like(logits, memory_format=torch.legacy_contiguous_format)
    gumbels = -exponential.exponential_(generator=generator).log()
    return F.softmax((logits + gumbels) / tau, dim=-1)


def smoothing_temperature(progress: float) -> float:
    """Gumbel temperature for `more_smooth`, annealed over scales as in MaskGIT."""
    return max(0.27 * (1 - progress * 0.95), 0.005)
