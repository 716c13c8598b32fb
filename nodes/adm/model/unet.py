"""The ADM U-Net and its encoder-half noisy classifier (Dhariwal & Nichol 2021, sec. 3 and 4).

Written from the paper and from the layout of openai/guided-diffusion's released checkpoints:
module and parameter names are theirs, so those state dicts load as they are. The network is a
DDPM U-Net (Ho et al. 2020) with the ADM changes: attention at several resolutions with a fixed
number of channels per head, BigGAN residual blocks for up- and downsampling
(``resblock_updown``), and adaptive group normalisation (``use_scale_shift_norm``:
GroupNorm(h) * (1 + scale) + shift, the scale and shift projected from the timestep and class
embedding). The classifier is the U-Net's downsampling half plus the middle block, pooled by
attention (CLIP's attention pool) into class logits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

GROUPS = 32


@dataclass(frozen=True)
class ADMConfig:
    """What builds an ADM network. Most of it is read off a checkpoint (see ``config.py``);
    the attention heads are not stored in one and come from the loader's inputs."""

    in_channels: int = 3
    model_channels: int = 128
    out_channels: int = 6
    num_res_blocks: int = 2
    #: channels of level l are int(channel_mult[l] * model_channels); the 512px models use 0.5
    channel_mult: tuple[float, ...] = (1, 2, 4, 8)
    #: downsampling rates (1, 2, 4, ...) whose levels have attention blocks
    attention_ds: frozenset[int] = field(default_factory=frozenset)
    #: channels per attention head; 0: use num_heads heads instead
    num_head_channels: int = 64
    num_heads: int = 1
    #: heads of the decoder's attention when num_head_channels is 0 (guided-diffusion's
    #: num_heads_upsample); 0 means num_heads
    num_heads_upsample: int = 0
    use_scale_shift_norm: bool = True
    resblock_updown: bool = True
    #: class-conditional (label_emb) when set
    num_classes: int | None = None
    #: QKVAttention (split q, k, v before the heads) instead of the legacy order
    new_attention_order: bool = False
    #: classifier only: "attention" (AttentionPool2d) or "adaptive" (mean pool, 1x1 conv)
    pool: str = "attention"
    #: classifier only: the resolution its attention pool was built for (None: any)
    image_size: int | None = None

    @property
    def time_embed_dim(self) -> int:
        return 4 * self.model_channels

    def level_channels(self, level: int) -> int:
        return int(self.channel_mult[level] * self.model_channels)

    @property
    def learn_sigma(self) -> bool:
        """Whether the U-Net also predicts its variance (twice the input's channels out)."""
        return self.out_channels == 2 * self.in_channels

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.channel_mult) - 1)


