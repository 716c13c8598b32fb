"""The resampling and convolution primitives of StyleGAN2 (Karras et al. 2020), in plain torch.

- :func:`upfirdn2d`: upsample by zero insertion, pad (negative pads crop), convolve with a 2-D
  FIR filter, keep every ``down``-th pixel, as ``scipy.signal.upfirdn`` does per channel. The
  filter is the separable binomial [1, 3, 3, 1] (outer product, normalised to sum 1), which the
  networks keep as a ``resample_filter`` buffer.
- :func:`conv2d_resample`: a convolution with an optional 2x upsampling, computed as the paper's
  appendix B describes: a stride-2 transposed convolution, then the FIR low-pass filter (gain 4,
  so a constant keeps its level), with the padding of the upsampled image done once.
- :func:`modulated_conv2d`: section 2.2's weight modulation and demodulation,
  ``w'_ijk = s_i w_ijk``, ``w''_ijk = w'_ijk / sqrt(sum_ik w'_ijk^2 + eps)``, either fused
  (per-sample weights as a grouped convolution, the inference path) or as scalings of the
  activations around one shared convolution (cheaper to train).
- :func:`bias_act`: bias, leaky ReLU (slope 0.2) and the gain sqrt(2) that keeps the activations'
  variance, then an optional clamp.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F  # noqa: N812

LRELU_SLOPE = 0.2
#: The gain that restores unit variance after a ReLU-like activation (He et al. 2015).
LRELU_GAIN = math.sqrt(2.0)
ACTIVATIONS = ("linear", "lrelu", "relu")

Padding = tuple[int, int, int, int]  # x before, x after, y before, y after


def setup_filter(taps: list[float] | tuple[float, ...] = (1, 3, 3, 1)) -> torch.Tensor:
    """The 2-D FIR filter of 1-D ``taps``: their outer product, normalised to sum 1 (float32)."""
    f = torch.as_tensor(taps, dtype=torch.float32)
    f = torch.outer(f, f)
    return f / f.sum()


def upfirdn2d(x: torch.Tensor, f: torch.Tensor, up: int = 1, down: int = 1,
              padding: Padding = (0, 0, 0, 0), gain: float = 1.0) -> torch.Tensor:
    """Upsample (zeros), pad, FIR-filter (a true convolution: the filter is flipped), downsample."""
    batch, channels, height, width = x.shape
    if up > 1:
        x = x.reshape(batch, channels, height, 1, width, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(batch, channels, height * up, width * up)
    px0, px1, py0, py1 = padding
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0): x.shape[2] - max(-py1, 0), max(-px0, 0): x.shape[3] - max(-px1, 0)]
    kernel = (f * gain).to(x.dtype).flip([0, 1])  # a 2-D filter carries the whole gain
    kernel = kernel[None, None].repeat(channels, 1, 1, 1)
    x = F.conv2d(x, kernel, groups=channels)
    return x[:, :, ::down, ::down]


def upsample2d(x: torch.Tensor, f: torch.Tensor, up: int = 2) -> torch.Tensor:
    """2x upsampling by the FIR filter, padded so the output is exactly ``up`` times larger."""
    taps = f.shape[-1]
    p0, p1 = (taps + up - 1) // 2, (taps - up) // 2
    return upfirdn2d(x, f, up=up, padding=(p0, p1, p0, p1), gain=up * up)


def conv2d_resample(x: torch.Tensor, w: torch.Tensor, f: torch.Tensor | None = None, up: int = 1,
                    padding: int = 0, groups: int = 1, flip_weight: bool = True) -> torch.Tensor:
    """``conv2d(x, w)`` (a correlation when ``flip_weight``, else a convolution), with the input
    first upsampled ``up`` times through the filter ``f``; ``padding`` is that of the upsampled
    image."""
    out_channels, in_per_group, kh, kw = w.shape
    if up == 1:
        return F.conv2d(x, w if flip_weight else w.flip([2, 3]), padding=padding, groups=groups)
    if f is None:
        raise ValueError("upsampling needs a resample filter")
    taps = f.shape[-1]
    p0 = padding + (taps + up - 1) // 2
    p1 = padding + (taps - up) // 2
    if kw == 1 and kh == 1:  # a 1x1 convolution commutes with the upsampling: do it first
        x = F.conv2d(x, w, groups=groups)
        return upfirdn2d(x, f, up=up, padding=(p0, p1, p0, p1), gain=up * up)
    # Transposed convolution of stride `up` (a convolution's transpose: in/out swapped, and it
    # convolves where conv2d correlates), then the low-pass filter over what it left; the
    # padding is shared out between the two.
    if groups == 1:
        wt = w.transpose(0, 1)
    else:
        wt = w.reshape(groups, out_channels // groups, in_per_group, kh, kw).transpose(1, 2)
        wt = wt.reshape(groups * in_per_group, out_channels // groups, kh, kw)
    if flip_weight:
        wt = wt.flip([2, 3])
    px0, px1 = p0 - (kw - 1), p1 - (kw - up)
    py0, py1 = p0 - (kh - 1), p1 - (kh - up)
    pxt, pyt = max(min(-px0, -px1), 0), max(min(-py0, -py1), 0)
    x = F.conv_transpose2d(x, wt, stride=up, padding=[pyt, pxt], groups=groups)
    return upfirdn2d(x, f, padding=(px0 + pxt, px1 + pxt, py0 + pyt, py1 + pyt), gain=up * up)


def bias_act(x: torch.Tensor, b: torch.Tensor | None, act: str = "linear", gain: float | None = None,
             clamp: float | None = None) -> torch.Tensor:
    """``clamp(act(x + b) * gain)`` with the bias along channels (dim 1); ``gain`` defaults to
    the activation's own (sqrt(2) for the ReLUs, 1 for linear)."""
    if b is not None:
        x = x + b.reshape([-1 if i == 1 else 1 for i in range(x.ndim)])
    if act == "lrelu":
        x = F.leaky_relu(x, LRELU_SLOPE)
    elif act == "relu":
        x = F.relu(x)
    elif act != "linear":
        raise ValueError(f"unknown activation {act!r} (known: {', '.join(ACTIVATIONS)})")
    if gain is None:
        gain = 1.0 if act == "linear" else LRELU_GAIN
    if gain != 1:
        x = x * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return x


