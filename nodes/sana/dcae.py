"""MIT efficientvit DC-AE checkpoints (``encoder.project_in``, ``decoder.stages`` ...) ->
diffusers AutoencoderDC.

Keys are renamed by diffusers' ``convert_autoencoder_dc_checkpoint_to_diffusers``; the config is
then read off the renamed tensors: stage widths and depths, block kinds, multi-scale attention
kernels, norm kinds (a BatchNorm has running statistics), and the up/down-sampling kind (a
pixel-(un)shuffle convolution has 4x the channels of a strided/interpolating one). In every DC-AE
release the ResBlocks with BatchNorm use ReLU and the others SiLU, attention heads are 32 wide and
both shortcuts are on; those are taken as given. The latent scaling factor is a training statistic:
it comes from a ``config.json`` beside the file (diffusers' ``scaling_factor``, or MIT's
``model_name``), or from the known release the structure matches.
"""

from __future__ import annotations

import re
from typing import Any

from ..common.files import CheckpointError, StateDict

ATTENTION_HEAD_DIM = 32
# model name -> latent scaling factor (diffusers' convert_dcae_to_diffusers.py).
SCALING_FACTORS = {"dc-ae-f32c32-sana-1.0": 0.41407, "dc-ae-f32c32-sana-1.1": 0.41407}
# (spatial compression, latent channels, upsampling) -> release, when no config says otherwise.
KNOWN_STRUCTURES = {(32, 32, "interpolate"): "dc-ae-f32c32-sana-1.0"}


def _indices(keys: Any, pattern: str) -> list[int]:
    rx = re.compile(pattern)
    return sorted({int(m.group(1)) for k in keys if (m := rx.match(k))})


def _stage(weights: StateDict, prefix: str) -> dict[str, Any]:
    """Blocks of one encoder/decoder stage: kind, width, depth, kernels, norm."""
    kinds: list[str] = []
    width: int | None = None
    scales: tuple[int, ...] = ()
    norm = "rms_norm"
    for j in _indices(weights, re.escape(prefix) + r"(\d+)\."):
        block = f"{prefix}{j}."
        if block + "conv1.weight" in weights:
            kinds.append("ResBlock")
            width = weights[block + "conv1.weight"].shape[0]
            norm = "batch_norm" if block + "norm.running_mean" in weights else "rms_norm"
        elif block + "attn.to_q.weight" in weights:
            kinds.append("EfficientViTBlock")
            width = weights[block + "attn.to_q.weight"].shape[1]
            scales = tuple(
                weights[f"{block}attn.to_qkv_multiscale.{k}.proj_in.weight"].shape[-1]
                for k in _indices(weights, re.escape(block) + r"attn\.to_qkv_multiscale\.(\d+)\.")
            )
            norm = "batch_norm" if block + "attn.norm_out.running_mean" in weights else "rms_norm"
    if len(set(kinds)) > 1:
        raise CheckpointError(f"{prefix} mixes block kinds {sorted(set(kinds))}")
    return {
        "kind": kinds[0] if kinds else "ResBlock",
        "layers": len(kinds),
        "width": width,
        "scales": scales,
        "norm": norm,
    }