def timestep_embedding(timesteps: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding [cos(t f), sin(t f)] with f = max_period^(-i / (dim / 2))
    (Vaswani et al. 2017, as DDPM feeds the timestep)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
    args = timesteps[:, None].float() * freqs.to(timesteps.device)[None]
    embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        embedding = torch.cat([embedding, torch.zeros_like(embedding[:, :1])], dim=-1)
    return embedding


class GroupNorm32(nn.GroupNorm):
    """GroupNorm evaluated in float32 whatever the model's dtype (half-precision statistics of
    large activations lose too much)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float()).type(x.dtype)


def norm(channels: int) -> GroupNorm32:
    return GroupNorm32(GROUPS, channels)


class Downsample(nn.Module):
    def __init__(self, channels: int, use_conv: bool) -> None:
        super().__init__()
        self.op: nn.Module = (nn.Conv2d(channels, channels, 3, stride=2, padding=1) if use_conv
                              else nn.AvgPool2d(2, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class Upsample(nn.Module):
    def __init__(self, channels: int, use_conv: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1) if use_conv else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        return x if self.conv is None else self.conv(x)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, the embedding added in between (or, with scale-shift norm,
    applied as GroupNorm(h) * (1 + scale) + shift); optionally resampling both paths (BigGAN)."""

    def __init__(self, channels: int, emb_channels: int, out_channels: int | None = None,
                 scale_shift: bool = False, up: bool = False, down: bool = False) -> None:
        super().__init__()
        out = out_channels or channels
        self.scale_shift = scale_shift
        self.in_layers = nn.Sequential(norm(channels), nn.SiLU(), nn.Conv2d(channels, out, 3, padding=1))
        self.updown = up or down
        resample: type[nn.Module] | None = Upsample if up else Downsample if down else None
        self.h_upd = resample(channels, False) if resample else nn.Identity()
        self.x_upd = resample(channels, False) if resample else nn.Identity()
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, 2 * out if scale_shift else out))
        self.out_layers = nn.Sequential(norm(out), nn.SiLU(), nn.Dropout(0.0), nn.Conv2d(out, out, 3, padding=1))
        self.skip_connection = nn.Identity() if out == channels else nn.Conv2d(channels, out, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        if self.updown:
            h = self.in_layers[:-1](x)
            h = self.in_layers[-1](self.h_upd(h))
            x = self.x_upd(x)
        else:
            h = self.in_layers(x)
        emb_out = self.emb_layers(emb).type(h.dtype)[..., None, None]
        if self.scale_shift:
            scale, shift = emb_out.chunk(2, dim=1)
            h = self.out_layers[0](h) * (1 + scale) + shift
            h = self.out_layers[1:](h)
        else:
            h = self.out_layers(h + emb_out)
        return self.skip_connection(x) + h


def qkv_attention(qkv: torch.Tensor, heads: int, legacy: bool) -> torch.Tensor:
    """Softmax attention over positions of a (B, 3 * heads * C, T) projection. The legacy order
    (guided-diffusion's QKVAttentionLegacy) splits the channels into heads first and then into
    q, k, v; the new order splits q, k, v first. Scores are softmaxed in float32."""
    batch, width, length = qkv.shape
    ch = width // (3 * heads)
    if legacy:
        q, k, v = qkv.reshape(batch * heads, 3 * ch, length).split(ch, dim=1)
    else:
        q, k, v = (t.reshape(batch * heads, ch, length) for t in qkv.chunk(3, dim=1))
    scale = ch ** -0.25  # on q and k each: steadier in fp16 than dividing the product
    weight = torch.einsum("bct,bcs->bts", q * scale, k * scale)
    weight = torch.softmax(weight.float(), dim=-1).type(weight.dtype)
    return torch.einsum("bts,bcs->bct", weight, v).reshape(batch, -1, length)


def heads_for(channels: int, config: ADMConfig, upsample: bool = False) -> int:
    if config.num_head_channels > 0:
        if channels % config.num_head_channels:
            raise ValueError(f"{channels} attention channels are not a whole number of heads of "
                             f"{config.num_head_channels} channels")
        return channels // config.num_head_channels
    return (config.num_heads_upsample or config.num_heads) if upsample else config.num_heads


class AttentionBlock(nn.Module):
    """Self-attention over all spatial positions, residual."""

    def __init__(self, channels: int, heads: int, legacy: bool) -> None:
        super().__init__()
        self.heads, self.legacy = heads, legacy
        self.norm = norm(channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj_out = nn.Conv1d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, *spatial = x.shape
        x = x.reshape(b, c, -1)
        h = self.proj_out(qkv_attention(self.qkv(self.norm(x)), self.heads, self.legacy))
        return (x + h).reshape(b, c, *spatial)


class AttentionPool2d(nn.Module):
    """CLIP's attention pooling: the mean position, prepended to the positions with a learned
    positional embedding, attends to all of them; its output is the result."""

    def __init__(self, side: int, channels: int, head_channels: int, out_channels: int) -> None:
        super().__init__()
        self.positional_embedding = nn.Parameter(torch.zeros(channels, side**2 + 1))
        self.qkv_proj = nn.Conv1d(channels, 3 * channels, 1)
        self.c_proj = nn.Conv1d(channels, out_channels, 1)
        self.heads = channels // head_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, *_ = x.shape
        x = x.reshape(b, c, -1)
        x = torch.cat([x.mean(dim=-1, keepdim=True), x], dim=-1)
        x = x + self.positional_embedding[None].to(x.dtype)
        x = self.c_proj(qkv_attention(self.qkv_proj(x), self.heads, legacy=False))
        return x[:, :, 0]


class Stage(nn.ModuleList):
    """One entry of input_blocks / output_blocks: layers applied in order, the residual blocks
    given the embedding too."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        for layer in self:
            x = layer(x, emb) if isinstance(layer, ResBlock) else layer(x)
        return x


class _Trunk(nn.Module):
    """The time embedding, the downsampling path and the middle block, shared by both nets."""

    def __init__(self, config: ADMConfig) -> None:
        super().__init__()
        self.config = config
        c, emb = config, config.time_embed_dim
        self.time_embed = nn.Sequential(nn.Linear(c.model_channels, emb), nn.SiLU(), nn.Linear(emb, emb))
        ch = c.level_channels(0)
        self.input_blocks = nn.ModuleList([Stage([nn.Conv2d(c.in_channels, ch, 3, padding=1)])])
        self.skip_channels = [ch]
        ds = 1
        for level in range(len(c.channel_mult)):
            for _ in range(c.num_res_blocks):
                out = c.level_channels(level)
                layers: list[nn.Module] = [ResBlock(ch, emb, out, c.use_scale_shift_norm)]
                ch = out
                if ds in c.attention_ds:
                    layers.append(AttentionBlock(ch, heads_for(ch, c), not c.new_attention_order))
                self.input_blocks.append(Stage(layers))
                self.skip_channels.append(ch)
            if level != len(c.channel_mult) - 1:
                down = (ResBlock(ch, emb, ch, c.use_scale_shift_norm, down=True) if c.resblock_updown
                        else Downsample(ch, use_conv=True))
                self.input_blocks.append(Stage([down]))
                self.skip_channels.append(ch)
                ds *= 2
        self.middle_block = Stage([
            ResBlock(ch, emb, ch, c.use_scale_shift_norm),
            AttentionBlock(ch, heads_for(ch, c), not c.new_attention_order),
            ResBlock(ch, emb, ch, c.use_scale_shift_norm),
        ])
        self.trunk_channels, self.trunk_ds = ch, ds

    def embed(self, timesteps: torch.Tensor, batch: int) -> torch.Tensor:
        if timesteps.ndim == 0:
            timesteps = timesteps.expand(batch)
        weight = self.time_embed[0].weight
        return self.time_embed(timestep_embedding(timesteps, self.config.model_channels).to(weight.dtype))

    @property
    def device(self) -> torch.device:
        return self.time_embed[0].weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.time_embed[0].weight.dtype


class UNetModel(_Trunk):
    """The ADM diffusion U-Net: eps (and, with learned sigma, the variance interpolation v in
    [-1, 1], Nichol & Dhariwal 2021 eq. 15) for x_t at timestep t, optionally of class y."""

    def __init__(self, config: ADMConfig) -> None:
        super().__init__(config)
        c, emb = config, config.time_embed_dim
        if c.num_classes is not None:
            self.label_emb = nn.Embedding(c.num_classes, emb)
        skips = list(self.skip_channels)
        ch, ds = self.trunk_channels, self.trunk_ds
        self.output_blocks = nn.ModuleList()
        for level in reversed(range(len(c.channel_mult))):
            for i in range(c.num_res_blocks + 1):
                out = c.level_channels(level)
                layers: list[nn.Module] = [ResBlock(ch + skips.pop(), emb, out, c.use_scale_shift_norm)]
                ch = out
                if ds in c.attention_ds:
                    layers.append(AttentionBlock(ch, heads_for(ch, c, upsample=True), not c.new_attention_order))
                if level and i == c.num_res_blocks:
                    layers.append(ResBlock(ch, emb, ch, c.use_scale_shift_norm, up=True) if c.resblock_updown
                                  else Upsample(ch, use_conv=True))
                    ds //= 2
                self.output_blocks.append(Stage(layers))
        self.out = nn.Sequential(norm(ch), nn.SiLU(), nn.Conv2d(c.level_channels(0), c.out_channels, 3, padding=1))

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if (y is None) != (self.config.num_classes is None):
            raise ValueError("class labels go with a class-conditional model and only with it")
        emb = self.embed(timesteps, x.shape[0])
        if y is not None:
            emb = emb + self.label_emb(y)
        h, skips = x.type(self.dtype), []
        for block in self.input_blocks:
            h = block(h, emb)
            skips.append(h)
        h = self.middle_block(h, emb)
        for block in self.output_blocks:
            h = block(torch.cat([h, skips.pop()], dim=1), emb)
        return self.out(h).type(x.dtype)


class EncoderUNetModel(_Trunk):
    """The noisy classifier p_phi(y | x_t, t): the U-Net's encoder half, then a pooled head."""

    def __init__(self, config: ADMConfig) -> None:
        super().__init__(config)
        c, ch = config, self.trunk_channels
        if c.pool == "attention":
            if c.image_size is None or c.num_head_channels <= 0:
                raise ValueError("an attention-pooled classifier needs its image size and head channels")
            side = c.image_size // self.trunk_ds
            self.out = nn.Sequential(norm(ch), nn.SiLU(), AttentionPool2d(side, ch, c.num_head_channels, c.out_channels))
        elif c.pool == "adaptive":
            self.out = nn.Sequential(norm(ch), nn.SiLU(), nn.AdaptiveAvgPool2d((1, 1)),
                                     nn.Conv2d(ch, c.out_channels, 1), nn.Flatten())
        else:
            raise ValueError(f"classifier pool {c.pool!r} is not supported (attention or adaptive)")

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        emb = self.embed(timesteps, x.shape[0])
        h = x.type(self.dtype)
        for block in self.input_blocks:
            h = block(h, emb)
        return self.out(self.middle_block(h, emb)).type(x.dtype)
