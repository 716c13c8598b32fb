"""Prompt embeddings equal StableDiffusion3Pipeline.encode_prompt and FluxPipeline.encode_prompt
on tiny seeded encoders, bitwise (fp32 CPU, both sides under no_grad as the pipelines' __call__
runs them: the same modules on the same tokens in the same order of operations), whether one
LG_TextEncode runs a pipeline's bundled encoders or the separate encoder nodes are joined."""

from __future__ import annotations

import torch
from graph_helpers import Graph, NodeRef
from tiny_text import PROMPT, T5

# The tiny models' session fixtures (text_pipes, text_root, text_executor), shared by the modules.
pytest_plugins = ["tiny_text"]


def run(executor, g: Graph, *nodes: str):
    result = executor.run(g.build(), list(nodes))
    return [result.outputs[n][0] for n in nodes]


def assert_same(ours, theirs) -> None:
    assert ours.shape == theirs.shape
    assert torch.equal(ours, theirs), (ours - theirs).abs().max()


def encode_prompt_sd3(pipe, prompt: str, **kwargs):
    with torch.no_grad():
        return pipe.encode_prompt(prompt, None, None, device="cpu", negative_prompt="", **kwargs)


def bundled_graph(path: str, *texts: str) -> Graph:
    g = Graph()
    encoder = g.node("LG_LoadTextEncoder", id="1", path=path)
    for i, text in enumerate(texts):
        g.node("LG_TextEncode", id=f"e{i}", encoder=encoder, text=text)
    return g


def separate_sd3_graph(path: str, text: str, t5_tokens: int | None = 256, skip: int = 0) -> Graph:
    g = Graph()
    encoder = g.node("LG_LoadTextEncoder", id="1", path=path)
    clip_l = g.node(
        "LG_CLIPTextEncodeMMDiT", id="l", clip=encoder, text=text, which="clip_l", clip_skip=skip
    )
    clip_g = g.node(
        "LG_CLIPTextEncodeMMDiT", id="g", clip=encoder, text=text, which="clip_g", clip_skip=skip
    )
    inputs = {"clip_l": clip_l, "clip_g": clip_g, "t5_width": T5}
    if t5_tokens is not None:
        inputs["t5"] = g.node(
            "LG_T5TextEncode", id="t", t5=encoder, text=text, max_length=t5_tokens
        )
    g.node("LG_SD3Conditioning", id="c", **inputs)
    return g


def test_sd3_folder_equals_encode_prompt(text_pipes, text_executor):
    positive, negative = run(text_executor, bundled_graph("sd3", PROMPT, ""), "e0", "e1")
    embeds, negative_embeds, pooled, negative_pooled = encode_prompt_sd3(text_pipes["sd3"], PROMPT)
    assert embeds.shape == (1, 77 + 256, T5)
    assert_same(positive.embeddings, embeds)
    assert_same(positive.pooled, pooled)
    assert_same(negative.embeddings, negative_embeds)
    assert_same(negative.pooled, negative_pooled)


def test_sd3_separate_nodes_equal_encode_prompt(text_pipes, text_executor):
    (ours,) = run(text_executor, separate_sd3_graph("sd3", PROMPT), "c")
    embeds, _, pooled, _ = encode_prompt_sd3(text_pipes["sd3"], PROMPT)
    assert_same(ours.embeddings, embeds)
    assert_same(ours.pooled, pooled)


def test_sd3_longer_t5_sequence(text_pipes, text_executor):
    (ours,) = run(text_executor, separate_sd3_graph("sd3", PROMPT, 512), "c")
    embeds, _, pooled, _ = encode_prompt_sd3(text_pipes["sd3"], PROMPT, max_sequence_length=512)
    assert embeds.shape[1] == 77 + 512
    assert_same(ours.embeddings, embeds)


def test_sd3_clip_skip(text_pipes, text_executor):
    (ours,) = run(text_executor, separate_sd3_graph("sd3", PROMPT, skip=1), "c")
    embeds, _, pooled, _ = encode_prompt_sd3(text_pipes["sd3"], PROMPT, clip_skip=1)
    assert_same(ours.embeddings, embeds)
    assert_same(ours.pooled, pooled)


def test_sd3_without_t5_is_the_pipeline_zeros(text_pipes, text_executor):
    """A pipeline saved without T5 (text_encoder_3 null), and the conditioning node with its
    T5 input left open: zeros of 256 tokens x joint_attention_dim, as the pipeline makes them."""
    embeds, negative_embeds, pooled, _ = encode_prompt_sd3(text_pipes["sd3_no_t5"], PROMPT)
    assert torch.count_nonzero(embeds[:, 77:]) == 0
    bundled, negative = run(text_executor, bundled_graph("sd3_no_t5", PROMPT, ""), "e0", "e1")
    assert_same(bundled.embeddings, embeds)
    assert_same(bundled.pooled, pooled)
    assert_same(negative.embeddings, negative_embeds)
    (separate,) = run(text_executor, separate_sd3_graph("sd3_no_t5", PROMPT, None), "c")
    assert_same(separate.embeddings, embeds)


def test_flux_folder_and_separate_nodes_equal_encode_prompt(text_pipes, text_executor):
    with torch.no_grad():
        embeds, pooled, text_ids = text_pipes["flux"].encode_prompt(PROMPT, None, device="cpu")
    assert embeds.shape == (1, 512, T5) and torch.count_nonzero(text_ids) == 0
    (bundled,) = run(text_executor, bundled_graph("flux", PROMPT), "e0")
    assert_same(bundled.embeddings, embeds)
    assert_same(bundled.pooled, pooled)
    g = Graph()
    encoder = g.node("LG_LoadTextEncoder", id="1", path="flux")
    clip_l = g.node("LG_CLIPTextEncodeMMDiT", id="l", clip=encoder, text=PROMPT, which="clip_l")
    t5 = g.node("LG_T5TextEncode", id="t", t5=encoder, text=PROMPT, max_length=512)
    g.node("LG_FluxConditioning", id="c", clip_l=clip_l, t5=t5)
    (separate,) = run(text_executor, g, "c")
    assert_same(separate.embeddings, embeds)
    assert_same(separate.pooled, pooled)


def test_a_t5_embedding_is_cached_and_shared(text_executor):
    """Two conditionings of one prompt, and a later graph changing only a CLIP prompt: T5 runs
    once."""
    g = separate_sd3_graph("sd3", "a green triangle")
    g.node(
        "LG_SD3Conditioning",
        id="c2",
        clip_l=NodeRef("l"),
        clip_g=NodeRef("g"),
        t5=NodeRef("t"),
        t5_width=T5,
    )
    first = text_executor.run(g.build(), ["c", "c2"])
    assert torch.equal(first.outputs["c"][0].embeddings, first.outputs["c2"][0].embeddings)
    g.set("l", text="a big green triangle")
    second = text_executor.run(g.build(), ["c"])
    assert "t" in second.cached and "t" not in second.executed
    assert "l" in second.executed
