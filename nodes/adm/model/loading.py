"""Building ADM networks from guided-diffusion state dicts (official key layout)."""

from __future__ import annotations

import torch

from .config import ConfigError, StateDict, infer_config, kind_of
from .unet import EncoderUNetModel, UNetModel

KIND_WORDS = {"unet": "an ADM diffusion U-Net", "classifier": "an ADM noisy classifier"}


def build(state_dict: StateDict, want: str, *, num_head_channels: int = 64, num_heads: int = 1,
          new_attention_order: bool = False, dtype: torch.dtype = torch.float32,
          device: torch.device | str = "cpu", source: str = "the checkpoint") -> UNetModel | EncoderUNetModel:
    """The network of kind ``want`` ('unet' or 'classifier') these weights are, loaded strictly.
    Raises ConfigError naming ``source`` when they are of the other kind or of no ADM network."""
    kind = kind_of(state_dict)
    if kind is None:
        raise ConfigError(f"{source} is not {KIND_WORDS[want]}: it lacks guided-diffusion's "
                          "time_embed / input_blocks keys")
    if kind != want:
        other = "LG_LoadADMClassifier" if kind == "classifier" else "LG_LoadADM"
        raise ConfigError(f"{source} is {KIND_WORDS[kind]}, not {KIND_WORDS[want]}; load it with {other}")
    try:
        _, config = infer_config(state_dict, num_head_channels, num_heads, new_attention_order)
        model = UNetModel(config) if kind == "unet" else EncoderUNetModel(config)
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None
    except ValueError as err:  # e.g. head channels that do not divide a level's width
        raise ConfigError(f"{source}: {err}; set num_head_channels (or 0 and num_heads) to the "
                          "model's") from None
    missing, unexpected = _mismatch(model.state_dict(), state_dict)
    if missing or unexpected:
        raise ConfigError(f"{source} does not fit the inferred {KIND_WORDS[kind]} "
                          f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    model.load_state_dict(dict(state_dict), strict=True)
    return model.to(device=device, dtype=dtype).eval().requires_grad_(False)


def _mismatch(expected: StateDict, given: StateDict) -> tuple[list[str], list[str]]:
    missing = sorted(k for k in expected if k not in given)
    unexpected = sorted(k for k in given if k not in expected)
    shapes = sorted(k for k in expected if k in given and expected[k].shape != given[k].shape)
    return missing + shapes, unexpected
