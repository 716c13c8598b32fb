"""Every single-file layout of the MM-DiT text encoders loads strictly (config read off the
shapes) and encodes exactly as its diffusers folder copy: clip_l / clip_g files, t5xxl in fp32,
fp16 and fp8 (e4m3fn, e5m2: cast to the compute dtype, equal to the folder model holding the same
rounded weights), and the text_encoders.* of SD3 and FLUX all-in-one checkpoints."""

from __future__ import annotations

import pytest
import tiny_text as tt
import torch
from graph_helpers import Graph
from latentgraph.nodes.mmdit import layouts
from latentgraph.nodes.mmdit import text_encoders as te
from tiny_text import PROMPT

# The tiny models' session fixtures (text_pipes, text_root, text_executor), shared by the modules.
pytest_plugins = ["tiny_text"]


@pytest.fixture
def openclip_width(monkeypatch):
    """The tiny CLIP-G of clip_g_wide is 64 wide, the tiny CLIP-L 32: the width bound that
    separates the releases (768 / 1280) moved between them."""
    monkeypatch.setattr(layouts, "OPENCLIP_WIDTH", 48)


def load(executor, path: str, node: str = "LG_LoadTextEncoder", **inputs):
    g = Graph()
    g.node(node, id="1", path=path, **inputs)
    return executor.run(g.build(), ["1"]).outputs["1"][0]


def sd3_pooled(clip: te.ClipEmbeds) -> torch.Tensor:
    """The pooled vector SD3 reads: projected, or (a CLIP-L file) unprojected."""
    return clip.projected if clip.projected is not None else clip.pooled


def same_clip(a: te.ClipEmbeds, b: te.ClipEmbeds) -> None:
    """Equal states, pooled outputs and SD3 pooled vectors (a CLIP-L file's unprojected one is
    its folder's through the identity projection the release holds)."""
    assert torch.equal(a.hidden, b.hidden)
    assert torch.equal(a.pooled, b.pooled)
    assert torch.equal(sd3_pooled(a), sd3_pooled(b))


def test_real_widths_tell_clip_l_from_clip_g():
    assert layouts.clip_role_of_width(768) == "clip_l"  # OpenAI ViT-L/14
    assert layouts.clip_role_of_width(1280) == "clip_g"  # OpenCLIP ViT-bigG/14


def test_clip_files_equal_their_folders(text_executor, openclip_width):
    sd3 = load(text_executor, "sd3")
    encoder = load(text_executor, "files/clip_l.safetensors")
    assert isinstance(encoder, te.ClipEncoder) and encoder.has_projection
    assert not encoder.project  # SD3 reads a CLIP-L file's pooled output unprojected
    assert (encoder.role, encoder.model.config.hidden_act) == ("clip_l", "quick_gelu")
    same_clip(encoder.embed([PROMPT, ""]), sd3.clip_l.embed([PROMPT, ""]))
    # The tiny SD3's CLIP-G is as narrow as its CLIP-L, so bare it reads as a CLIP-L (inside an
    # all-in-one checkpoint its prefix names it); the wide one reads as CLIP-G.
    assert load(text_executor, "files/clip_g.safetensors").role == "clip_l"
    wide = load(text_executor, "files/clip_g_wide.safetensors")
    assert (wide.role, wide.model.config.hidden_act) == ("clip_g", "gelu")
    folder = load(text_executor, "clip_g_wide")
    assert folder.role == "clip_g"
    same_clip(wide.embed([PROMPT, ""]), folder.embed([PROMPT, ""]))
    # The same CLIP-G in open_clip's own keys (a whole OpenCLIP model file).
    openclip = load(text_executor, "files/open_clip_bigG_wide.safetensors")
    assert (openclip.role, openclip.has_projection) == ("clip_g", True)
    same_clip(openclip.embed([PROMPT, ""]), folder.embed([PROMPT, ""]))


def test_clip_l_without_projection_serves_flux(text_pipes, text_executor):
    """FLUX's CLIP-L has no projection; a file of it is read as a CLIP text transformer (by
    SD 1.x's loader, whose layout it is), and the CLIP node takes it as a CLIP-L."""
    g = Graph()
    encoder = g.node("LG_LoadTextEncoder", id="1", path="files/clip_l_noproj.safetensors")
    g.node("LG_CLIPTextEncodeMMDiT", id="2", clip=encoder, text=PROMPT, which="clip_l")
    ours = text_executor.run(g.build(), ["2"]).outputs["2"][0]
    flux = load(text_executor, "flux")
    same_clip(ours, flux.clip_l.embed([PROMPT]))
    assert ours.projected is None


