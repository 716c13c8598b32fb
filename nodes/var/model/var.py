"""The VAR transformer (Tian et al. 2024, Sec. 3.2 and 4): a GPT-2-style decoder with adaptive
layer norm conditioned on the class, predicting every token of scale k in parallel from all
tokens of scales < k ("next-scale prediction").

Attribute and buffer names follow the official state-dict layout so that released checkpoints
load strictly. The module is inference-only: no dropout, drop-path or label dropping.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

# One (key, value) pair per block, each [N, heads, tokens so far, head_dim].
KVCache = tuple[tuple[torch.Tensor, torch.Tensor], ...]

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
        past: tuple[torch.Tensor, torch.Tensor] | None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Attend from x's tokens to `past` plus themselves; returns the output and the extended
        (key, value) pair as new tensors, leaving `past` untouched."""
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
        if past is not None:
            k = torch.cat((past[0], k), dim=2)
            v = torch.cat((past[1], v), dim=2)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_bias, scale=self.scale)
        return self.proj(out.transpose(1, 2).reshape(batch, length, channels)), (k, v)


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
        past: tuple[torch.Tensor, torch.Tensor] | None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        gamma1, gamma2, scale1, scale2, shift1, shift2 = self.modulation(block_condition)
        attn_out, kv = self.attn(self.norm(x).mul(scale1.add(1)).add_(shift1), attn_bias, past)
        x = x + attn_out.mul_(gamma1)
        x = x + self.ffn(self.norm(x).mul(scale2.add(1)).add_(shift2)).mul(gamma2)
        return x, kv


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
        kv_cache: KVCache,
    ) -> tuple[torch.Tensor, KVCache]:
        """Run the transformer and the head; returns float32 logits and the extended KV cache."""
        block_condition = self.block_condition(condition)
        new_cache = []
        for i, block in enumerate(self.blocks):
            x, kv = block(x, block_condition, attn_bias, kv_cache[i] if kv_cache else None)
            new_cache.append(kv)
        logits = self.head(self.head_nm(x, condition)).float()
        return logits, tuple(new_cache)

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
        logits, _ = self.transformer_logits(x, condition, attn_bias, kv_cache=())
        return logits
