"""The VAR tokenizer: a VQGAN-style convolutional encoder/decoder (the vq-f16 layout of latent
diffusion) around the multi-scale residual quantizer (Tian et al. 2024, Sec. 3.2).

Attribute names mirror the official state-dict keys (`encoder.down.<i>.block.<j>.conv1`, ...).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .quantizer import MultiScaleQuantizer, PhiSharing, TokenMaps

RELEASED_PATCH_NUMS_256 = (1, 2, 3, 4, 5, 6, 8, 10, 13, 16)


@dataclass(frozen=True)
class VQVAEConfig:
    vocab_size: int = 4096
    z_channels: int = 32
    ch: int = 160
    ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4)
    num_res_blocks: int = 2
    image_channels: int = 3
    attn_in_lowest_level: bool = True
    attn_in_mid: bool = True
    quant_conv_kernel: int = 3
    phi_sharing: PhiSharing = PhiSharing.PARTIAL
    phi_count: int = 4
    phi_residual_ratio: float = 0.5
    patch_nums: tuple[int, ...] = RELEASED_PATCH_NUMS_256


def group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=32, num_channels=channels, eps=1e-6, affine=True)


def silu_of_temporary(x: torch.Tensor) -> torch.Tensor:
    """SiLU of a tensor nothing else holds (a norm's output): in place when no gradient is being
    recorded. At 256 px an activation is tens of MB, and a fresh buffer per layer is mostly page
    faults; training still gets the out-of-place op that autograd needs."""
    return F.silu(x, inplace=not torch.is_grad_enabled())


class ResnetBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.norm1 = group_norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=1, padding=1)
        self.norm2 = group_norm(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, stride=1, padding=1)
        self.nin_shortcut = (
            nn.Conv2d(in_channels, out_channels, kernel_size=1)
            if in_channels != out_channels
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(silu_of_temporary(self.norm1(x)))
        h = self.conv2(silu_of_temporary(self.norm2(h)))
        return self.nin_shortcut(x) + h


class AttnBlock(nn.Module):
    """Single-head spatial self-attention with one fused 1x1 `qkv` convolution."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = group_norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, kernel_size=1)
        self.proj_out = nn.Conv2d(channels, channels, kernel_size=1)
        self.scale = channels**-0.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(batch, 3, channels, height * width).unbind(1)
        weights = torch.bmm(q.permute(0, 2, 1).contiguous(), k.contiguous()).mul_(self.scale)
        weights = weights.softmax(dim=2)  # [B, query, key]
        out = torch.bmm(v.contiguous(), weights.permute(0, 2, 1).contiguous())
        return x + self.proj_out(out.view(batch, channels, height, width))


class Downsample(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Asymmetric (right/bottom) padding so that the stride-2 conv exactly halves even sizes.
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, stride=1, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class ResolutionBlocks(nn.Module):
    """Residual blocks at one resolution, each followed by attention at the lowest resolution."""

    def __init__(
        self, channels_in: int, channels_out: int, num_blocks: int, with_attn: bool
    ) -> None:
        super().__init__()
        self.block = nn.ModuleList(
            ResnetBlock(channels_in if i == 0 else channels_out, channels_out)
            for i in range(num_blocks)
        )
        self.attn = nn.ModuleList(
            AttnBlock(channels_out) for _ in range(num_blocks if with_attn else 0)
        )

    def run_blocks(self, h: torch.Tensor) -> torch.Tensor:
        for i, block in enumerate(self.block):
            h = block(h)
            if len(self.attn):
                h = self.attn[i](h)
        return h


class EncoderLevel(ResolutionBlocks):
    def __init__(
        self, channels_in: int, channels_out: int, num_blocks: int, with_attn: bool, halve: bool
    ) -> None:
        super().__init__(channels_in, channels_out, num_blocks, with_attn)
        self.downsample = Downsample(channels_out) if halve else None

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = self.run_blocks(h)
        return h if self.downsample is None else self.downsample(h)


class DecoderLevel(ResolutionBlocks):
    def __init__(
        self, channels_in: int, channels_out: int, num_blocks: int, with_attn: bool, double: bool
    ) -> None:
        super().__init__(channels_in, channels_out, num_blocks, with_attn)
        self.upsample = Upsample(channels_out) if double else None

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = self.run_blocks(h)
        return h if self.upsample is None else self.upsample(h)


class MidBlock(nn.Module):
    def __init__(self, channels: int, with_attn: bool) -> None:
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels)
        self.attn_1 = AttnBlock(channels) if with_attn else nn.Identity()
        self.block_2 = ResnetBlock(channels, channels)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(h)))