@pytest.mark.parametrize(
    ("name", "dtype"),
    [
        ("t5xxl", None),
        ("t5xxl_fp16", torch.float16),
        ("t5xxl_fp8_e4m3fn", torch.float8_e4m3fn),
        ("t5xxl_fp8_e5m2", torch.float8_e5m2),
    ],
)
def test_t5_files_equal_the_folder(text_pipes, text_executor, name, dtype):
    ours = load(
        text_executor,
        f"files/{name}.safetensors",
        "LG_LoadT5TextEncoder",
        tokenizer="sd3/tokenizer_3",
    )
    assert ours.model.dtype == torch.float32  # stored dtype cast to the compute dtype (CPU)
    reference = text_pipes["sd3"].text_encoder_3
    if dtype is not None:  # the folder model holding the file's rounded weights
        reference = tt.t5()
        rounded = {
            k: v.to(dtype).float() for k, v in text_pipes["sd3"].text_encoder_3.state_dict().items()
        }
        reference.load_state_dict(rounded)
        if name.startswith("t5xxl_fp8"):
            assert any(v.dtype == dtype for v in tt.t5_file_state(reference, dtype).values())
    expected = te.T5Encoder(reference.requires_grad_(False), ours.tokenizer, "ref").embed(
        [PROMPT], 256
    )
    got = ours.embed([PROMPT], 256)
    assert torch.equal(got.hidden, expected.hidden)
    folder = load(text_executor, "sd3/text_encoder_3", "LG_LoadT5TextEncoder")
    if dtype is None:
        assert torch.equal(folder.embed([PROMPT]).hidden, got.hidden)


def test_sd3_all_in_one_text_encoders(text_pipes, text_executor):
    bundled = load(text_executor, "files/sd3_all_in_one.safetensors")
    assert isinstance(bundled, te.SD3TextEncoders) and bundled.t5_width == tt.T5
    folder = load(text_executor, "sd3")
    same_clip(bundled.clip_l.embed([PROMPT]), folder.clip_l.embed([PROMPT]))
    same_clip(bundled.clip_g.embed([PROMPT]), folder.clip_g.embed([PROMPT]))
    assert bundled.t5 is not None and bundled.t5.tokenizer is None  # a file carries none
    t5 = load(
        text_executor,
        "files/sd3_all_in_one.safetensors",
        "LG_LoadT5TextEncoder",
        tokenizer="sd3/tokenizer_3",
    )
    assert torch.equal(t5.embed([PROMPT]).hidden, folder.t5.embed([PROMPT]).hidden)
    # Without T5 (sd3_medium_incl_clips): zeros as wide as the transformer's context embedder.
    clips = load(text_executor, "files/sd3_incl_clips.safetensors")
    no_t5 = load(text_executor, "sd3_no_t5")
    assert clips.t5 is None and clips.t5_width == tt.T5
    ours, theirs = clips.encode([PROMPT]), no_t5.encode([PROMPT])
    assert torch.equal(ours.embeddings, theirs.embeddings)
    # the file's CLIP-L has no projection: its pooled output is the folder's through the identity
    assert clips.clip_l.model.__class__.__name__ == "CLIPTextModel"
    assert torch.equal(ours.pooled, theirs.pooled)


def test_flux_all_in_one_text_encoders(text_executor):
    bundled = load(text_executor, "files/flux_all_in_one.safetensors")
    assert isinstance(bundled, te.FluxTextEncoders)
    folder = load(text_executor, "flux")
    same_clip(bundled.clip_l.embed([PROMPT]), folder.clip_l.embed([PROMPT]))
    # (the cached models are not edited: a T5 with the folder's tokenizer over the file's model)
    t5 = te.T5Encoder(bundled.t5.model, folder.t5.tokenizer, bundled.t5.source)
    ours = te.FluxTextEncoders(bundled.clip_l, t5).encode([PROMPT])
    assert torch.equal(ours.embeddings, folder.encode([PROMPT]).embeddings)


def test_component_folders_on_their_own(text_executor):
    """text_encoder_2/ of SD3 on its own is its CLIP-G (gelu in its config), with tokenizer_2/;
    text_encoder_3/ its T5 with tokenizer_3/."""
    clip_g = load(text_executor, "sd3/text_encoder_2")
    assert isinstance(clip_g, te.ClipEncoder) and clip_g.role == "clip_g"
    assert clip_g.tokenizer.pad_token == "!"
    t5 = load(text_executor, "sd3/text_encoder_3")
    assert isinstance(t5, te.T5Encoder) and t5.tokenizer is not None


@pytest.mark.parametrize("style", ["legacy", "comfy_quant"])
def test_scaled_fp8_t5_files(text_pipes, text_executor, style):
    """ComfyUI's t5xxl_fp8_e4m3fn_scaled: each weight is its fp8 value times its scale."""
    ours = load(
        text_executor,
        f"files/t5xxl_fp8_e4m3fn_scaled_{style}.safetensors",
        "LG_LoadT5TextEncoder",
        tokenizer="sd3/tokenizer_3",
    )
    stored = tt.scaled_fp8_state(tt.t5_file_state(text_pipes["sd3"].text_encoder_3), style)
    expected = tt.dequantised(stored)
    expected["encoder.embed_tokens.weight"] = expected["shared.weight"]
    reference = tt.t5()
    reference.load_state_dict(expected)
    want = te.T5Encoder(reference.requires_grad_(False), ours.tokenizer, "ref").embed([PROMPT])
    assert torch.equal(ours.embed([PROMPT]).hidden, want.hidden)
    # and it is close to the unquantised T5 (e4m3fn keeps 3 mantissa bits)
    full = load(text_executor, "sd3/text_encoder_3", "LG_LoadT5TextEncoder").embed([PROMPT]).hidden
    assert (ours.embed([PROMPT]).hidden - full).abs().max() < 0.25 * full.abs().max()


