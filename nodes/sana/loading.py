"""Loading SANA parts: diffusers pipeline/component folders, NVlabs DiT checkpoints and MIT DC-AE
checkpoints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..common.components import diffusers_model, folder_config, folder_weights, transformers_model
from ..common.files import CheckpointError, WeightFile, display_name, read_json, read_tokenizer
from ..common.schedules import SANA, TrainingSchedule, flow_schedule
from .dcae import dcae_from_efficientvit
from .models import DCAutoencoder, GemmaTextEncoder, SanaDenoiser
from .nvlabs import transformer_from_nvlabs

TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model")


def model_dtype(device: torch.device) -> torch.dtype:
    """The dtype SANA's parts load in on ``device``: its Family record's, by the one policy."""
    from .family import FAMILY  # (the record refers to this module's loaders)

    return FAMILY.compute_dtype(device)


def scheduler_schedule(folder: Path | None) -> TrainingSchedule:
    config_file = folder / "scheduler" / "scheduler_config.json" if folder is not None else None
    if config_file is None or not config_file.is_file():
        return SANA
    return flow_schedule(read_json(config_file), display_name(config_file))


def sidecar_config(weights: WeightFile) -> dict[str, Any] | None:
    """A config.json next to a weight file, describing it."""
    path = weights.path.with_name("config.json")
    return read_json(path) if path.is_file() else None


# --- diffusers folders --------------------------------------------------------------------------


def transformer_folder(
    folder: Path, training: TrainingSchedule, device: torch.device
) -> SanaDenoiser:
    from diffusers import SanaTransformer2DModel

    model = diffusers_model(
        SanaTransformer2DModel,
        folder_config(folder),
        folder_weights(folder),
        display_name(folder),
        device,
        model_dtype(device),
    )
    return SanaDenoiser(model, training)


def gemma_folder(folder: Path, tokenizer_folder: Path, device: torch.device) -> GemmaTextEncoder:
    from transformers import Gemma2Config, Gemma2Model

    tokenizer = gemma_tokenizer(tokenizer_folder)
    raw = folder_config(folder)
    if raw.get("model_type") != "gemma2":
        raise CheckpointError(
            f"{display_name(folder)}: a {raw.get('model_type')!r} model, not Gemma-2"
        )
    config = Gemma2Config.from_dict(raw)
    # A Gemma2ForCausalLM checkpoint adds the LM head (tied to the embeddings); SANA reads only the
    # transformer's hidden states.
    weights = {k: v for k, v in folder_weights(folder).items() if not k.startswith("lm_head.")}
    model = transformers_model(
        Gemma2Model, config, weights, display_name(folder), device, model_dtype(device)
    )
    return GemmaTextEncoder(model, tokenizer)


def gemma_tokenizer(folder: Path) -> Any:
    from transformers import AutoTokenizer

    return read_tokenizer(folder, AutoTokenizer, TOKENIZER_FILES, "Gemma")


def dcae_folder(folder: Path, device: torch.device) -> DCAutoencoder:
    from diffusers import AutoencoderDC

    model = diffusers_model(
        AutoencoderDC,
        folder_config(folder),
        folder_weights(folder),
        display_name(folder),
        device,
        model_dtype(device),
    )
    return DCAutoencoder(model)


# --- research-code checkpoints ------------------------------------------------------------------


def nvlabs_file(weights: WeightFile, device: torch.device) -> SanaDenoiser:
    from diffusers import SanaTransformer2DModel

    name = display_name(weights.path)
    config, converted = transformer_from_nvlabs(weights.tensors(), name, sidecar_config(weights))
    model = diffusers_model(
        SanaTransformer2DModel, config, converted, name, device, model_dtype(device)
    )
    return SanaDenoiser(model, SANA)


def efficientvit_file(weights: WeightFile, device: torch.device) -> DCAutoencoder:
    from diffusers import AutoencoderDC

    name = display_name(weights.path)
    config, converted = dcae_from_efficientvit(weights.tensors(), name, sidecar_config(weights))
    model = diffusers_model(AutoencoderDC, config, converted, name, device, model_dtype(device))
    return DCAutoencoder(model)
