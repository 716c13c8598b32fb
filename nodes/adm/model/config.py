"""An ADM network's configuration, read off the keys and shapes of its state dict.

guided-diffusion's checkpoints are bare state dicts: no config travels with them. Nearly all of
it shows in the weights: the base width (time_embed.0 is Linear(model_channels, 4 x that)), the
input and output channels (learned sigma doubles the output), the channel multipliers (the first
residual block of each level), attention levels (qkv weights), class conditioning (label_emb),
scale-shift norm (the embedding projection is twice the block's width) and the resampling
blocks (a residual block or a conv). The number of blocks per level follows from where the
decoder upsamples; for the classifier, which has no decoder, from the one split of its encoder
into levels that fits every block. Not stored: the attention heads (channels per head or a head
count), which the caller gives, and the attention order (guided-diffusion's legacy one unless
told otherwise).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

import torch

from .unet import ADMConfig

StateDict = Mapping[str, torch.Tensor]


class ConfigError(ValueError):
    """The weights are not an ADM network this code can build."""


def kind_of(state_dict: StateDict) -> str | None:
    """'unet' or 'classifier' for guided-diffusion layouts, None for anything else."""
    if "time_embed.0.weight" not in state_dict or "input_blocks.0.0.weight" not in state_dict:
        return None
    return "unet" if any(k.startswith("output_blocks.") for k in state_dict) else "classifier"


def _count(state_dict: StateDict, prefix: str) -> int:
    indices = {int(k[len(prefix):].split(".", 1)[0]) for k in state_dict if k.startswith(prefix)}
    return max(indices) + 1 if indices else 0


def _layers(state_dict: StateDict, block: str) -> list[str]:
    """The kind of each layer of one stage: 'res', 'attn', 'conv' (a resampling conv) or 'pool'."""
    prefix = f"{block}."
    found: dict[int, str] = {}
    for key in state_dict:
        if key.startswith(prefix):
            index, rest = key[len(prefix):].split(".", 1)
            kind = ("res" if rest.startswith("in_layers.") else "attn" if rest.startswith("qkv.")
                    else "conv" if rest.startswith(("op.", "conv.")) else None)
            if kind is not None:
                found[int(index)] = kind
    return [found.get(i, "pool") for i in range(max(found) + 1)] if found else []


def _res_out(state_dict: StateDict, block: str) -> int:
    return int(state_dict[f"{block}.out_layers.3.weight"].shape[0])


def _has_skip_conv(state_dict: StateDict, block: str) -> bool:
    return f"{block}.skip_connection.weight" in state_dict


def infer_config(state_dict: StateDict, num_head_channels: int = 64, num_heads: int = 1,
                 new_attention_order: bool = False) -> tuple[str, ADMConfig]:
    """(kind, config) of a guided-diffusion U-Net or classifier state dict."""
    kind = kind_of(state_dict)
    if kind is None:
        raise ConfigError("not an ADM (guided-diffusion) network: it has no time_embed.0 and input_blocks.0.0")
    model_channels = int(state_dict["time_embed.0.weight"].shape[1])
    in_channels = int(state_dict["input_blocks.0.0.weight"].shape[1])
    blocks = _count(state_dict, "input_blocks.")
    if kind == "unet":
        per_level = _unet_blocks_per_level(state_dict, blocks)
    else:
        per_level = _classifier_blocks_per_level(state_dict, blocks)
    levels = blocks // per_level
    res_blocks = per_level - 1
    first = [f"input_blocks.{1 + level * per_level}" for level in range(levels)]
    mult = tuple(_mult(_res_out(state_dict, f"{b}.0"), model_channels) for b in first)
    attention = frozenset(2**level for level, b in enumerate(first) if f"{b}.1.qkv.weight" in state_dict)
    emb_width = int(state_dict[f"{first[0]}.0.emb_layers.1.weight"].shape[0])
    scale_shift = emb_width == 2 * _res_out(state_dict, f"{first[0]}.0")
    updown = levels > 1 and _layers(state_dict, f"input_blocks.{per_level}")[:1] == ["res"]
    config = ADMConfig(
        in_channels=in_channels, model_channels=model_channels, out_channels=_out_channels(state_dict, kind),
        num_res_blocks=res_blocks, channel_mult=mult, attention_ds=attention,
        num_head_channels=num_head_channels, num_heads=num_heads, use_scale_shift_norm=scale_shift,
        resblock_updown=updown, new_attention_order=new_attention_order,
        num_classes=int(state_dict["label_emb.weight"].shape[0]) if "label_emb.weight" in state_dict else None,
    )
    if kind == "classifier":
        config = _classifier_head(state_dict, config)
    return kind, config


def _mult(channels: int, model_channels: int) -> float:
    mult = channels / model_channels
    return int(mult) if mult.is_integer() else mult


def _unet_blocks_per_level(state_dict: StateDict, blocks: int) -> int:
    """Stages per level (res blocks + 1): the decoder's first upsampling stage ends level L-1."""
    outputs = _count(state_dict, "output_blocks.")
    for i in range(outputs):
        layers = _layers(state_dict, f"output_blocks.{i}")
        if any(kind in ("res", "conv") for kind in layers[1:]):
            per_level = i + 1
            break
    else:
        per_level = outputs  # a single level: nothing to upsample
    if per_level == 0 or outputs % per_level or blocks != outputs:
        raise ConfigError(f"{blocks} encoder and {outputs} decoder stages do not form U-Net levels")
    return per_level


