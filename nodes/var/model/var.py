"""The VAR transformer (Tian et al. 2024, Sec. 3.2 and 4): a GPT-2-style decoder with adaptive
layer norm conditioned on the class, predicting every token of scale k in parallel from all
tokens of scales < k ("next-scale prediction").

Attribute and buffer names follow the official state-dict layout so that released checkpoints
load strictly. The module is inference-only: no dropout, drop-path or label dropping.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

# The learned attention temperature is capped at 100; the cap is the float32 value of log(100).
MAX_LOG_ATTN_SCALE = torch.tensor(100.0).log().item()


@dataclass(frozen=True)
class VARConfig:
    vocab_size: int = 4096
    z_channels: int = 32
    num_classes: int = 1000
    depth: int = 16
    embed_dim: int = 1024
    num_heads: int = 16
    mlp_hidden_dim: int = 4096
    patch_nums: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 8, 10, 13, 16)
    shared_adaln: bool = False
    attn_l2_norm: bool = True
    norm_eps: float = 1e-6

    @property
    def num_tokens(self) -> int:
        return sum(pn * pn for pn in self.patch_nums)

    @property
    def first_scale_tokens(self) -> int:
        return self.patch_nums[0] ** 2

    def token_span(self, scale_index: int) -> tuple[int, int]:
        """[begin, end) of a scale's tokens in the flattened coarse-to-fine sequence."""
        begin = sum(pn * pn for pn in self.patch_nums[:scale_index])
        return begin, begin + self.patch_nums[scale_index] ** 2


class KVArena:
    """Keys and values of every block for one generation, allocated once for the whole sequence.

    Generation appends each scale's keys and values; a :class:`KVCache` names the prefix a state
    owns. Appending writes in place only at the arena's end, where no other state has appended
    yet; resuming an older state first copies its prefix into a new arena (copy on write). So the
    scales of one run share one buffer per block (as the official cache grows in place), and every
    cached state still sees exactly its own keys and values however often it is resumed.
    """

    def __init__(self, keys: list[torch.Tensor], values: list[torch.Tensor]) -> None:
        # One [N, heads, total tokens, head_dim] buffer per block: separate allocations, each small
        # enough for the host allocator to recycle between runs.
        self.keys, self.values = keys, values
        self.filled = 0  # positions written so far

    @classmethod
    def empty(cls, config: VARConfig, batch: int, dtype: torch.dtype, device: torch.device) -> KVArena:
        shape = (batch, config.num_heads, config.num_tokens, config.embed_dim // config.num_heads)

        def buffers() -> list[torch.Tensor]:
            return [torch.empty(shape, dtype=dtype, device=device) for _ in range(config.depth)]

        return cls(buffers(), buffers())

    def copy_of_prefix(self, length: int) -> KVArena:
        def copies(buffers: list[torch.Tensor]) -> list[torch.Tensor]:
            out = [torch.empty_like(b) for b in buffers]
            for new, old in zip(out, buffers, strict=True):
                new[:, :, :length] = old[:, :, :length]
            return out

        arena = KVArena(copies(self.keys), copies(self.values))
        arena.filled = length
        return arena


class KVCache:
    """The first `length` positions of an arena: the keys and values of a state's finished scales
    (conditional rows, then null-class rows)."""

    __slots__ = ("arena", "length")

    def __init__(self, arena: KVArena, length: int) -> None:
        self.arena, self.length = arena, length

    def appendable(self) -> KVArena:
        """The arena to append to: this one if nothing was appended past the prefix, else a copy."""
        if self.arena.filled == self.length:
            return self.arena
        return self.arena.copy_of_prefix(self.length)

    @property
    def keys(self) -> tuple[torch.Tensor, ...]:
        """Per block [N, heads, length, head_dim], views into the arena."""
        return tuple(b[:, :, : self.length] for b in self.arena.keys)

    @property
    def values(self) -> tuple[torch.Tensor, ...]:
        return tuple(b[:, :, : self.length] for b in self.arena.values)

    @property
    def nbytes(self) -> int:
        """Bytes of the prefix (what the executor's cache accounts for a state)."""
        first = self.arena.keys[0]
        per_position = first[:, :, :1].numel() * first.element_size()
        return 2 * len(self.arena.keys) * per_position * self.length


class SelfAttention(nn.Module):
    zero_k_bias: torch.Tensor

    def __init__(self, embed_dim: int, num_heads: int, l2_norm: bool) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.l2_norm = l2_norm
        if l2_norm:
            # Cosine attention with a learned per-head temperature (log-parametrised).
            self.scale_mul_1H11 = nn.Parameter(torch.full((1, num_heads, 1, 1), math.log(4.0)))
            self.scale = 1.0
        else:
            # Older checkpoints without `scale_mul_1H11` use plain dot-product attention.
            self.scale = 0.25 / math.sqrt(self.head_dim)
        self.mat_qkv = nn.Linear(embed_dim, 3 * embed_dim, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(embed_dim))
        self.v_bias = nn.Parameter(torch.zeros(embed_dim))
        self.register_buffer("zero_k_bias", torch.zeros(embed_dim))  # keys carry no bias
        self.proj = nn.Linear(embed_dim, embed_dim)

    def forward(
        self,
        x: torch.Tensor,
        attn_bias: torch.Tensor | None,
        cache: tuple[torch.Tensor, torch.Tensor, int] | None,
    ) -> torch.Tensor:
        """Attend from x's tokens to themselves and, with `cache` = (key buffer, value buffer,
        start), to the buffers' first `start` positions; x's keys and values are written there."""
        batch, length, channels = x.shape
        bias = torch.cat((self.q_bias, self.zero_k_bias, self.v_bias))
        qkv = F.linear(x, self.mat_qkv.weight, bias).view(
            batch, length, 3, self.num_heads, self.head_dim
        )
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(dim=0)  # each [N, heads, length, head_dim]
        if self.l2_norm:
            temperature = self.scale_mul_1H11.clamp_max(MAX_LOG_ATTN_SCALE).exp()
            q = F.normalize(q, dim=-1).mul(temperature)
            k = F.normalize(k, dim=-1)
        if cache is not None:
            key_buffer, value_buffer, start = cache
            end = start + length
            key_buffer[:, :, start:end] = k
            value_buffer[:, :, start:end] = v
            k, v = key_buffer[:, :, :end], value_buffer[:, :, :end]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_bias, scale=self.scale)
        return self.proj(out.transpose(1, 2).reshape(batch, length, channels))


