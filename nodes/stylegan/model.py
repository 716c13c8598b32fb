"""The StyleGAN2 generator (Karras et al., "Analyzing and Improving the Image Quality of
StyleGAN", 2020) as stylegan2-ada-pytorch names its weights, so its state dicts load strictly.

- :class:`MappingNetwork`: z (normalised to unit second moment), for a conditional model
  concatenated with the normalised embedding of the one-hot class, through ``num_layers``
  equalised-learning-rate layers (lr multiplier 0.01) to w, broadcast to one w per layer; it
  keeps ``w_avg``, the moving average of w seen in training, the centre of the truncation trick.
- :class:`SynthesisNetwork`: a learned 4x4 constant, then per resolution a block of two
  modulated 3x3 convolutions (the first upsampling 2x) with per-pixel noise, and a toRGB layer
  whose images are summed across resolutions after upsampling (the "skip" architecture, fig. 7b;
  "orig" keeps only the last toRGB, "resnet" adds a 1x1 upsampling skip path).
- Each convolution takes its own w, so ``ws`` has ``num_ws`` rows: two per block, the first
  block one, plus one for the last toRGB; a block's toRGB reads the w of the next block's first
  convolution. Truncation and style mixing act on those rows.

Everything runs in the dtype of the weights; the released models' fp16 blocks are a speed
choice of their training code and are computed in fp32 here.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from .ops import (
    bias_act,
    conv2d_resample,
    modulated_conv2d,
    normalize_2nd_moment,
    setup_filter,
    upsample2d,
)

ARCHITECTURES = ("orig", "skip", "resnet")
NOISE_MODES = ("const", "random", "none")


@dataclass(frozen=True)
class StyleGANConfig:
    """A generator's shape and the few settings its weights do not show.

    ``channels`` maps each block resolution to its width (the official ``channel_base // res``
    capped at ``channel_max``, read off the weights). ``lr_multiplier``, ``activation`` and
    ``conv_clamp`` come from a pickle's init arguments, or default to the official ones.
    """

    z_dim: int
    c_dim: int
    w_dim: int
    img_resolution: int
    img_channels: int
    channels: dict[int, int]
    mapping_layers: int = 8
    embed_features: int = 0
    layer_features: int = 0
    lr_multiplier: float = 0.01
    mapping_activation: str = "lrelu"
    has_w_avg: bool = True
    architecture: str = "skip"
    conv_clamp: float | None = None
    use_noise: bool = True
    resample_taps: tuple[float, ...] = field(default=(1, 3, 3, 1))

    @property
    def resolutions(self) -> list[int]:
        return [2**i for i in range(2, int(math.log2(self.img_resolution)) + 1)]

    @property
    def num_ws(self) -> int:
        return 2 * len(self.resolutions)  # 1 (first block) + 2 per later block + the last toRGB

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["channels"] = {str(k): v for k, v in self.channels.items()}
        data["resample_taps"] = list(self.resample_taps)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StyleGANConfig:
        data = dict(data)
        data["channels"] = {int(k): int(v) for k, v in data["channels"].items()}
        data["resample_taps"] = tuple(data.get("resample_taps", (1, 3, 3, 1)))
        return cls(**data)


class FullyConnected(nn.Module):
    """An equalised-learning-rate linear layer: weights stored as N(0, 1) / lr_multiplier and
    scaled by lr_multiplier / sqrt(fan_in) at run time (Karras et al. 2018, section 4.1)."""

    def __init__(self, in_features: int, out_features: int, activation: str = "linear",
                 lr_multiplier: float = 1.0, bias_init: float = 0.0) -> None:
        super().__init__()
        self.activation = activation
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init)))
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias.to(x.dtype)
        if self.bias_gain != 1:
            b = b * self.bias_gain
        if self.activation == "linear":
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return bias_act(x.matmul(w.t()), b, act=self.activation)


class MappingNetwork(nn.Module):
    """z (and class c) -> w, broadcast to ``num_ws`` rows; the truncation trick towards ``w_avg``."""

    def __init__(self, config: StyleGANConfig) -> None:
        super().__init__()
        c = config
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = c.z_dim, c.c_dim, c.w_dim, c.num_ws
        self.num_layers = c.mapping_layers
        embed = c.embed_features if c.c_dim else 0
        features = [c.z_dim + embed] + [c.layer_features] * (c.mapping_layers - 1) + [c.w_dim]
        if c.c_dim:
            self.embed = FullyConnected(c.c_dim, embed)
        for i in range(c.mapping_layers):
            layer = FullyConnected(features[i], features[i + 1], activation=c.mapping_activation,
                                   lr_multiplier=c.lr_multiplier)
            setattr(self, f"fc{i}", layer)
        if c.has_w_avg:
            self.register_buffer("w_avg", torch.zeros([c.w_dim]))

    def forward(self, z: torch.Tensor | None, c: torch.Tensor | None) -> torch.Tensor:
        """w for every layer, untruncated: [batch, num_ws, w_dim]."""
        parts = []
        if self.z_dim:
            assert z is not None
            parts.append(normalize_2nd_moment(z.to(torch.float32)))
        if self.c_dim:
            assert c is not None
            parts.append(normalize_2nd_moment(self.embed(c.to(torch.float32))))
        x = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]
        for i in range(self.num_layers):
            x = getattr(self, f"fc{i}")(x)
        return x.unsqueeze(1).repeat([1, self.num_ws, 1])

    def update_w_avg(self, w: torch.Tensor, beta: float) -> None:
        """Training: ``w_avg <- lerp(mean w, w_avg, beta)``, the moving average truncation uses."""
        self.w_avg.copy_(w.detach().mean(dim=0).lerp(self.w_avg, beta))


def truncate(ws: torch.Tensor, w_avg: torch.Tensor, psi: float, cutoff: int | None) -> torch.Tensor:
    """The truncation trick: ``w = w_avg + psi (w - w_avg)`` on the rows below ``cutoff`` (all
    rows when None); psi 1 leaves ws as they are, psi 0 gives the average image."""
    if psi == 1:
        return ws
    out = ws.clone()
    rows = slice(None) if cutoff is None else slice(0, cutoff)
    out[:, rows] = w_avg.to(ws.dtype).lerp(ws[:, rows], psi)
    return out


class SynthesisLayer(nn.Module):
    """A modulated 3x3 convolution (optionally upsampling 2x), noise, bias and leaky ReLU."""

    def __init__(self, in_channels: int, out_channels: int, config: StyleGANConfig,
                 resolution: int, up: int = 1) -> None:
        super().__init__()
        self.resolution, self.up = resolution, up
        self.use_noise = config.use_noise
        self.conv_clamp = config.conv_clamp
        self.register_buffer("resample_filter", setup_filter(config.resample_taps))
        self.affine = FullyConnected(config.w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 3, 3))
        if self.use_noise:
            self.register_buffer("noise_const", torch.randn(resolution, resolution))
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "random",
                generator: torch.Generator | None = None, fused: bool = True) -> torch.Tensor:
        styles = self.affine(w)
        noise = None
        if self.use_noise and noise_mode == "random":
            shape = [x.shape[0], 1, self.resolution, self.resolution]
            noise = torch.randn(shape, generator=generator).to(x.device, x.dtype)
            noise = noise * self.noise_strength
        elif self.use_noise and noise_mode == "const":
            noise = self.noise_const * self.noise_strength
        x = modulated_conv2d(x, self.weight, styles, noise=noise, up=self.up, padding=1,
                             resample_filter=self.resample_filter, flip_weight=self.up == 1,
                             fused=fused)
        return bias_act(x, self.bias.to(x.dtype), act="lrelu", clamp=self.conv_clamp)


class ToRGB(nn.Module):
    """A modulated (not demodulated) 1x1 convolution to the image channels."""

    def __init__(self, in_channels: int, config: StyleGANConfig) -> None:
        super().__init__()
        self.conv_clamp = config.conv_clamp
        self.affine = FullyConnected(config.w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn(config.img_channels, in_channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros([config.img_channels]))
        self.weight_gain = 1 / math.sqrt(in_channels)

    def forward(self, x: torch.Tensor, w: torch.Tensor, fused: bool = True) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, demodulate=False, fused=fused)
        return bias_act(x, self.bias.to(x.dtype), clamp=self.conv_clamp)


class SkipConv(nn.Module):
    """The resnet architecture's skip path: a 1x1 convolution after a 2x FIR upsampling."""

    def __init__(self, in_channels: int, out_channels: int, config: StyleGANConfig) -> None:
        super().__init__()
        self.register_buffer("resample_filter", setup_filter(config.resample_taps))
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 1, 1))
        self.weight_gain = 1 / math.sqrt(in_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = (self.weight * self.weight_gain).to(x.dtype)
        x = conv2d_resample(x, w, self.resample_filter, up=2, flip_weight=False)
        return x * math.sqrt(0.5)


class SynthesisBlock(nn.Module):
    """One resolution: (const | upsampling conv0), conv1, toRGB added to the upsampled image."""

    def __init__(self, in_channels: int, out_channels: int, config: StyleGANConfig,
                 resolution: int) -> None:
        super().__init__()
        self.in_channels, self.resolution = in_channels, resolution
        self.architecture = config.architecture
        self.is_last = resolution == config.img_resolution
        self.register_buffer("resample_filter", setup_filter(config.resample_taps))
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn(out_channels, resolution, resolution))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, config, resolution, up=2)
        self.conv1 = SynthesisLayer(out_channels, out_channels, config, resolution)
        self.num_conv = 1 if in_channels == 0 else 2
        self.has_torgb = self.is_last or self.architecture == "skip"
        if self.has_torgb:
            self.torgb = ToRGB(out_channels, config)
        if in_channels != 0 and self.architecture == "resnet":
            self.skip = SkipConv(in_channels, out_channels, config)

    def forward(self, x: torch.Tensor | None, img: torch.Tensor | None, ws: torch.Tensor,
                noise_mode: str, generator: torch.Generator | None,
                fused: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        w = iter(ws.unbind(dim=1))
        layer: dict[str, Any] = {"noise_mode": noise_mode, "generator": generator, "fused": fused}
        if x is None:
            x = self.const.unsqueeze(0).repeat([ws.shape[0], 1, 1, 1])
            x = self.conv1(x, next(w), **layer)
        elif self.architecture == "resnet":
            y = self.skip(x)
            x = self.conv0(x, next(w), **layer)
            x = self.conv1(x, next(w), **layer) * math.sqrt(0.5)  # gain sqrt(.5) after the act
            x = y + x
        else:
            x = self.conv0(x, next(w), **layer)
            x = self.conv1(x, next(w), **layer)
        if img is not None:
            img = upsample2d(img, self.resample_filter)
        if self.has_torgb:
            y = self.torgb(x, next(w), fused=fused).to(torch.float32)
            img = y if img is None else img + y
        return x, img


class SynthesisNetwork(nn.Module):
    """ws [batch, num_ws, w_dim] -> image [batch, channels, res, res], roughly in -1..1."""

    def __init__(self, config: StyleGANConfig) -> None:
        super().__init__()
        self.w_dim, self.num_ws = config.w_dim, config.num_ws
        self.resolutions = config.resolutions
        for res in self.resolutions:
            in_channels = config.channels[res // 2] if res > 4 else 0
            setattr(self, f"b{res}", SynthesisBlock(in_channels, config.channels[res], config, res))

    def forward(self, ws: torch.Tensor, noise_mode: str = "const",
                generator: torch.Generator | None = None, fused: bool | None = None) -> torch.Tensor:
        if fused is None:  # per-sample weights at inference, shared ones (cheaper) in training
            fused = not self.training
        ws = ws.to(torch.float32)
        x = img = None
        index = 0
        for res in self.resolutions:
            block = getattr(self, f"b{res}")
            cur = ws.narrow(1, index, block.num_conv + int(block.has_torgb))
            index += block.num_conv
            x, img = block(x, img, cur, noise_mode, generator, fused)
        assert img is not None
        return img


class Generator(nn.Module):
    """Mapping plus synthesis: the network a StyleGAN2 pickle's ``G_ema`` is."""

    def __init__(self, config: StyleGANConfig) -> None:
        super().__init__()
        self.config = config
        self.z_dim, self.c_dim, self.w_dim = config.z_dim, config.c_dim, config.w_dim
        self.num_ws, self.img_resolution = config.num_ws, config.img_resolution
        self.synthesis = SynthesisNetwork(config)
        self.mapping = MappingNetwork(config)

    def forward(self, z: torch.Tensor, c: torch.Tensor | None, psi: float = 1.0,
                cutoff: int | None = None, noise_mode: str = "const") -> torch.Tensor:
        ws = self.mapping(z, c)
        if psi != 1:
            ws = truncate(ws, self.mapping.w_avg, psi, cutoff)
        return self.synthesis(ws, noise_mode=noise_mode)