def _classifier_blocks_per_level(state_dict: StateDict, blocks: int) -> int:
    """The split of the encoder's stages into levels under which every level-ending stage is a
    resampler that keeps its width, only level starts change width, and attention is all or
    nothing within a level. Several splits may fit a degenerate network; none is guessed."""
    fits = [n for n in range(1, blocks + 1) if blocks % n == 0 and _split_fits(state_dict, blocks, n)]
    if len(fits) != 1:
        found = "no" if not fits else f"{len(fits)} ({', '.join(str(n - 1) for n in fits)})"
        raise ConfigError(f"the classifier's {blocks - 1} encoder stages fit {found} numbers of "
                          "residual blocks per level; cannot tell its configuration")
    return fits[0]


def _split_fits(state_dict: StateDict, blocks: int, per_level: int) -> bool:
    levels = blocks // per_level
    for level in range(levels):
        stages = [1 + level * per_level + i for i in range(per_level - 1)]
        kinds = [_layers(state_dict, f"input_blocks.{s}") for s in stages]
        if any(not k or k[0] != "res" for k in kinds):
            return False
        if len({"attn" in k for k in kinds}) > 1:
            return False
        if any(_has_skip_conv(state_dict, f"input_blocks.{s}.0") for s in stages[1:]):
            return False
        if level < levels - 1:
            down = f"input_blocks.{(level + 1) * per_level}"
            layers = _layers(state_dict, down)
            if layers not in (["res"], ["conv"]) or _has_skip_conv(state_dict, f"{down}.0"):
                return False
    return True


def _out_channels(state_dict: StateDict, kind: str) -> int:
    for key in ("out.2.weight", "out.2.c_proj.weight", "out.3.weight"):
        if key in state_dict:
            return int(state_dict[key].shape[0])
    raise ConfigError(f"the {kind}'s output layer is neither a conv nor an attention or mean pool "
                      "(guided-diffusion's spatial pools are not supported)")


def _classifier_head(state_dict: StateDict, config: ADMConfig) -> ADMConfig:
    embedding = state_dict.get("out.2.positional_embedding")
    if embedding is None:
        return dataclasses.replace(config, pool="adaptive")
    side = math.isqrt(int(embedding.shape[1]) - 1)
    if side * side + 1 != embedding.shape[1]:
        raise ConfigError(f"the attention pool's positional embedding of {embedding.shape[1]} "
                          "positions is not a square plus one")
    return dataclasses.replace(config, pool="attention", image_size=side * config.downsample_factor)