class FeedForward(nn.Module):
    def __init__(self, embed_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(embed_dim, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class AdaLNBlock(nn.Module):
    """Pre-norm transformer block whose LayerNorms are modulated by the class condition (AdaLN).

    The condition yields six vectors in the order gamma1, gamma2, scale1, scale2, shift1, shift2:
    x += gamma1 * attn(LN(x) * (1 + scale1) + shift1); x += gamma2 * ffn(LN(x) * (1 + scale2) + shift2).
    With shared AdaLN the six vectors come from one projection shared by all blocks (computed in
    `VAR.block_condition`) plus a learned per-block offset `ada_gss`.
    """

    def __init__(self, config: VARConfig) -> None:
        super().__init__()
        channels = config.embed_dim
        self.embed_dim = channels
        self.attn = SelfAttention(channels, config.num_heads, config.attn_l2_norm)
        self.ffn = FeedForward(channels, config.mlp_hidden_dim)
        self.norm = nn.LayerNorm(channels, eps=config.norm_eps, elementwise_affine=False)
        self.shared_adaln = config.shared_adaln
        if config.shared_adaln:
            self.ada_gss = nn.Parameter(torch.zeros(1, 1, 6, channels))
        else:
            self.ada_lin = nn.Sequential(nn.SiLU(), nn.Linear(channels, 6 * channels))

    def modulation(self, block_condition: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if self.shared_adaln:
            return (self.ada_gss + block_condition).unbind(2)
        return self.ada_lin(block_condition).view(-1, 1, 6, self.embed_dim).unbind(2)

    def forward(
        self,
        x: torch.Tensor,
        block_condition: torch.Tensor,
        attn_bias: torch.Tensor | None,
        cache: tuple[torch.Tensor, torch.Tensor, int] | None,
    ) -> torch.Tensor:
        gamma1, gamma2, scale1, scale2, shift1, shift2 = self.modulation(block_condition)
        attn_out = self.attn(self.norm(x).mul(scale1.add(1)).add_(shift1), attn_bias, cache)
        x = x + attn_out.mul_(gamma1)
        return x + self.ffn(self.norm(x).mul(scale2.add(1)).add_(shift2)).mul(gamma2)


class AdaLNHeadNorm(nn.Module):
    """Final LayerNorm before the classifier head, modulated by (scale, shift) from the class."""

    def __init__(self, embed_dim: int, eps: float) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.norm = nn.LayerNorm(embed_dim, eps=eps, elementwise_affine=False)
        self.ada_lin = nn.Sequential(nn.SiLU(), nn.Linear(embed_dim, 2 * embed_dim))

    def forward(self, x: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        scale, shift = self.ada_lin(condition).view(-1, 1, 2, self.embed_dim).unbind(2)
        return self.norm(x).mul(scale.add(1)).add_(shift)


class SharedAdaLin(nn.Linear):
    """One condition projection for all blocks (the `shared_aln` variant, e.g. VAR-d36 at 512 px)."""

    def forward(self, condition: torch.Tensor) -> torch.Tensor:
        return super().forward(condition).view(-1, 1, 6, self.out_features // 6)


def block_causal_bias(patch_nums: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale level of every token [1, L] and the additive teacher-forcing mask [1, 1, L, L]:
    a token sees every token of its own and coarser scales (Sec. 3.2)."""
    levels = torch.cat([torch.full((pn * pn,), i) for i, pn in enumerate(patch_nums)])
    query_level, key_level = levels.view(-1, 1), levels.view(1, -1)
    bias = torch.where(query_level >= key_level, 0.0, -torch.inf)
    return levels.view(1, -1), bias.view(1, 1, len(levels), len(levels))


class VAR(nn.Module):
    lvl_1L: torch.Tensor  # [1, L] scale level of every token
    attn_bias_for_masking: torch.Tensor  # [1, 1, L, L] block-causal additive mask

    def __init__(self, config: VARConfig) -> None:
        super().__init__()
        self.config = config
        channels = config.embed_dim
        self.word_embed = nn.Linear(config.z_channels, channels)
        # The extra last class (index num_classes) is the null class used for CFG.
        self.class_emb = nn.Embedding(config.num_classes + 1, channels)
        self.pos_start = nn.Parameter(torch.zeros(1, config.first_scale_tokens, channels))
        self.pos_1LC = nn.Parameter(torch.zeros(1, config.num_tokens, channels))
        self.lvl_embed = nn.Embedding(len(config.patch_nums), channels)
        self.shared_ada_lin = (
            nn.Sequential(nn.SiLU(), SharedAdaLin(channels, 6 * channels))
            if config.shared_adaln
            else None
        )
        self.blocks = nn.ModuleList(AdaLNBlock(config) for _ in range(config.depth))
        self.head_nm = AdaLNHeadNorm(channels, config.norm_eps)
        self.head = nn.Linear(channels, config.vocab_size)
        levels, bias = block_causal_bias(config.patch_nums)
        self.register_buffer("lvl_1L", levels)
        self.register_buffer("attn_bias_for_masking", bias)

    @property
    def dtype(self) -> torch.dtype:
        return self.head.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.head.weight.device

    def level_position(self, begin: int, end: int) -> torch.Tensor:
        """Level (scale) embedding plus absolute position embedding of tokens [begin, end)."""
        return self.lvl_embed(self.lvl_1L[:, begin:end]) + self.pos_1LC[:, begin:end]

    def start_tokens(self, condition: torch.Tensor) -> torch.Tensor:
        """Tokens of the first scale: the class embedding acts as start-of-sequence token."""
        batch, first = condition.shape[0], self.config.first_scale_tokens
        sos = condition.unsqueeze(1).expand(batch, first, -1) + self.pos_start.expand(
            batch, first, -1
        )
        return sos + self.level_position(0, first)

    def scale_tokens(self, f_hat_at_scale: torch.Tensor, scale_index: int) -> torch.Tensor:
        """Tokens of scale k > 0: the f_hat of all coarser scales, area-downsampled to this scale."""
        batch, channels = f_hat_at_scale.shape[:2]
        words = f_hat_at_scale.reshape(batch, channels, -1).transpose(1, 2).to(self.dtype)
        return self.word_embed(words) + self.level_position(*self.config.token_span(scale_index))

    def block_condition(self, condition: torch.Tensor) -> torch.Tensor:
        return condition if self.shared_ada_lin is None else self.shared_ada_lin(condition)

    def transformer_logits(
        self,
        x: torch.Tensor,
        condition: torch.Tensor,
        attn_bias: torch.Tensor | None,
        kv_cache: KVCache | None,
        *,
        cache: Literal["extend", "peek", "off"] = "extend",
    ) -> tuple[torch.Tensor, KVCache | None]:
        """Run the transformer and the head; returns float32 logits and the KV cache after x.

        "extend": x attends to `kv_cache`'s positions and itself, and the returned cache holds x's
        keys and values too. "peek": the same logits, but the cache is not extended (returns None;
        x's keys and values only pass through the arena's free tail). "off" (teacher forcing): no
        cache; `attn_bias` alone says what each token sees.
        """
        block_condition = self.block_condition(condition)
        arena, start = None, 0
        if cache != "off":
            if kv_cache is None:
                arena = KVArena.empty(self.config, x.shape[0], self.dtype, x.device)
            else:
                arena, start = kv_cache.appendable(), kv_cache.length
        for i, block in enumerate(self.blocks):
            buffers = None if arena is None else (arena.keys[i], arena.values[i], start)
            x = block(x, block_condition, attn_bias, buffers)
        logits = self.head(self.head_nm(x, condition)).float()
        if arena is None or cache == "peek":
            return logits, None
        arena.filled = start + x.shape[1]
        return logits, KVCache(arena, arena.filled)

    def forward(self, labels: torch.Tensor, teacher_input: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits [B, L, V] for all scales at once under the block-causal mask.

        `teacher_input` is [B, L - pn_0^2, z_channels] from `MultiScaleQuantizer.teacher_forcing_input`.
        """
        condition = self.class_emb(labels)
        first = self.config.first_scale_tokens
        length = first + teacher_input.shape[1]
        batch = labels.shape[0]
        sos = condition.unsqueeze(1).expand(batch, first, -1) + self.pos_start.expand(
            batch, first, -1
        )
        x = torch.cat((sos, self.word_embed(teacher_input.to(self.dtype))), dim=1)
        x = x + self.level_position(0, length)
        attn_bias = self.attn_bias_for_masking[:, :, :length, :length]
        logits, _ = self.transformer_logits(x, condition, attn_bias, None, cache="off")
        return logits