def normalize_2nd_moment(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """``x / sqrt(mean(x^2) + eps)`` over the features: the mapping's input normalisation."""
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor,
                     noise: torch.Tensor | None = None, up: int = 1, padding: int = 0,
                     resample_filter: torch.Tensor | None = None, demodulate: bool = True,
                     flip_weight: bool = True, fused: bool = True) -> torch.Tensor:
    """Section 2.2: scale the input channels of ``weight`` by each sample's ``styles``, and with
    ``demodulate`` rescale every output channel to unit expected variance; ``noise`` (already
    scaled by its learned strength) is added to the result."""
    batch = x.shape[0]
    out_channels, in_channels, kh, kw = weight.shape
    w = weight.unsqueeze(0) * styles.reshape(batch, 1, -1, 1, 1)  # [N, O, I, k, k]
    dcoefs = (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt() if demodulate else None  # [N, O]
    if not fused:  # the same product, as scalings of the activations around one convolution
        x = x * styles.to(x.dtype).reshape(batch, -1, 1, 1)
        x = conv2d_resample(x, weight.to(x.dtype), resample_filter, up=up, padding=padding,
                            flip_weight=flip_weight)
        if dcoefs is not None:
            x = x * dcoefs.to(x.dtype).reshape(batch, -1, 1, 1)
        return x if noise is None else x + noise.to(x.dtype)
    if dcoefs is not None:
        w = w * dcoefs.reshape(batch, -1, 1, 1, 1)
    x = x.reshape(1, -1, *x.shape[2:])
    w = w.reshape(-1, in_channels, kh, kw)
    x = conv2d_resample(x, w.to(x.dtype), resample_filter, up=up, padding=padding, groups=batch,
                        flip_weight=flip_weight)
    x = x.reshape(batch, -1, *x.shape[2:])
    return x if noise is None else x + noise
