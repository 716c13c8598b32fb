"""VQVAE and multi-scale quantizer against vqvae_io and quant10_io (official outputs)."""

from __future__ import annotations

import pytest
import torch
from latentgraph.nodes.var.model import decode_token_maps, quantize_image
from latentgraph.nodes.var.model.quantizer import (
    PhiPartiallyShared,
    PhiPerScale,
    PhiShared,
    nearest_tick,
    phi_ticks,
)
from torch.testing import assert_close

# Tolerances suggested by the fixture README (observed 1-vs-2-thread jitter is <= 3.2e-6).
LATENT_ATOL = 1e-5  # f, f_hat, var_input
IMAGE_ATOL = 5e-5


def test_vqvae_io(vqvae, golden, patch_nums):
    io = golden("vqvae_io")
    with torch.no_grad():
        f_enc = vqvae.encoder(io["image"])
        f = vqvae.image_to_latent(io["image"])
    assert_close(f_enc, io["f_enc"], atol=LATENT_ATOL, rtol=0)
    assert_close(f, io["f"], atol=LATENT_ATOL, rtol=0)

    tokens = quantize_image(vqvae, io["image"], patch_nums)
    for k in range(len(patch_nums)):
        assert torch.equal(tokens.indices[k], io[f"idx_s{k}"]), f"scale {k} token ids differ"
        assert_close(tokens.f_hats[k], io[f"fhat_s{k}"], atol=LATENT_ATOL, rtol=0)
    assert torch.equal(torch.cat(tokens.indices, dim=1), io["idx_concat"])

    with torch.no_grad():
        replayed = vqvae.quantize.tokens_to_f_hats(tokens.indices, patch_nums)
        var_input = vqvae.quantize.teacher_forcing_input(tokens.indices, patch_nums)
        recon = vqvae.latent_to_image(tokens.f_hat)
    for k in range(len(patch_nums)):
        assert_close(replayed[k], io[f"fhat_embed_s{k}"], atol=LATENT_ATOL, rtol=0)
    assert_close(var_input, io["var_input"], atol=LATENT_ATOL, rtol=0)
    assert_close(recon, io["recon"], atol=IMAGE_ATOL, rtol=0)
    assert_close(
        decode_token_maps(vqvae, tokens.indices), io["recon_from_idx"], atol=IMAGE_ATOL, rtol=0
    )


def test_quant10_io_released_schedule(vqvae, golden, configs):
    """The same codebook under the released 10-scale schedule, where the phi pick has a tie."""
    io = golden("quant10_io")
    schedule = tuple(configs["quant10"]["v_patch_nums"])
    with torch.no_grad():
        tokens = vqvae.quantize.latent_to_tokens(io["f"], schedule)
        var_input = vqvae.quantize.teacher_forcing_input(tokens.indices, schedule)
        replayed = vqvae.quantize.tokens_to_f_hats(tokens.indices, schedule)
    for k in range(len(schedule)):
        assert torch.equal(tokens.indices[k], io[f"idx_s{k}"]), f"scale {k} token ids differ"
        assert_close(tokens.f_hats[k], io[f"fhat_s{k}"], atol=LATENT_ATOL, rtol=0)
    assert torch.equal(torch.cat(tokens.indices, dim=1), io["idx_concat"])
    assert_close(var_input, io["var_input"], atol=LATENT_ATOL, rtol=0)
    assert_close(replayed[-1], io["fhat_final_replay"], atol=LATENT_ATOL, rtol=0)


@pytest.mark.parametrize(
    ("count", "num_scales", "expected"),
    [
        (4, 4, [0, 1, 2, 3]),
        (4, 10, [0, 0, 1, 1, 1, 2, 2, 3, 3, 3]),  # scale 2 is an exact float64 tie, resolved to 1
        (10, 10, list(range(10))),
    ],
)
def test_phi_pick_by_nearest_tick(count, num_scales, expected):
    picks = [nearest_tick(phi_ticks(count), k / (num_scales - 1)) for k in range(num_scales)]
    assert picks == expected


def test_phi_bank_sharing_modes(configs):
    phis = [torch.nn.Identity() for _ in range(4)]
    partial = PhiPartiallyShared(torch.nn.ModuleList(phis))
    per_scale = PhiPerScale(phis)
    shared = PhiShared(phis[0])
    expected = configs["quant10"]["phi_index_per_scale"]
    for k, index in enumerate(expected):
        progress = k / 9
        assert partial.select(progress) is phis[index]
        assert per_scale.select(progress) is phis[index]
        assert shared.select(progress) is phis[0]
