"""Wrong text-encoder inputs fail with an InputError naming the node, the input and the file:
a T5 where a CLIP goes, a CLIP-L where a CLIP-G goes (or the reverse), a T5 file without its
tokenizer, a CLIP without projection for SD3, weights that do not fit."""

from __future__ import annotations

import pytest
import tiny_text as tt
import torch
from graph_helpers import Graph, NodeRef
from latentgraph.executor import InputError, NodeFailed
from latentgraph.nodes.mmdit import layouts
from safetensors.torch import save_file
from tiny_text import PROMPT

# The tiny models' session fixtures (text_pipes, text_root, text_executor), shared by the modules.
pytest_plugins = ["tiny_text"]
T5_TOKENIZER = "sd3/tokenizer_3"


def failure(executor, g: Graph, node: str, class_type: str, input_name: str, *words: str) -> str:
    with pytest.raises(NodeFailed) as info:
        executor.run(g.build(), [node])
    failed = info.value
    assert isinstance(failed.error, InputError), failed
    assert (failed.node_id, failed.class_type, failed.error.input_name) == (
        node,
        class_type,
        input_name,
    )
    message = str(failed.error)
    for word in words:
        assert word in message, message
    return message


def t5_node(g: Graph, path: str = "files/t5xxl.safetensors"):
    return g.node("LG_LoadT5TextEncoder", id="t5", path=path, tokenizer=T5_TOKENIZER)


def test_a_t5_where_a_clip_goes(text_executor):
    g = Graph()
    g.node("LG_CLIPTextEncodeMMDiT", id="2", clip=t5_node(g), text=PROMPT, which="clip_g")
    failure(
        text_executor, g, "2", "LG_CLIPTextEncodeMMDiT", "clip", "T5", "files/t5xxl.safetensors"
    )


def test_a_clip_where_a_t5_goes(text_executor):
    g = Graph()
    clip = g.node("LG_LoadTextEncoder", id="1", path="files/clip_l.safetensors")
    g.node("LG_T5TextEncode", id="2", t5=clip, text=PROMPT)
    failure(text_executor, g, "2", "LG_T5TextEncode", "t5", "CLIP-L", "files/clip_l.safetensors")


def test_a_clip_l_where_a_clip_g_goes(text_executor):
    g = Graph()
    clip = g.node("LG_LoadTextEncoder", id="1", path="files/clip_l.safetensors")
    g.node("LG_CLIPTextEncodeMMDiT", id="2", clip=clip, text=PROMPT, which="clip_g")
    failure(
        text_executor,
        g,
        "2",
        "LG_CLIPTextEncodeMMDiT",
        "clip",
        "files/clip_l.safetensors",
        "CLIP-L",
        "not a CLIP-G",
    )
    # Embeddings of the CLIP-L on SD3's CLIP-G input, and CLIP-G's on FLUX's CLIP-L input.
    g = Graph()
    clip = g.node("LG_LoadTextEncoder", id="1", path="files/clip_l.safetensors")
    bundled = g.node("LG_LoadTextEncoder", id="3", path="sd3")
    clip_l = g.node("LG_CLIPTextEncodeMMDiT", id="l", clip=clip, text=PROMPT)
    clip_g = g.node("LG_CLIPTextEncodeMMDiT", id="g", clip=bundled, text=PROMPT, which="clip_g")
    g.node("LG_SD3Conditioning", id="c", clip_l=clip_l, clip_g=clip_l, t5_width=tt.T5)
    failure(
        text_executor,
        g,
        "c",
        "LG_SD3Conditioning",
        "clip_g",
        "files/clip_l.safetensors",
        "CLIP-L",
        "CLIP-G",
    )
    g.node(
        "LG_FluxConditioning",
        id="f",
        clip_l=clip_g,
        t5=g.node("LG_T5TextEncode", id="t", t5=bundled, text=PROMPT),
    )
    failure(text_executor, g, "f", "LG_FluxConditioning", "clip_l", "sd3/text_encoder_2", "CLIP-G")


def test_clip_skip_beyond_the_layers(text_executor):
    g = Graph()
    clip = g.node("LG_LoadTextEncoder", id="1", path="files/clip_l.safetensors")
    g.node("LG_CLIPTextEncodeMMDiT", id="2", clip=clip, text=PROMPT, clip_skip=2)
    failure(text_executor, g, "2", "LG_CLIPTextEncodeMMDiT", "clip_skip", "0..1", "2 layers")


def test_bundled_encoders_need_a_choice_of_clip(text_executor):
    g = Graph()
    g.node(
        "LG_CLIPTextEncodeMMDiT",
        id="2",
        clip=g.node("LG_LoadTextEncoder", id="1", path="flux"),
        text=PROMPT,
    )
    failure(text_executor, g, "2", "LG_CLIPTextEncodeMMDiT", "which", "clip_l")
    g.set("2", which="clip_g")
    failure(text_executor, g, "2", "LG_CLIPTextEncodeMMDiT", "which", "no clip_g")


