"""The configs the single-file loaders read off the shapes, at the releases' real sizes (meta
tensors: shapes without memory): OpenAI CLIP-L/14 and OpenCLIP bigG/14 as SD3's text_encoder/ and
text_encoder_2/ configs give them, T5 v1.1 XXL as google/t5-v1_1-xxl's config does, and the
16-channel VAE as FLUX.1's and SD3's vae/ configs do."""

from __future__ import annotations

import torch
from latentgraph.nodes.mmdit import autoencoder, layouts


def meta(*shape: int) -> torch.Tensor:
    return torch.empty(shape, device="meta")


def clip_shapes(width: int, layers: int, projection: int) -> dict:
    state = {
        "text_model.embeddings.token_embedding.weight": meta(49408, width),
        "text_model.embeddings.position_embedding.weight": meta(77, width),
        "text_projection.weight": meta(projection, width),
    }
    for i in range(layers):
        state[f"text_model.encoder.layers.{i}.mlp.fc1.weight"] = meta(4 * width, width)
    return state


def test_clip_l_and_clip_g_configs():
    l_config = layouts.clip_config(clip_shapes(768, 12, 768), "clip_l.safetensors", None)
    assert (
        l_config.hidden_size,
        l_config.num_hidden_layers,
        l_config.num_attention_heads,
        l_config.intermediate_size,
        l_config.hidden_act,
        l_config.projection_dim,
    ) == (768, 12, 12, 3072, "quick_gelu", 768)
    g_config = layouts.clip_config(clip_shapes(1280, 32, 1280), "clip_g.safetensors", None)
    assert (
        g_config.hidden_size,
        g_config.num_hidden_layers,
        g_config.num_attention_heads,
        g_config.intermediate_size,
        g_config.hidden_act,
        g_config.projection_dim,
    ) == (1280, 32, 20, 5120, "gelu", 1280)


def test_t5_xxl_config():
    state = {"shared.weight": meta(32128, 4096)}
    for i in range(24):
        block = f"encoder.block.{i}.layer."
        state[f"{block}0.SelfAttention.q.weight"] = meta(4096, 4096)
        state[f"{block}1.DenseReluDense.wi_0.weight"] = meta(10240, 4096)
    state["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"] = meta(32, 64)
    config = layouts.t5_config(state, "t5xxl_fp16.safetensors")
    assert (
        config.vocab_size,
        config.d_model,
        config.d_kv,
        config.num_heads,
        config.d_ff,
        config.num_layers,
        config.relative_attention_num_buckets,
        config.relative_attention_max_distance,
        config.dense_act_fn,
        config.is_gated_act,
        config.layer_norm_epsilon,
    ) == (32128, 4096, 64, 64, 10240, 24, 32, 128, "gelu_new", True, 1e-6)


def test_vae16_config():
    channels = [128, 256, 512, 512]
    state = {
        "encoder.conv_in.weight": meta(128, 3, 3, 3),
        "decoder.conv_in.weight": meta(512, 16, 3, 3),
        "decoder.conv_out.weight": meta(3, 128, 3, 3),
        "encoder.mid.attn_1.q.weight": meta(512, 512, 1, 1),
    }
    for i, ch in enumerate(channels):
        for j in range(2):
            state[f"encoder.down.{i}.block.{j}.conv2.weight"] = meta(ch, ch, 3, 3)
    config = autoencoder.vae16_config(state, "ae.safetensors", autoencoder.FLUX_VAE_FACTORS)
    assert config["block_out_channels"] == channels
    assert (
        config["layers_per_block"],
        config["latent_channels"],
        config["use_quant_conv"],
        config["use_post_quant_conv"],
        config["scaling_factor"],
        config["shift_factor"],
    ) == (2, 16, False, False, 0.3611, 0.1159)
