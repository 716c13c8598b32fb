"""Zero-shot in-/out-painting by teacher-forcing the known tokens at every scale (paper Fig. 8)."""

from __future__ import annotations

import torch
from latentgraph.nodes.var.model import (
    generate,
    inpaint,
    inpaint_constraints,
    known_token_masks,
    quantize_image,
    scale_step,
    start,
)
from torch.testing import assert_close

SAMPLING = {"cfg": 1.5, "top_k": 900, "top_p": 0.96}
LABELS = torch.tensor([3, 7])
SEED = 42


def reference_tokens(vqvae, golden, patch_nums):
    return quantize_image(vqvae, golden("vqvae_io")["image"], patch_nums)


def test_known_token_masks_downsample_the_pixel_mask():
    mask = torch.zeros(64, 64)
    mask[:, :32] = 1  # regenerate the left half
    masks = known_token_masks(mask, (1, 2, 3, 4), batch_size=2)
    assert [m.shape for m in masks] == [(2, pn * pn) for pn in (1, 2, 3, 4)]
    assert not masks[0].any()  # the single 1x1 token covers both halves
    assert masks[1][0].view(2, 2).tolist() == [[False, True], [False, True]]
    # The middle third straddles the seam, so it is regenerated too.
    assert masks[2][0].view(3, 3).tolist() == [[False, False, True]] * 3
    assert masks[3][0].view(4, 4).tolist() == [[False, False, True, True]] * 4


def test_all_known_mask_reproduces_reference(var, vqvae, golden, patch_nums):
    reference = reference_tokens(vqvae, golden, patch_nums)
    result = inpaint(
        var, vqvae, reference.indices, torch.zeros(64, 64), LABELS, seed=SEED, **SAMPLING
    )
    for k, idx in enumerate(reference.indices):
        assert torch.equal(result.state.token_maps[k], idx)
    assert_close(result.state.f_hat, reference.f_hat, atol=1e-5, rtol=0)


def test_all_known_mask_with_more_smooth_uses_reference_embeddings(var, vqvae, golden, patch_nums):
    reference = reference_tokens(vqvae, golden, patch_nums)
    result = inpaint(
        var,
        vqvae,
        reference.indices,
        torch.zeros(64, 64),
        LABELS,
        seed=SEED,
        more_smooth=True,
        **SAMPLING,
    )
    assert_close(result.state.f_hat, reference.f_hat, atol=1e-5, rtol=0)


def test_all_unknown_mask_equals_plain_generation(var, vqvae, golden, patch_nums):
    reference = reference_tokens(vqvae, golden, patch_nums)
    result = inpaint(
        var, vqvae, reference.indices, torch.ones(64, 64), LABELS, seed=SEED, **SAMPLING
    )
    plain = generate(var, vqvae, LABELS, seed=SEED, **SAMPLING)
    for ours, theirs in zip(result.state.token_maps, plain.state.token_maps, strict=True):
        assert torch.equal(ours, theirs)
    assert torch.equal(result.image, plain.image)


def test_partial_mask_keeps_known_tokens_and_resamples_the_rest(var, vqvae, golden, patch_nums):
    reference = reference_tokens(vqvae, golden, patch_nums)
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., 16:48, 16:48] = 1  # in-paint the centre
    constraints = inpaint_constraints(reference.indices, mask, patch_nums)
    result = inpaint(var, vqvae, reference.indices, mask, LABELS, seed=SEED, **SAMPLING)
    regenerated = 0
    for k, forced in enumerate(constraints):
        tokens = result.state.token_maps[k]
        assert torch.equal(tokens[forced.known], reference.indices[k][forced.known])
        regenerated += int((tokens[~forced.known] != reference.indices[k][~forced.known]).sum())
    assert regenerated > 0

    # The same constraints applied one scale at a time give the same result.
    state = start(var, LABELS, seed=SEED)
    for forced in constraints:
        state = scale_step(state, var, vqvae, forced=forced, **SAMPLING)
    assert torch.equal(state.f_hat, result.state.f_hat)