class Encoder(nn.Module):
    def __init__(self, config: VQVAEConfig) -> None:
        super().__init__()
        ch, levels = config.ch, len(config.ch_mult)
        self.conv_in = nn.Conv2d(config.image_channels, ch, kernel_size=3, stride=1, padding=1)
        self.down = nn.ModuleList()
        channels = ch
        for level, mult in enumerate(config.ch_mult):
            is_lowest = level == levels - 1
            self.down.append(
                EncoderLevel(
                    channels,
                    ch * mult,
                    config.num_res_blocks,
                    with_attn=is_lowest and config.attn_in_lowest_level,
                    halve=not is_lowest,
                )
            )
            channels = ch * mult
        self.mid = MidBlock(channels, config.attn_in_mid)
        self.norm_out = group_norm(channels)
        self.conv_out = nn.Conv2d(channels, config.z_channels, kernel_size=3, stride=1, padding=1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(image)
        for level in self.down:
            h = level(h)
        h = self.mid(h)
        return self.conv_out(silu_of_temporary(self.norm_out(h)))


class Decoder(nn.Module):
    def __init__(self, config: VQVAEConfig) -> None:
        super().__init__()
        ch, levels = config.ch, len(config.ch_mult)
        channels = ch * config.ch_mult[-1]
        self.conv_in = nn.Conv2d(config.z_channels, channels, kernel_size=3, stride=1, padding=1)
        self.mid = MidBlock(channels, config.attn_in_mid)
        # `up[level]` is indexed by resolution level (0 = full size) but runs from the lowest one up.
        ups: list[DecoderLevel] = []
        for level in reversed(range(levels)):
            channels_out = ch * config.ch_mult[level]
            level_blocks = DecoderLevel(
                channels,
                channels_out,
                config.num_res_blocks + 1,
                with_attn=level == levels - 1 and config.attn_in_lowest_level,
                double=level != 0,
            )
            ups.insert(0, level_blocks)
            channels = channels_out
        self.up = nn.ModuleList(ups)
        self.norm_out = group_norm(channels)
        self.conv_out = nn.Conv2d(
            channels, config.image_channels, kernel_size=3, stride=1, padding=1
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.conv_in(z))
        for level in reversed(self.up):
            h = level(h)
        return self.conv_out(silu_of_temporary(self.norm_out(h)))


class VQVAE(nn.Module):
    """Image <-> multi-scale token maps. Images are in [-1, 1]."""

    def __init__(self, config: VQVAEConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        self.quantize = MultiScaleQuantizer(
            config.vocab_size,
            config.z_channels,
            config.phi_sharing,
            config.phi_count,
            config.phi_residual_ratio,
        )
        padding = config.quant_conv_kernel // 2
        z = config.z_channels
        self.quant_conv = nn.Conv2d(z, z, config.quant_conv_kernel, stride=1, padding=padding)
        self.post_quant_conv = nn.Conv2d(z, z, config.quant_conv_kernel, stride=1, padding=padding)

    @property
    def dtype(self) -> torch.dtype:
        return self.quant_conv.weight.dtype

    def image_to_latent(self, image: torch.Tensor) -> torch.Tensor:
        """The continuous latent f that the quantizer explains: quant_conv(encoder(image))."""
        return self.quant_conv(self.encoder(image.to(self.dtype)))

    def latent_to_image(self, f_hat: torch.Tensor) -> torch.Tensor:
        """Decode a (quantized) latent to an image clamped to [-1, 1]."""
        return self.decoder(self.post_quant_conv(f_hat.to(self.dtype))).clamp(-1, 1)


@torch.no_grad()
def quantize_image(
    vqvae: VQVAE, image: torch.Tensor, patch_nums: Sequence[int] | None = None
) -> TokenMaps:
    """Image [B, 3, H, W] in [-1, 1] -> per-scale token ids and cumulative f_hat (Alg. 1).

    `patch_nums` defaults to the VQVAE config's schedule; its last entry must be the latent
    size (H / 16 for the released ch_mult).
    """
    schedule = tuple(patch_nums) if patch_nums is not None else vqvae.config.patch_nums
    return vqvae.quantize.latent_to_tokens(vqvae.image_to_latent(image), schedule)


@torch.no_grad()
def decode_token_maps(vqvae: VQVAE, indices: Sequence[torch.Tensor]) -> torch.Tensor:
    """Per-scale token ids [B, pn*pn] -> image in [-1, 1] (Alg. 2). The schedule is read off the
    token counts, since only the number of scales affects which phi each scale uses."""
    patch_nums = tuple(math.isqrt(idx.shape[1]) for idx in indices)
    return vqvae.latent_to_image(vqvae.quantize.tokens_to_f_hats(indices, patch_nums)[-1])
