"""Loading one model from a diffusers/transformers component folder (config.json + weights), or
from a config and a state dict, through our strict, code-free weight reading."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from .files import CheckpointError, StateDict, component_weights, display_name, read_json
from .models import build_empty, load_strict, ready


def diffusers_model(
    cls: Any,
    config: dict[str, Any],
    weights: StateDict,
    source: str,
    device: torch.device,
    dtype: torch.dtype,
) -> nn.Module:
    """A diffusers ModelMixin from its config dict and (already converted) weights."""
    try:
        model = build_empty(lambda: cls.from_config(config))
    except (TypeError, ValueError, KeyError, AssertionError) as err:
        raise CheckpointError(f"{source}: invalid {cls.__name__} config: {err}") from None
    load_strict(model, weights, source)
    return ready(model, device, dtype)


def transformers_model(
    model_cls: Any,
    config: Any,
    weights: StateDict,
    source: str,
    device: torch.device,
    dtype: torch.dtype,
) -> nn.Module:
    """A transformers PreTrainedModel from its config object and weights."""
    try:
        model = build_empty(lambda: model_cls(config))
    except (TypeError, ValueError, KeyError) as err:
        raise CheckpointError(f"{source}: invalid {model_cls.__name__} config: {err}") from None
    load_strict(model, weights, source)
    return ready(model, device, dtype)


def folder_config(folder: Path) -> dict[str, Any]:
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise CheckpointError(f"{display_name(folder)}/ has no config.json")
    return read_json(config_file)


def folder_weights(folder: Path) -> StateDict:
    """All tensors of a component folder."""
    return component_weights(folder).tensors()


def class_name(config: dict[str, Any]) -> str:
    """The model class a config names: diffusers' ``_class_name`` or transformers' architectures."""
    if isinstance(config.get("_class_name"), str):
        return config["_class_name"]
    architectures = config.get("architectures")
    if isinstance(architectures, list) and architectures:
        return str(architectures[0])
    return str(config.get("model_type", ""))
