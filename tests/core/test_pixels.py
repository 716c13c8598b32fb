"""The one set of IMAGE <-> pixels <-> bytes conversions (executor/pixels.py) gives the same bits
as each formula it replaced, for every half-precision value and a wide sample of float32 ones."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from latentgraph.executor.pixels import (
    image_to_pixels,
    image_to_uint8,
    pixels_to_image,
    uint8_to_pil,
    uint8_to_pixels,
    uint8_to_unit,
    unit_to_image,
)
from PIL import Image

INT_OF = {2: torch.int16, 4: torch.int32}


def every_value(dtype: torch.dtype) -> torch.Tensor:
    """Every bit pattern of a 16-bit float; for float32 a random 4M of them plus the edges."""
    if dtype.itemsize == 2:
        return torch.arange(-(2**15), 2**15, dtype=torch.int32).to(torch.int16).view(dtype)
    bits = torch.randint(
        -(2**31), 2**31, (1 << 22,), dtype=torch.int64, generator=torch.Generator().manual_seed(0)
    )
    info = torch.finfo(dtype)
    edges = torch.tensor(
        [
            0.0,
            -0.0,
            1.0,
            -1.0,
            0.5,
            -0.5,
            info.max,
            -info.max,
            info.tiny,
            -info.tiny,
            info.tiny / 2,
            -info.tiny / 2,
            info.eps,
            -1 + info.eps / 2,
            1 - info.eps / 2,
            float("inf"),
            float("-inf"),
            float("nan"),
        ],
        dtype=dtype,
    )
    return torch.cat([bits.to(torch.int32).view(dtype), edges])


def assert_same_bits(a: torch.Tensor, b: torch.Tensor) -> None:
    assert a.dtype == b.dtype and a.shape == b.shape
    nan = torch.isnan(a)
    assert torch.equal(nan, torch.isnan(b))
    ints = INT_OF[a.dtype.itemsize]
    assert torch.equal(a[~nan].view(ints), b[~nan].view(ints))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32], ids=str)
def test_denormalise_formulas_agree_bit_for_bit(dtype):
    # diffusers' VaeImageProcessor writes x * 0.5 + 0.5; the pixel-space nodes wrote (x + 1) / 2
    # and VAR's x.add(1).mul(0.5). All are the correctly rounded (x + 1) / 2: scaling by two is
    # exact, and where x * 0.5 is not (subnormal x) adding 0.5 rounds the difference away.
    x = every_value(dtype)
    ours = x * 0.5 + 0.5
    assert_same_bits(ours, (x + 1) / 2)
    assert_same_bits(ours, x.add(1).mul(0.5))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32], ids=str)
def test_pixels_to_image_is_each_former_formula(dtype):
    gen = torch.Generator().manual_seed(1)
    pixels = (torch.randn(2, 3, 5, 7, generator=gen) * 1.5).to(dtype)  # beyond -1..1 too
    image = pixels_to_image(pixels)
    assert image.dtype == torch.float32 and image.shape == (2, 5, 7, 3) and image.is_contiguous()
    # the autoencoder decode node (VaeImageProcessor.denormalize, then float32 channels last)
    assert_same_bits(
        image, (pixels * 0.5 + 0.5).clamp(0, 1).float().permute(0, 2, 3, 1).contiguous()
    )
    # the pixel-space node and the latent preview
    assert_same_bits(image, ((pixels + 1) / 2).clamp(0, 1).float().permute(0, 2, 3, 1))
    # VAR's decode: its VQVAE output is clamped to -1..1 and denormalised in float32
    clamped = pixels.clamp(-1, 1)
    assert_same_bits(
        pixels_to_image(clamped.float()),
        clamped.float().add(1).mul(0.5).permute(0, 2, 3, 1).contiguous(),
    )


def test_image_to_pixels_keeps_the_channels_last_view():
    image = torch.rand(2, 6, 4, 3, generator=torch.Generator().manual_seed(2))
    pixels = image_to_pixels(image)
    assert pixels.shape == (2, 3, 6, 4)
    former = 2.0 * image.permute(0, 3, 1, 2) - 1.0
    assert pixels.stride() == former.stride()  # the convolutions see the pipeline's layout
    assert_same_bits(pixels, former)
    assert_same_bits(pixels, image.permute(0, 3, 1, 2).mul(2).sub(1))
    assert_same_bits(pixels.contiguous(), image.permute(0, 3, 1, 2).contiguous() * 2 - 1)


def test_unit_to_image_clamps_and_lays_out():
    unit = torch.tensor([-0.5, 0.25, 1.5]).view(1, 3, 1, 1)
    image = unit_to_image(unit)
    assert image.shape == (1, 1, 1, 3) and image.is_contiguous()
    assert image.flatten().tolist() == [0.0, 0.25, 1.0]


def test_bytes_round_trip_and_rounding():
    every_byte = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, axis=-1)
    unit = uint8_to_unit(every_byte)
    assert unit.dtype == np.float32
    assert np.array_equal(unit, np.asarray(every_byte, dtype=np.float32) / 255.0)
    assert np.array_equal(image_to_uint8(torch.from_numpy(unit)), every_byte)  # exact both ways
    assert uint8_to_unit(every_byte, np.float64).dtype == np.float64
    # PIL images read as arrays of their bytes
    assert np.array_equal(uint8_to_unit(Image.fromarray(every_byte)), unit)
    # the trainers' former numpy rounding, out-of-range values included
    values = np.linspace(-0.2, 1.2, 1001, dtype=np.float32).reshape(1, 1001, 1)
    numpy_way = (values * 255).round().clip(0, 255).astype(np.uint8)
    assert np.array_equal(image_to_uint8(torch.from_numpy(values)), numpy_way)


def test_uint8_to_pil_modes():
    grey = np.zeros((2, 3, 1), dtype=np.uint8)
    assert uint8_to_pil(grey).mode == "L" and uint8_to_pil(grey).size == (3, 2)
    assert uint8_to_pil(np.zeros((2, 3, 3), dtype=np.uint8)).mode == "RGB"
    assert uint8_to_pil(np.zeros((2, 3, 4), dtype=np.uint8)).mode == "RGBA"


def test_uint8_to_pixels_is_the_trainers_formula():
    data = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16)
    pixels = uint8_to_pixels(data)
    assert pixels.dtype == torch.float32 and pixels.min() == -1 and pixels.max() == 1
    assert_same_bits(pixels, data.float() / 127.5 - 1.0)
