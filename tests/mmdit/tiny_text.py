"""Tiny seeded text encoders and 16-channel VAE of SD3 / FLUX, built with transformers' and
diffusers' own classes, their tokenizers built here, and writers of the single-file layouts users
have (ComfyUI's clip_l / clip_g / t5xxl files, the ``text_encoders.*`` of an all-in-one
checkpoint, BFL's ``ae.safetensors``).

Conventions the single-file loaders read off shapes hold at toy size: 64-dim CLIP heads (so a
width under 64 has one head), the full 49408-token CLIP vocabulary (single files use the bundled
BPE vocabulary, so the folder tokenizers here are built from it too, and a file and its folder
copy tokenise alike), T5 v1.1's gated GELU and 32 relative-attention buckets, GroupNorm 32 in
the VAE. The LDM-layout VAE writer is the inverse of diffusers' converter, written from its map;
were it wrong, the strict load would refuse the file.

The test modules load this module as a plugin (``pytest_plugins``) for one set of session
fixtures, after importing it for its builders; it asserts nothing a test reports, hence
PYTEST_DONT_REWRITE.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler
from latentgraph.nodes.ldm.clip import bundled_tokenizer, bundled_vocabulary
from safetensors.torch import save_file
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    CLIPTokenizer,
    T5Config,
    T5EncoderModel,
    T5Tokenizer,
)
from vae_keys import diffusers_vae_to_ldm

#: widths of the tiny CLIP-L, CLIP-G and T5 (the tiny transformers are conditioned on them)
CLIP_L, CLIP_G, T5 = 32, 32, 32
CLIP_VOCAB = 49408
FLUX_FACTORS = (0.3611, 0.1159)
SD3_FACTORS = (1.5305, 0.0609)
VAE_LEVELS, VAE_LAYERS = 2, 1
IMAGE = 32  # pixels of the test images; the tiny VAE downsamples by 2

_WORDS = "a an the of red blue green circle square triangle photo cat dog on in big small".split()


def clip_config(width: int, act: str, layers: int = 2) -> CLIPTextConfig:
    return CLIPTextConfig(
        vocab_size=CLIP_VOCAB,
        hidden_size=width,
        intermediate_size=2 * width,
        num_hidden_layers=layers,
        num_attention_heads=max(1, width // 64),
        max_position_embeddings=77,
        hidden_act=act,
        projection_dim=width,
        bos_token_id=49406,
        eos_token_id=49407,
        pad_token_id=1,
    )


def clip_l(seed: int = 1, width: int = CLIP_L, projection: bool = True) -> torch.nn.Module:
    """OpenAI CLIP-L's text tower at toy width (quick GELU); with its projection as SD3 uses
    it (CLIPTextModelWithProjection), without as FLUX does (CLIPTextModel). SD3's projection is
    the identity, as in the release (SD3 reads CLIP-L's pooled output unprojected)."""
    torch.manual_seed(seed)
    cls = CLIPTextModelWithProjection if projection else CLIPTextModel
    model = cls(clip_config(width, "quick_gelu")).eval()
    if projection:
        with torch.no_grad():
            model.text_projection.weight.copy_(torch.eye(width))
    return model


def clip_g(seed: int = 2, width: int = CLIP_G) -> torch.nn.Module:
    """OpenCLIP bigG's text tower at toy width (GELU), with its projection."""
    torch.manual_seed(seed)
    return CLIPTextModelWithProjection(clip_config(width, "gelu", layers=3)).eval()


def clip_tokenizer(pad: str = "<|endoftext|>") -> CLIPTokenizer:
    """The bundled CLIP BPE as the pipelines' tokenizers: CLIP-L pads with <|endoftext|>, SD3's
    CLIP-G (tokenizer_2) with "!"."""
    if pad == "<|endoftext|>":
        return bundled_tokenizer()
    vocab, merges = bundled_vocabulary()
    return CLIPTokenizer(vocab=dict(vocab), merges=list(merges), model_max_length=77, pad_token=pad)


def t5_tokenizer() -> T5Tokenizer:
    """A small unigram T5 tokenizer: T5's specials (<pad> 0, </s> 1, <unk> 2), the word-start
    symbol, letters and a few words (longer pieces score higher, as a trained model's do)."""
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    pieces += [(c, -5.0) for c in "abcdefghijklmnopqrstuvwxyz"]
    pieces += [("\u2581" + c, -4.0) for c in "abcdefghijklmnopqrstuvwxyz"]
    pieces += [("\u2581" + w, -1.0 - 0.01 * i) for i, w in enumerate(_WORDS)]
    return T5Tokenizer(vocab=pieces, extra_ids=0)


def t5(seed: int = 3, width: int = T5, vocab: int = 128) -> T5EncoderModel:
    """T5 v1.1's encoder (gated GELU, RMS layer norm, relative position buckets) at toy size."""
    torch.manual_seed(seed)
    config = T5Config(
        vocab_size=vocab,
        d_model=width,
        d_kv=8,
        num_heads=4,
        d_ff=2 * width,
        num_layers=2,
        feed_forward_proj="gated-gelu",
        relative_attention_num_buckets=32,
        relative_attention_max_distance=128,
        is_encoder_decoder=False,
        use_cache=False,
    )
    return T5EncoderModel(config).eval()


def vae16(seed: int = 4, factors: tuple[float, float] = FLUX_FACTORS) -> AutoencoderKL:
    """The SD3/FLUX VAE's architecture (16 latent channels, no quant convs, a shift factor) at
    toy width and depth."""
    torch.manual_seed(seed)
    scaling, shift = factors
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=16,
        block_out_channels=(32, 64),
        layers_per_block=VAE_LAYERS,
        down_block_types=("DownEncoderBlock2D",) * VAE_LEVELS,
        up_block_types=("UpDecoderBlock2D",) * VAE_LEVELS,
        norm_num_groups=32,
        sample_size=IMAGE,
        scaling_factor=scaling,
        shift_factor=shift,
        use_quant_conv=False,
        use_post_quant_conv=False,
    ).eval()


