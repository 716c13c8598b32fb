"""VAR transformer forward passes against var_teacher_forced (official `VAR.forward`)."""

from __future__ import annotations

import pytest
import torch
from latentgraph.nodes.var.model import (
    VAR,
    ForcedTokens,
    VARConfig,
    quantize_image,
    scale_logits,
    scale_step,
    start,
)
from latentgraph.nodes.var.model.sampling import classifier_free_guidance, guidance_strength
from torch.testing import assert_close

LOGITS_ATOL = 1e-4  # README suggestion; observed official-vs-official path spread is 9.1e-6


def test_var_teacher_forced(var, golden):
    tf = golden("var_teacher_forced")
    with torch.no_grad():
        logits = var(tf["label_B"], tf["x_BLCv_wo_first_l"])
        null_logits = var(
            torch.full_like(tf["label_B"], var.config.num_classes), tf["x_BLCv_wo_first_l"]
        )
    assert logits.shape == (2, var.config.num_tokens, var.config.vocab_size)
    assert_close(logits, tf["logits"], atol=LOGITS_ATOL, rtol=0)
    assert_close(null_logits, tf["logits_null_class"], atol=LOGITS_ATOL, rtol=0)


def test_teacher_forced_block_causal_mask_equals_kv_cache(var, vqvae, golden, configs):
    """The block-causal mask used for teacher forcing and the KV cache used for inference are two
    routes to the same prediction: feed the greedy run's tokens through both."""
    run = configs["infer"]["greedy"]
    greedy = golden("var_infer_greedy")
    tokens = [greedy[f"idx_s{k}"] for k in range(len(var.config.patch_nums))]
    teacher_input = vqvae.quantize.teacher_forcing_input(tokens, var.config.patch_nums)
    labels = greedy["label_B"]
    with torch.no_grad():
        both = var(
            torch.cat((labels, torch.full_like(labels, var.config.num_classes))),
            teacher_input.repeat(2, 1, 1),
        )
    state = start(var, labels, seed=run["g_seed"])
    for k in range(len(var.config.patch_nums)):
        begin, end = var.config.token_span(k)
        t = guidance_strength(run["cfg"], k, len(var.config.patch_nums))
        expected = classifier_free_guidance(both[:, begin:end], t)
        assert_close(scale_logits(state, var, cfg=run["cfg"]), expected, atol=LOGITS_ATOL, rtol=0)
        state = scale_step(
            state, var, vqvae, cfg=run["cfg"], top_k=run["top_k"], top_p=run["top_p"]
        )


@pytest.mark.parametrize(
    ("shared_adaln", "attn_l2_norm"),
    [(True, True), (False, False)],
    ids=["shared_adaln", "plain_attn"],
)
def test_variants_agree_between_mask_and_kv_cache(
    vqvae, golden, patch_nums, shared_adaln, attn_l2_norm
):
    """Shared AdaLN and un-normalised attention have no official golden file here, so check that
    teacher forcing and cached step-by-step inference agree on the same (forced) tokens."""
    config = VARConfig(
        vocab_size=vqvae.config.vocab_size,
        z_channels=vqvae.config.z_channels,
        num_classes=5,
        depth=2,
        embed_dim=64,
        num_heads=2,
        mlp_hidden_dim=256,
        patch_nums=patch_nums,
        shared_adaln=shared_adaln,
        attn_l2_norm=attn_l2_norm,
    )
    torch.manual_seed(0)
    var = VAR(config).eval().requires_grad_(False)
    for parameter in var.parameters():
        parameter.normal_(std=0.2)
    reference = quantize_image(vqvae, golden("vqvae_io")["image"], patch_nums)
    labels = torch.tensor([1, 4])
    teacher = var(labels, vqvae.quantize.teacher_forcing_input(reference.indices, patch_nums))

    state = start(var, labels, seed=0)
    for k, idx in enumerate(reference.indices):
        begin, end = config.token_span(k)
        # cfg=0 leaves the conditional logits untouched: (1 + 0) * cond - 0 * uncond.
        assert_close(
            scale_logits(state, var, cfg=0.0), teacher[:, begin:end], atol=LOGITS_ATOL, rtol=0
        )
        state = scale_step(
            state,
            var,
            vqvae,
            cfg=0.0,
            forced=ForcedTokens(idx, torch.ones_like(idx, dtype=torch.bool)),
        )