def test_other_quantisations_are_refused(text_pipes, text_root, text_executor):
    import json

    from latentgraph.executor import InputError, NodeFailed
    from safetensors.torch import save_file

    state = tt.scaled_fp8_state(tt.t5_file_state(text_pipes["sd3"].text_encoder_3))
    key = next(k for k in state if k.endswith("comfy_quant"))
    state[key] = torch.tensor(list(json.dumps({"format": "nvfp4"}).encode()), dtype=torch.uint8)
    save_file(state, str(text_root.models / "files" / "t5xxl_nvfp4.safetensors"))
    g = Graph()
    g.node(
        "LG_LoadT5TextEncoder",
        id="1",
        path="files/t5xxl_nvfp4.safetensors",
        tokenizer="sd3/tokenizer_3",
    )
    with pytest.raises(NodeFailed) as info:
        text_executor.run(g.build(), ["1"])
    error = info.value.error
    assert isinstance(error, InputError) and error.input_name == "path"
    assert "t5xxl_nvfp4.safetensors" in str(error) and "nvfp4" in str(error)


def test_t5_in_fp16_keeps_wo_in_fp32_as_transformers_does(monkeypatch, text_root):
    """On a GPU without bf16 the MM-DiT parts fall back to fp16, where T5's feed-forward output
    overflows; transformers keeps its `wo` layers in fp32 (T5's _keep_in_fp32_modules) when it
    loads T5 in fp16, and so does our loader: same parameter dtypes, same output (CPU fp16)."""
    from transformers import T5EncoderModel

    monkeypatch.setattr(layouts, "model_dtype", lambda device: torch.float16)
    folder = text_root.models / "sd3" / "text_encoder_3"
    ours = layouts.t5_folder(folder, None, torch.device("cpu")).model
    theirs = T5EncoderModel.from_pretrained(folder, dtype=torch.float16).eval()
    assert {k: v.dtype for k, v in ours.state_dict().items()} == {
        k: v.dtype for k, v in theirs.state_dict().items()
    }
    assert ours.encoder.block[0].layer[1].DenseReluDense.wo.weight.dtype == torch.float32
    ids = torch.tensor([[5, 9, 40, 1] + [0] * 12])
    with torch.no_grad():
        assert torch.equal(ours(ids)[0], theirs(ids)[0])


def test_t5_in_bf16_is_built_in_it(monkeypatch, text_pipes, text_root):
    """In bf16 (a GPU's dtype for these parts) T5 is built in bf16 and an fp8 file's weights go
    straight to it (each fp8 value is a bf16 one): the same weights, and the same output, as the
    model with the file's rounded weights cast to bf16."""
    from latentgraph.nodes.common.files import WeightFile

    monkeypatch.setattr(layouts, "model_dtype", lambda device: torch.bfloat16)
    path = text_root.models / "files" / "t5xxl_fp8_e4m3fn.safetensors"
    ours = layouts.t5_from_state(
        layouts.t5_file_state(WeightFile(path)), "t5", None, torch.device("cpu")
    ).model
    assert {p.dtype for p in ours.parameters()} == {torch.bfloat16}
    reference = tt.t5()
    state = text_pipes["sd3"].text_encoder_3.state_dict()
    reference.load_state_dict({k: v.to(torch.float8_e4m3fn).float() for k, v in state.items()})
    reference = reference.to(torch.bfloat16).requires_grad_(False)
    for key, value in reference.state_dict().items():
        assert torch.equal(ours.state_dict()[key], value), key
    ids = torch.tensor([[5, 9, 40, 1] + [0] * 12])
    with torch.no_grad():
        assert torch.equal(ours(ids)[0], reference(ids)[0])


def test_gguf_t5(text_pipes, text_root, text_executor):
    """A GGUF-quantised T5 (llama.cpp names, Q8_0) equals the model holding the weights gguf's
    dequantize gives back: bitwise."""
    pytest.importorskip("gguf")
    path = text_root.models / "files" / "t5-v1_1-xxl-encoder-Q8_0.gguf"
    restored = tt.write_t5_gguf(text_pipes["sd3"].text_encoder_3, path)
    ours = load(
        text_executor,
        "files/t5-v1_1-xxl-encoder-Q8_0.gguf",
        "LG_LoadT5TextEncoder",
        tokenizer="sd3/tokenizer_3",
    )
    restored["encoder.embed_tokens.weight"] = restored["shared.weight"]
    reference = tt.t5()
    reference.load_state_dict(restored)
    want = te.T5Encoder(reference.requires_grad_(False), ours.tokenizer, "ref").embed([PROMPT])
    assert torch.equal(ours.embed([PROMPT]).hidden, want.hidden)
    assert any(
        not torch.equal(v, text_pipes["sd3"].text_encoder_3.state_dict()[k])
        for k, v in restored.items()
    )  # it was quantised
