"""A tiny SANA with seeded random weights, saved as a diffusers pipeline folder and in the
research-code layouts (NVlabs DiT, MIT efficientvit DC-AE).

Its conventions are the releases' (32-wide DiT self-attention heads, 32-wide DC-AE attention
heads); the Gemma tokenizer is a byte-fallback BPE trained here with the `tokenizers` library on
the complex human instruction and a few prompts, wrapped as transformers' GemmaTokenizer (BOS
added, pad id 0), so it tokenises the way Gemma's does in every respect the pipeline relies on.
The layout writers invert diffusers' converters; a wrong writer makes the strict load fail.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import (
    AutoencoderDC,
    DPMSolverMultistepScheduler,
    SanaPipeline,
    SanaTransformer2DModel,
)
from latentgraph.nodes.sana.models import COMPLEX_HUMAN_INSTRUCTION
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
from transformers import Gemma2Config, Gemma2Model, GemmaTokenizer

IMAGE = 32
PROMPTS = [
    "a photo of a cat",
    "an astronaut riding a horse on the moon",
    "A Red Apple on a wooden table  ",
]
SANA_SCHEDULER = {"flow_shift": 3.0, "use_flow_sigmas": True, "prediction_type": "flow_prediction"}
TRANSFORMER = dict(
    in_channels=8,
    out_channels=8,
    num_attention_heads=2,
    attention_head_dim=32,
    num_layers=2,
    num_cross_attention_heads=2,
    cross_attention_head_dim=32,
    cross_attention_dim=64,
    caption_channels=32,
    sample_size=32,
)
# SANA's DC-AE layout (conv down, interpolate up, RMS norms) at toy width, and an "in/mix"-style
# one (pixel (un)shuffle, BatchNorm ResBlocks in the decoder, an empty first stage).
DCAE_SANA = dict(
    in_channels=3,
    latent_channels=8,
    encoder_block_types=("ResBlock", "EfficientViTBlock"),
    decoder_block_types=("ResBlock", "EfficientViTBlock"),
    encoder_block_out_channels=(16, 32),
    decoder_block_out_channels=(16, 32),
    encoder_layers_per_block=(1, 1),
    decoder_layers_per_block=(1, 1),
    encoder_qkv_multiscales=((), (5,)),
    decoder_qkv_multiscales=((), (5,)),
    upsample_block_type="interpolate",
    downsample_block_type="conv",
    scaling_factor=0.41407,
)
DCAE_MIX = dict(
    in_channels=3,
    latent_channels=8,
    encoder_block_types=("ResBlock", "ResBlock", "EfficientViTBlock"),
    decoder_block_types=("ResBlock", "ResBlock", "EfficientViTBlock"),
    encoder_block_out_channels=(8, 16, 32),
    decoder_block_out_channels=(8, 16, 32),
    encoder_layers_per_block=(0, 1, 1),
    decoder_layers_per_block=(0, 1, 1),
    encoder_qkv_multiscales=((), (), ()),
    decoder_qkv_multiscales=((), (), ()),
    decoder_norm_types=("batch_norm", "batch_norm", "rms_norm"),
    decoder_act_fns=("relu", "relu", "silu"),
    upsample_block_type="pixel_shuffle",
    downsample_block_type="pixel_unshuffle",
    scaling_factor=0.5,
)


def build_tokenizer() -> GemmaTokenizer:
    specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"] + [f"<0x{i:02X}>" for i in range(256)]
    bpe = Tokenizer(models.BPE(unk_token="<unk>", fuse_unk=True, byte_fallback=True))
    bpe.normalizer = normalizers.Replace(" ", "▁")
    bpe.pre_tokenizer = pre_tokenizers.Split(
        pattern=" ", behavior="merged_with_previous", invert=False
    )
    bpe.train_from_iterator(
        [*COMPLEX_HUMAN_INSTRUCTION, *PROMPTS],
        trainers.BpeTrainer(vocab_size=700, special_tokens=specials, show_progress=False),
    )
    model = json.loads(bpe.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split()) for m in model["merges"]]
    return GemmaTokenizer(
        vocab=model["vocab"], merges=merges, add_bos_token=True, padding_side="right"
    )


def build_components(seed: int = 0) -> dict:
    tokenizer = build_tokenizer()
    torch.manual_seed(seed)
    text_encoder = Gemma2Model(
        Gemma2Config(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=1,
            head_dim=16,
            max_position_embeddings=1024,
            pad_token_id=0,
            eos_token_id=1,
            bos_token_id=2,
        )
    )
    transformer = SanaTransformer2DModel(**TRANSFORMER)
    vae = AutoencoderDC(**DCAE_SANA)
    return {
        "tokenizer": tokenizer,
        "text_encoder": text_encoder.eval(),
        "transformer": transformer.eval(),
        "vae": vae.eval(),
        "scheduler": DPMSolverMultistepScheduler(**SANA_SCHEDULER),
    }


def save_pipeline(components: dict, folder: Path) -> None:
    SanaPipeline(**components).save_pretrained(folder)


# --- diffusers -> NVlabs SANA keys --------------------------------------------------------------

_SANA_TOP = {
    "patch_embed.proj.": "x_embedder.proj.",
    "time_embed.emb.timestep_embedder.linear_1.": "t_embedder.mlp.0.",
    "time_embed.emb.timestep_embedder.linear_2.": "t_embedder.mlp.2.",
    "time_embed.linear.": "t_block.1.",
    "caption_projection.linear_1.": "y_embedder.y_proj.fc1.",
    "caption_projection.linear_2.": "y_embedder.y_proj.fc2.",
    "caption_norm.": "attention_y_norm.",
    "proj_out.": "final_layer.linear.",
    "scale_shift_table": "final_layer.scale_shift_table",
}
_SANA_BLOCK = {
    "scale_shift_table": "scale_shift_table",
    "attn1.to_out.0.": "attn.proj.",
    "attn2.to_q.": "cross_attn.q_linear.",
    "attn2.to_out.0.": "cross_attn.proj.",
    "ff.conv_inverted.": "mlp.inverted_conv.conv.",
    "ff.conv_depth.": "mlp.depth_conv.conv.",
    "ff.conv_point.": "mlp.point_conv.conv.",
}


def transformer_to_nvlabs(state: dict, sample_size: int) -> dict:
    out: dict = {}
    for key, value in state.items():
        if key.startswith("transformer_blocks."):
            _, i, rest = key.split(".", 2)
            if rest.startswith(
                ("attn1.to_q", "attn1.to_k", "attn1.to_v", "attn2.to_k", "attn2.to_v")
            ):
                continue  # fused below
            for hf, nv in _SANA_BLOCK.items():
                if rest.startswith(hf):
                    out[f"blocks.{i}.{nv}{rest[len(hf) :]}"] = value
                    break
            else:
                raise KeyError(key)
            continue
        for hf, nv in _SANA_TOP.items():
            if key.startswith(hf):
                out[nv + key[len(hf) :]] = value
                break
        else:
            raise KeyError(key)
    for i in sorted({k.split(".")[1] for k in state if k.startswith("transformer_blocks.")}):
        b = f"transformer_blocks.{i}."
        out[f"blocks.{i}.attn.qkv.weight"] = torch.cat(
            [state[b + f"attn1.to_{x}.weight"] for x in "qkv"]
        )
        for kind in ("weight", "bias"):
            out[f"blocks.{i}.cross_attn.kv_linear.{kind}"] = torch.cat(
                [state[b + f"attn2.to_{x}.{kind}"] for x in "kv"]
            )
    inner, caption = (
        state["patch_embed.proj.weight"].shape[0],
        state["caption_projection.linear_1.weight"].shape[1],
    )
    # Training-time buffers the NVlabs checkpoints carry.
    out["pos_embed"] = torch.zeros(1, sample_size * sample_size, inner)
    out["y_embedder.y_embedding"] = torch.randn(300, caption)
    return out


# --- diffusers -> MIT efficientvit DC-AE keys ---------------------------------------------------

_EVIT = {
    "attn.to_qkv_multiscale.0.proj_in.": "context_module.main.aggreg.0.0.",
    "attn.to_qkv_multiscale.0.proj_out.": "context_module.main.aggreg.0.1.",
    "attn.norm_out.": "context_module.main.proj.norm.",
    "conv_out.conv_inverted.": "local_module.main.inverted_conv.conv.",
    "conv_out.conv_depth.": "local_module.main.depth_conv.conv.",
    "conv_out.conv_point.": "local_module.main.point_conv.conv.",
    "conv_out.norm.": "local_module.main.point_conv.norm.",
}
_RES = {"conv1.": "main.conv1.conv.", "conv2.": "main.conv2.conv.", "norm.": "main.conv2.norm."}


def dcae_to_efficientvit(vae: AutoencoderDC) -> dict:
    state = vae.state_dict()
    config = vae.config
    # (An empty first stage makes conv_in/conv_out pixel-(un)shuffle blocks: one ".conv" deeper on
    # both sides, so the same prefixes serve.)
    top = {
        "encoder.conv_in.": "encoder.project_in.conv.",
        "encoder.conv_out.": "encoder.project_out.main.0.conv.",
        "decoder.conv_in.": "decoder.project_in.main.conv.",
        "decoder.norm_out.": "decoder.project_out.0.",
        "decoder.conv_out.": "decoder.project_out.2.conv.",
    }
    out: dict = {}
    for key, value in state.items():
        hit = next((hf for hf in top if key.startswith(hf)), None)
        if hit is not None:
            out[top[hit] + key[len(hit) :]] = value
            continue
        part, _, i, j, rest = key.split(".", 4)
        stage = f"{part}.stages.{i}.op_list.{j}."
        if rest.startswith("attn.to_q."):
            block = f"{part}.{_}.{i}.{j}."
            qkv = torch.cat([state[block + f"attn.to_{x}.weight"] for x in "qkv"])
            out[stage + "context_module.main.qkv.conv.weight"] = qkv[:, :, None, None]
        elif rest.startswith(("attn.to_k.", "attn.to_v.")):
            continue
        elif rest.startswith("attn.to_out."):
            out[stage + "context_module.main.proj.conv.weight"] = value[:, :, None, None]
        elif rest.startswith("conv."):  # an up/down-sampling block
            sampler = (
                "main.conv.conv."
                if (part == "decoder" or config.downsample_block_type == "pixel_unshuffle")
                else "main.conv."
            )
            out[stage + sampler + rest[len("conv.") :]] = value
        else:
            table = _EVIT if rest.startswith(("attn.", "conv_out.")) else _RES
            prefix = next(p for p in table if rest.startswith(p))
            out[stage + table[prefix] + rest[len(prefix) :]] = value
    return out