def test_sd3_needs_a_projected_clip_g(text_pipes, text_root, text_executor, monkeypatch):
    """CLIP-G's projection is SD3's (CLIP-L's pooled output is read unprojected where its
    model has no projection, as FLUX's CLIP-L): a CLIP-G without one is refused."""
    monkeypatch.setattr(layouts, "OPENCLIP_WIDTH", 48)  # the wide tiny CLIP-G reads as CLIP-G
    state = tt.openclip_state(tt.clip_g(seed=7, width=64))
    del state["text_projection"]
    save_file(state, str(text_root.models / "files" / "open_clip_noproj.safetensors"))
    g = Graph()
    flux = g.node("LG_LoadTextEncoder", id="1", path="flux")
    bare = g.node("LG_LoadTextEncoder", id="3", path="files/open_clip_noproj.safetensors")
    sd3 = g.node("LG_LoadTextEncoder", id="4", path="sd3")
    clip_l = g.node("LG_CLIPTextEncodeMMDiT", id="l", clip=flux, text=PROMPT, which="clip_l")
    clip_g = g.node("LG_CLIPTextEncodeMMDiT", id="g", clip=bare, text=PROMPT, which="clip_g")
    g.node("LG_SD3Conditioning", id="c", clip_l=clip_l, clip_g=clip_g, t5_width=tt.T5)
    failure(text_executor, g, "c", "LG_SD3Conditioning", "clip_g", "open_clip_noproj", "projection")
    # FLUX's projection-free CLIP-L is a fine SD3 CLIP-L: its pooled output, unprojected.
    g.node("LG_CLIPTextEncodeMMDiT", id="g2", clip=sd3, text=PROMPT, which="clip_g")
    g.set("c", clip_g=NodeRef("g2").out(0))
    result = text_executor.run(g.build(), ["c", "l"])
    pooled = result.outputs["c"][0].pooled
    assert torch.equal(pooled[:, : tt.CLIP_L], result.outputs["l"][0].pooled)


def test_a_t5_file_without_its_tokenizer(text_executor):
    g = Graph()
    g.node("LG_LoadTextEncoder", id="1", path="files/t5xxl_fp16.safetensors")
    failure(
        text_executor,
        g,
        "1",
        "LG_LoadTextEncoder",
        "path",
        "files/t5xxl_fp16.safetensors",
        "no tokenizer",
        "LG_LoadT5TextEncoder",
    )
    # An all-in-one checkpoint loads (its CLIPs need none); its T5 says so when asked.
    g = Graph()
    bundled = g.node("LG_LoadTextEncoder", id="1", path="files/sd3_all_in_one.safetensors")
    g.node("LG_T5TextEncode", id="2", t5=bundled, text=PROMPT)
    failure(
        text_executor,
        g,
        "2",
        "LG_T5TextEncode",
        "t5",
        "sd3_all_in_one.safetensors",
        "tokenizer",
        "LG_LoadT5TextEncoder",
    )
    g.node("LG_TextEncode", id="3", encoder=bundled, text=PROMPT)
    with pytest.raises(NodeFailed) as info:
        text_executor.run(g.build(), ["3"])
    assert "sd3_all_in_one.safetensors" in str(info.value) and "tokenizer" in str(info.value)


def test_the_t5_loader_needs_a_tokenizer_for_a_file(text_executor):
    g = Graph()
    g.node("LG_LoadT5TextEncoder", id="1", path="files/t5xxl.safetensors")
    failure(
        text_executor,
        g,
        "1",
        "LG_LoadT5TextEncoder",
        "tokenizer",
        "files/t5xxl.safetensors",
        "no tokenizer",
    )


def test_a_tokenizer_folder_without_a_tokenizer(text_executor):
    g = Graph()
    g.node("LG_LoadT5TextEncoder", id="1", path="files/t5xxl.safetensors", tokenizer="sd3/vae")
    failure(text_executor, g, "1", "LG_LoadT5TextEncoder", "tokenizer", "sd3/vae", "tokenizer.json")
    g.set("1", tokenizer="files/clip_l.safetensors")
    failure(text_executor, g, "1", "LG_LoadT5TextEncoder", "tokenizer", "not a folder")


def test_a_clip_file_to_the_t5_loader(text_executor):
    g = Graph()
    g.node("LG_LoadT5TextEncoder", id="1", path="files/clip_l.safetensors", tokenizer=T5_TOKENIZER)
    failure(text_executor, g, "1", "LG_LoadT5TextEncoder", "path", "clip_l.safetensors", "no T5")


def test_weights_that_do_not_fit_are_refused(text_pipes, text_root, text_executor):
    state = tt.clip_file_state(text_pipes["sd3"].text_encoder)
    state["text_model.encoder.layers.0.extra.weight"] = state["text_projection.weight"].clone()
    save_file(state, str(text_root.models / "files" / "clip_extra.safetensors"))
    g = Graph()
    g.node("LG_LoadTextEncoder", id="1", path="files/clip_extra.safetensors")
    failure(
        text_executor, g, "1", "LG_LoadTextEncoder", "path", "clip_extra.safetensors", "unexpected"
    )
    t5 = tt.t5_file_state(text_pipes["sd3"].text_encoder_3)
    del t5["encoder.block.1.layer.0.SelfAttention.k.weight"]
    save_file(t5, str(text_root.models / "files" / "t5_missing.safetensors"))
    g = Graph()
    g.node(
        "LG_LoadT5TextEncoder", id="1", path="files/t5_missing.safetensors", tokenizer=T5_TOKENIZER
    )
    failure(
        text_executor, g, "1", "LG_LoadT5TextEncoder", "path", "t5_missing.safetensors", "missing"
    )