def scheduler() -> FlowMatchEulerDiscreteScheduler:
    return FlowMatchEulerDiscreteScheduler(shift=3.0)


# --- single-file layouts ------------------------------------------------------------------------


def clip_file_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A ComfyUI clip_l / clip_g file: transformers keys under ``text_model.`` (as CLIPTextModel
    named them before transformers 5) and ``text_projection.weight``."""
    out = {}
    for key, value in model.state_dict().items():
        if not key.startswith(("text_model.", "text_projection.")):
            key = f"text_model.{key}"
        out[key] = value.detach().clone().contiguous()
    return out


def openclip_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A CLIP text tower in open_clip's keys, as a whole OpenCLIP model file holds it (beside a
    stand-in of its image tower and logit scale): q/k/v fused into in_proj, the projection a
    matrix applied as x @ P (transformers' Linear weight, transposed)."""
    state = clip_file_state(model)
    names = {
        "layer_norm1": "ln_1",
        "layer_norm2": "ln_2",
        "mlp.fc1": "mlp.c_fc",
        "mlp.fc2": "mlp.c_proj",
        "self_attn.out_proj": "attn.out_proj",
    }
    out = {
        "token_embedding.weight": state.pop("text_model.embeddings.token_embedding.weight"),
        "positional_embedding": state.pop("text_model.embeddings.position_embedding.weight"),
        "ln_final.weight": state.pop("text_model.final_layer_norm.weight"),
        "ln_final.bias": state.pop("text_model.final_layer_norm.bias"),
        "text_projection": state.pop("text_projection.weight").T.contiguous(),
        "logit_scale": torch.ones(()),
        "visual.conv1.weight": torch.zeros(4, 3, 2, 2),
    }
    layers = {int(k.split(".")[3]) for k in state if k.startswith("text_model.encoder.layers.")}
    for i in sorted(layers):
        hf, oc = f"text_model.encoder.layers.{i}.", f"transformer.resblocks.{i}."
        for kind in ("weight", "bias"):
            qkv = [state.pop(f"{hf}self_attn.{p}_proj.{kind}") for p in "qkv"]
            out[f"{oc}attn.in_proj_{kind}"] = torch.cat(qkv).contiguous()
            for a, b in names.items():
                out[f"{oc}{b}.{kind}"] = state.pop(f"{hf}{a}.{kind}")
    assert not state, sorted(state)  # every tensor has its open_clip name
    return out


