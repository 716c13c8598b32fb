"""Sampler primitives against sampler_unit (official `sample_with_top_k_top_p_` and
`gumbel_softmax_with_rng` on fixed logits with a 5-way tie at the top of row [0, 0])."""

from __future__ import annotations

import pytest
import torch
from latentgraph.nodes.var.model import filter_top_k_top_p, gumbel_softmax, sample_tokens
from torch.testing import assert_close

CASES = [(0, 0.0), (1, 0.0), (50, 0.0), (0, 0.5), (900, 0.96), (100, 0.9)]


def case_tag(top_k: int, top_p: float) -> str:
    return f"k{top_k}_p{str(top_p).replace('.', '')}"


@pytest.mark.parametrize(("top_k", "top_p"), CASES, ids=[case_tag(*c) for c in CASES])
def test_sampler_unit_filter_and_draw(golden, configs, top_k, top_p):
    unit = golden("sampler_unit")
    generator = torch.Generator().manual_seed(configs["sampler_unit"]["generator_seed_per_case"])
    filtered = filter_top_k_top_p(unit["logits_in"], top_k, top_p)
    assert torch.equal(filtered != -torch.inf, unit[f"keep_{case_tag(top_k, top_p)}"])
    drawn = sample_tokens(filtered, generator)[:, :, 0]
    assert torch.equal(drawn, unit[f"idx_{case_tag(top_k, top_p)}"])


def test_sampler_unit_top1_keeps_ties(golden):
    filtered = filter_top_k_top_p(golden("sampler_unit")["logits_in"], top_k=1)
    assert int((filtered[0, 0] != -torch.inf).sum()) == 5


def test_sampler_unit_filter_leaves_input_untouched(golden):
    logits = golden("sampler_unit")["logits_in"]
    before = logits.clone()
    filter_top_k_top_p(logits, top_k=50, top_p=0.9)
    assert torch.equal(logits, before)


def test_sampler_unit_gumbel_softmax(golden, configs):
    unit = golden("sampler_unit")
    filtered = filter_top_k_top_p(unit["logits_in"], top_k=900, top_p=0.96)
    assert torch.equal(filtered != -torch.inf, unit["gumbel_in_k900_p096_masked"])
    generator = torch.Generator().manual_seed(configs["sampler_unit"]["gumbel_seed"])
    assert_close(
        gumbel_softmax(filtered, 0.27, generator), unit["gumbel_soft_tau027"], atol=1e-6, rtol=0
    )


def test_sampler_unit_without_replacement(golden, configs):
    unit = golden("sampler_unit")
    generator = torch.Generator().manual_seed(configs["sampler_unit"]["noreplace_seed"])
    drawn = sample_tokens(unit["logits_in"], generator, num_samples=4, replacement=False)
    assert torch.equal(drawn, unit["idx_k0_p00_n4_noreplace"])