def _fill_empty(stages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A stage without blocks shows no kind or norm (none is built); take its neighbour's, as the
    releases' configs state them."""
    for i in reversed(range(len(stages) - 1)):
        if stages[i]["layers"] == 0:
            stages[i] = {**stages[i], "kind": stages[i + 1]["kind"], "norm": stages[i + 1]["norm"]}
    return stages


def _fill_widths(widths: list[int | None]) -> list[int]:
    """A stage with no blocks has no visible width and none is used; give it half the next one's,
    as the releases' (128, 256, ...) progressions do."""
    filled: list[int] = [0] * len(widths)
    for i in reversed(range(len(widths))):
        w = widths[i]
        filled[i] = w if w is not None else max(1, filled[i + 1] // 2 if i + 1 < len(widths) else 1)
    return filled


def infer_config(weights: StateDict, name: str) -> dict[str, Any]:
    """AutoencoderDC config (but the scaling factor) from diffusers-named DC-AE tensors."""
    try:
        conv_in = weights.get("encoder.conv_in.weight", weights.get("encoder.conv_in.conv.weight"))
        latent = weights["encoder.conv_out.weight"].shape[0]
        if conv_in is None:
            raise KeyError("encoder.conv_in.weight")
    except KeyError as err:
        raise CheckpointError(f"{name}: not a DC-AE (missing {err})") from None
    stages = (
        max(
            _indices(weights, r"encoder\.down_blocks\.(\d+)\.")
            + _indices(weights, r"decoder\.up_blocks\.(\d+)\.")
        )
        + 1
    )
    enc = _fill_empty([_stage(weights, f"encoder.down_blocks.{i}.") for i in range(stages)])
    dec = _fill_empty([_stage(weights, f"decoder.up_blocks.{i}.") for i in range(stages)])
    enc_widths = _fill_widths([s["width"] for s in enc])
    dec_widths = _fill_widths([s["width"] for s in dec])
    down = "pixel_unshuffle"
    for i in range(stages - 1):
        conv = weights.get(f"encoder.down_blocks.{i}.{enc[i]['layers']}.conv.weight")
        if conv is not None:
            down = "conv" if conv.shape[0] == enc_widths[i + 1] else "pixel_unshuffle"
            break
    up = "pixel_shuffle"
    for i in range(stages - 1):
        conv = weights.get(f"decoder.up_blocks.{i}.0.conv.weight")
        if conv is not None:
            up = "interpolate" if conv.shape[0] == dec_widths[i] else "pixel_shuffle"
            break
    return {
        "in_channels": conv_in.shape[1],
        "latent_channels": latent,
        "attention_head_dim": ATTENTION_HEAD_DIM,
        "encoder_block_types": [s["kind"] for s in enc],
        "decoder_block_types": [s["kind"] for s in dec],
        "encoder_block_out_channels": enc_widths,
        "decoder_block_out_channels": dec_widths,
        "encoder_layers_per_block": [s["layers"] for s in enc],
        "decoder_layers_per_block": [s["layers"] for s in dec],
        "encoder_qkv_multiscales": [s["scales"] for s in enc],
        "decoder_qkv_multiscales": [s["scales"] for s in dec],
        "upsample_block_type": up,
        "downsample_block_type": down,
        "decoder_norm_types": [s["norm"] for s in dec],
        "decoder_act_fns": ["relu" if s["norm"] == "batch_norm" else "silu" for s in dec],
    }


def dcae_from_efficientvit(
    weights: StateDict, name: str, sidecar: dict[str, Any] | None
) -> tuple[dict[str, Any], StateDict]:
    """(diffusers config, converted weights) of an MIT efficientvit DC-AE state dict."""
    from diffusers.loaders.single_file_utils import convert_autoencoder_dc_checkpoint_to_diffusers

    converted = convert_autoencoder_dc_checkpoint_to_diffusers(dict(weights))
    config = infer_config(converted, name)
    config["scaling_factor"] = scaling_factor(config, sidecar, name)
    return config, converted


def scaling_factor(config: dict[str, Any], sidecar: dict[str, Any] | None, name: str) -> float:
    if sidecar is not None and isinstance(sidecar.get("scaling_factor"), int | float):
        return float(sidecar["scaling_factor"])
    model_name = sidecar.get("model_name") if sidecar is not None else None
    if model_name in SCALING_FACTORS:
        return SCALING_FACTORS[model_name]
    structure = (
        2 ** (len(config["encoder_block_out_channels"]) - 1),
        config["latent_channels"],
        config["upsample_block_type"],
    )
    if structure in KNOWN_STRUCTURES:
        return SCALING_FACTORS[KNOWN_STRUCTURES[structure]]
    raise CheckpointError(
        f"{name}: the latent scaling factor of this DC-AE (f{structure[0]}c{structure[1]}) is "
        "unknown; put a config.json with its 'scaling_factor' (or MIT's 'model_name') beside it"
    )