def t5_file_state(
    model: T5EncoderModel, dtype: torch.dtype | None = None
) -> dict[str, torch.Tensor]:
    """A t5xxl file: HF T5 keys, the tied embedding once as ``shared.weight``; ``dtype`` for the
    fp16 / fp8 (float8_e4m3fn, e5m2) variants."""
    out = {}
    for key, value in model.state_dict().items():
        if key == "encoder.embed_tokens.weight":
            continue
        value = value.detach().clone().contiguous()
        out[key] = value.to(dtype) if dtype is not None else value
    return out


def scaled_fp8_state(state: dict[str, torch.Tensor], style: str = "comfy_quant") -> dict:
    """ComfyUI's scaled fp8 layout of a state dict: each linear weight divided by a per-tensor
    scale (max |w| / 448, e4m3fn's largest value) and stored in fp8, the scale beside it as
    ``<layer>.scale_weight`` under a ``scaled_fp8`` marker (the older files, ``style="legacy"``)
    or as ``<layer>.weight_scale`` with a ``<layer>.comfy_quant`` JSON record (the newer)."""
    import json

    out = {}
    for key, value in state.items():
        if not (
            key.endswith(".weight")
            and value.ndim == 2
            and "Attention.relative" not in key
            and key != "shared.weight"
        ):
            out[key] = value
            continue
        layer = key[: -len("weight")]
        scale = (value.abs().max() / 448.0).float()
        out[key] = (value / scale).to(torch.float8_e4m3fn)
        if style == "legacy":
            out[layer + "scale_weight"] = scale.reshape(())
            out[layer + "scale_input"] = torch.ones(())
        else:
            out[layer + "weight_scale"] = scale.reshape(())
            record = json.dumps({"format": "float8_e4m3fn"}).encode()
            out[layer + "comfy_quant"] = torch.tensor(list(record), dtype=torch.uint8)
    if style == "legacy":
        out["scaled_fp8"] = torch.empty(0, dtype=torch.float8_e4m3fn)
    return out


def dequantised(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """What a scaled fp8 state dict holds: fp8 x scale, as the loaders compute it."""
    out = {}
    for key, value in state.items():
        if key == "scaled_fp8" or key.endswith(
            ("scale_input", "comfy_quant", "scale_weight", "weight_scale")
        ):
            continue
        layer = key[: -len("weight")]
        scale = state.get(layer + "scale_weight", state.get(layer + "weight_scale"))
        out[key] = value.float() * scale.float() if scale is not None else value.float()
    return out


def save_scaled_fp8_pair(state: dict[str, torch.Tensor], folder: Path, style: str) -> tuple[str, str]:
    """A transformer state dict written as ComfyUI writes a scaled fp8 checkpoint (under
    ``model.diffusion_model.``) and, beside it, as an fp32 file of fp8 x scale: the two names."""
    scaled = scaled_fp8_state(state, style)
    names = (f"scaled_{style}.safetensors", f"scaled_{style}_fp32.safetensors")
    save_file({f"model.diffusion_model.{k}": v for k, v in scaled.items()}, str(folder / names[0]))
    save_file(dequantised(scaled), str(folder / names[1]))
    return names


def t5_gguf_names(layers: int) -> dict[str, str]:
    """transformers' T5 encoder keys -> llama.cpp's GGUF tensor names (``enc.blk.N.attn_q``...),
    written out per tensor."""
    names = {
        "shared.weight": "token_embd.weight",
        "encoder.final_layer_norm.weight": "enc.output_norm.weight",
        "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight": "enc.blk.0.attn_rel_b.weight",
    }
    parts = {
        "layer.0.SelfAttention.q": "attn_q",
        "layer.0.SelfAttention.k": "attn_k",
        "layer.0.SelfAttention.v": "attn_v",
        "layer.0.SelfAttention.o": "attn_o",
        "layer.0.layer_norm": "attn_norm",
        "layer.1.DenseReluDense.wi_0": "ffn_gate",
        "layer.1.DenseReluDense.wi_1": "ffn_up",
        "layer.1.DenseReluDense.wo": "ffn_down",
        "layer.1.layer_norm": "ffn_norm",
    }
    for i in range(layers):
        for hf, gg in parts.items():
            names[f"encoder.block.{i}.{hf}.weight"] = f"enc.blk.{i}.{gg}.weight"
    return names


def write_t5_gguf(model: T5EncoderModel, path) -> dict[str, torch.Tensor]:
    """A GGUF T5 encoder as the ComfyUI-GGUF files are (2-D weights in Q8_0 where their rows
    allow, norms and the relative-position table in F32); returns the float32 weights gguf's
    dequantize gives back, under transformers' names."""
    import gguf
    from gguf.quants import dequantize, quantize

    qtype = gguf.GGMLQuantizationType.Q8_0
    names = t5_gguf_names(model.config.num_layers)
    writer = gguf.GGUFWriter(str(path), "t5encoder")
    restored = {}
    for key, tensor in t5_file_state(model).items():
        array = tensor.float().numpy()
        if array.ndim == 2 and array.shape[-1] % 32 == 0 and "relative" not in key:
            data = quantize(array, qtype)
            writer.add_tensor(names[key], data, raw_shape=data.shape, raw_dtype=qtype)
            restored[key] = torch.from_numpy(dequantize(data, qtype).reshape(array.shape).copy())
        else:
            writer.add_tensor(names[key], array)
            restored[key] = tensor.float()
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return restored


def bundled(clips: dict[str, torch.nn.Module], t5_model: T5EncoderModel | None) -> dict:
    """The ``text_encoders.*`` of an all-in-one SD3 / FLUX checkpoint, as ComfyUI saves them:
    CLIP-L without a projection (SD3 reads its pooled output unprojected; diffusers' converter
    gives it the identity), CLIP-G with its own."""
    out = {}
    for name, model in clips.items():
        state = clip_file_state(model)
        if name == "clip_l":
            state.pop("text_projection.weight", None)
        out.update({f"text_encoders.{name}.transformer.{k}": v for k, v in state.items()})
    if t5_model is not None:
        out.update(
            {f"text_encoders.t5xxl.transformer.{k}": v for k, v in t5_file_state(t5_model).items()}
        )
    return out


def vae16_to_ldm(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """diffusers AutoencoderKL keys -> LDM/BFL keys (``ae.safetensors``), any depth."""
    return diffusers_vae_to_ldm(state, VAE_LEVELS, VAE_LAYERS)


# --- pipelines, a models folder and a registry reading it ---------------------------------------


def sd3_transformer(seed: int = 5) -> torch.nn.Module:
    from diffusers import SD3Transformer2DModel

    torch.manual_seed(seed)
    return SD3Transformer2DModel(
        sample_size=16,
        patch_size=2,
        in_channels=16,
        out_channels=16,
        num_layers=1,
        attention_head_dim=8,
        num_attention_heads=2,
        joint_attention_dim=T5,
        caption_projection_dim=16,
        pooled_projection_dim=CLIP_L + CLIP_G,
        pos_embed_max_size=16,
    ).eval()


def flux_transformer(seed: int = 6) -> torch.nn.Module:
    from diffusers import FluxTransformer2DModel

    torch.manual_seed(seed)
    return FluxTransformer2DModel(
        patch_size=1,
        in_channels=64,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=T5,
        pooled_projection_dim=CLIP_L,
        guidance_embeds=True,
        axes_dims_rope=(4, 6, 6),
    ).eval()


def sd3_pipeline(with_t5: bool = True):
    from diffusers import StableDiffusion3Pipeline

    return StableDiffusion3Pipeline(
        transformer=sd3_transformer(),
        scheduler=scheduler(),
        vae=vae16(factors=SD3_FACTORS),
        text_encoder=clip_l(),
        tokenizer=clip_tokenizer(),
        text_encoder_2=clip_g(),
        tokenizer_2=clip_tokenizer("!"),
        text_encoder_3=t5() if with_t5 else None,
        tokenizer_3=t5_tokenizer() if with_t5 else None,
    )


def flux_pipeline():
    from diffusers import FluxPipeline

    return FluxPipeline(
        transformer=flux_transformer(),
        scheduler=scheduler(),
        vae=vae16(factors=FLUX_FACTORS),
        text_encoder=clip_l(projection=False),
        tokenizer=clip_tokenizer(),
        text_encoder_2=t5(),
        tokenizer_2=t5_tokenizer(),
    )


def registry_families():
    """A registry of SD3 and FLUX stand-in families built from the shared layouts and
    components (their denoisers are not loaded here), then SD 1.x."""
    from latentgraph.nodes.common.families import Component, Families, Family
    from latentgraph.nodes.ldm.family import FAMILY as SD1
    from latentgraph.nodes.mmdit import layouts as mm

    def no_denoiser(folder, device):
        raise AssertionError("these tests load no transformer")

    sd3 = Family(
        name="sd3-text",
        title="SD3 (text and VAE)",
        layouts=mm.TEXT_ENCODER_LAYOUTS + mm.AUTOENCODER_LAYOUTS,
        components={
            "SD3Transformer2DModel": Component("denoiser", no_denoiser),
            "CLIPTextModelWithProjection": mm.SD3_TEXT_COMPONENT,
            "T5EncoderModel": mm.T5_COMPONENT,
            "AutoencoderKL": mm.VAE16_COMPONENT,
        },
        pipeline={
            "denoiser": ("transformer", "SD3Transformer2DModel"),
            "text_encoder": ("text_encoder", "CLIPTextModelWithProjection"),
            "autoencoder": ("vae", "AutoencoderKL"),
        },
        reads={"text_encoder": "SD3's CLIP-L, CLIP-G and T5", "autoencoder": "the 16-channel VAE"},
    )
    flux = Family(
        name="flux-text",
        title="FLUX (text and VAE)",
        components={
            "FluxTransformer2DModel": Component("denoiser", no_denoiser),
            "CLIPTextModel": mm.FLUX_TEXT_COMPONENT,
            "AutoencoderKL": mm.VAE16_COMPONENT,
        },
        pipeline={
            "denoiser": ("transformer", "FluxTransformer2DModel"),
            "text_encoder": ("text_encoder", "CLIPTextModel"),
            "autoencoder": ("vae", "AutoencoderKL"),
        },
    )
    return Families([sd3, flux, SD1], foreign=())


def executor(folders):
    """An executor whose loaders read ``registry_families``, with the MM-DiT text nodes."""
    from latentgraph.executor import Executor, NodeRegistry
    from latentgraph.nodes import common, core, diffusion, mmdit

    registry = NodeRegistry()
    for node in [*core.NODES, *diffusion.NODES, *mmdit.NODES, *common.nodes(registry_families())]:
        registry.register(node)
    return Executor(device="cpu", registry=registry, folders=folders)


# --- session fixtures (test modules import them) -------------------------------------------------

PROMPT = "a red circle on a blue square"


@pytest.fixture(scope="session")
def text_pipes() -> dict:
    torch.set_num_threads(2)
    return {
        "sd3": sd3_pipeline(),
        "sd3_no_t5": sd3_pipeline(with_t5=False),
        "flux": flux_pipeline(),
    }


@pytest.fixture(scope="session")
def text_root(tmp_path_factory: pytest.TempPathFactory, text_pipes: dict):
    """models/: the pipelines as diffusers folders, and their parts in the single-file layouts
    users have (files/)."""
    from latentgraph.executor import Folders

    folders = Folders.under(tmp_path_factory.mktemp("mmdit_text"))
    for d in (folders.input, folders.output, folders.temp, folders.models):
        d.mkdir(parents=True)
    for name, pipe in text_pipes.items():
        pipe.save_pretrained(folders.models / name)
    files = folders.models / "files"
    files.mkdir()
    sd3, flux = text_pipes["sd3"], text_pipes["flux"]
    save_file(clip_file_state(sd3.text_encoder), str(files / "clip_l.safetensors"))
    save_file(clip_file_state(sd3.text_encoder_2), str(files / "clip_g.safetensors"))
    save_file(clip_file_state(flux.text_encoder), str(files / "clip_l_noproj.safetensors"))
    # A CLIP-G wider than the tiny CLIP-L, so that a bare file's width tells it apart (the tests
    # move the OpenCLIP width bound between them, as 768 and 1280 straddle it in the releases).
    wide = clip_g(seed=7, width=64)
    wide.save_pretrained(folders.models / "clip_g_wide")
    clip_tokenizer("!").save_pretrained(folders.models / "clip_g_wide")
    save_file(clip_file_state(wide), str(files / "clip_g_wide.safetensors"))
    save_file(openclip_state(wide), str(files / "open_clip_bigG_wide.safetensors"))
    t5_model = sd3.text_encoder_3
    save_file(t5_file_state(t5_model), str(files / "t5xxl.safetensors"))
    for label, dtype in (
        ("fp16", torch.float16),
        ("fp8_e4m3fn", torch.float8_e4m3fn),
        ("fp8_e5m2", torch.float8_e5m2),
    ):
        save_file(t5_file_state(t5_model, dtype), str(files / f"t5xxl_{label}.safetensors"))
    for style in ("legacy", "comfy_quant"):
        scaled = scaled_fp8_state(t5_file_state(t5_model), style)
        save_file(scaled, str(files / f"t5xxl_fp8_e4m3fn_scaled_{style}.safetensors"))
    # All-in-one checkpoints: the text encoders, the VAE (LDM keys) and a stand-in of the
    # transformer's context embedder, whose width is the T5 width an SD3 without T5 pads to.
    context = {"model.diffusion_model.context_embedder.weight": torch.zeros(16, T5)}
    sd3_file = bundled({"clip_l": sd3.text_encoder, "clip_g": sd3.text_encoder_2}, t5_model)
    sd3_file.update(
        {f"first_stage_model.{k}": v for k, v in vae16_to_ldm(sd3.vae.state_dict()).items()}
    )
    save_file({**sd3_file, **context}, str(files / "sd3_all_in_one.safetensors"))
    no_t5 = bundled({"clip_l": sd3.text_encoder, "clip_g": sd3.text_encoder_2}, None)
    save_file({**no_t5, **context}, str(files / "sd3_incl_clips.safetensors"))
    flux_file = bundled({"clip_l": flux.text_encoder}, flux.text_encoder_2)
    save_file(flux_file, str(files / "flux_all_in_one.safetensors"))
    save_file(vae16_to_ldm(flux.vae.state_dict()), str(files / "ae.safetensors"))
    return folders


@pytest.fixture(scope="session")
def text_executor(text_root):
    return executor(text_root)
