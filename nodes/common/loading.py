"""Which loader reads a path: diffusers pipeline folders, component folders, and single weight
files recognised by their key layout. Every failure is a CheckpointError naming the file."""

from __future__ import annotations

import weakref
from collections.abc import Hashable
from pathlib import Path
from typing import Any, Literal

import torch

from ..ldm import loading as ldm
from ..sana import loading as sana
from .components import class_name
from .files import (
    COMPONENT_WEIGHTS,
    CheckpointError,
    WeightFile,
    component_weights,
    display_name,
    read_json,
)
from .layouts import describe, detect

Part = Literal["denoiser", "text_encoder", "autoencoder"]
ALL_PARTS: tuple[Part, ...] = ("denoiser", "text_encoder", "autoencoder")
NODE_FOR_PART = {
    "denoiser": "LG_LoadDenoiser",
    "text_encoder": "LG_LoadTextEncoder",
    "autoencoder": "LG_LoadAutoencoder",
}
OTHER_FAMILIES = {"sdxl", "sd2", "pixart", "flux", "sd3", "var", "vqvae"}

# Loaded parts, shared while anything holds them: a checkpoint loaded by LG_LoadCheckpoint and
# its text encoder loaded again by LG_LoadTextEncoder are one model in memory.
_loaded: weakref.WeakValueDictionary[tuple[Hashable, str, str], Any] = weakref.WeakValueDictionary()


def load_parts(
    path: Path, parts: tuple[Part, ...], device: torch.device, identity: Hashable
) -> dict[str, Any]:
    """The requested parts of the model at ``path``; ``identity`` is its file fingerprint."""
    out: dict[str, Any] = {}
    missing: list[Part] = []
    for part in parts:
        shared = _loaded.get((identity, part, str(device)))
        if shared is not None:
            out[part] = shared.to(device)  # it may have been offloaded to the CPU meanwhile
        else:
            missing.append(part)
    if missing:
        loaded = _load(path, tuple(missing), device)
        for name, value in loaded.items():
            _loaded[(identity, name, str(device))] = value
        out.update(loaded)
    return out


def _load(path: Path, parts: tuple[Part, ...], device: torch.device) -> dict[str, Any]:
    if path.is_dir():
        if (path / "model_index.json").is_file():
            return _pipeline(path, parts, device)
        if class_name(_sidecar(path / "config.json")):
            return _component(path, parts, device)
        if (path / "config.json").is_file():  # a research checkpoint with its own small config
            return _single_file(component_weights(path), parts, device)
        raise CheckpointError(
            f"{display_name(path)}/ is neither a diffusers pipeline (model_index.json) "
            "nor a model folder (config.json)"
        )
    if path.name in COMPONENT_WEIGHTS and class_name(_sidecar(path.parent / "config.json")):
        return _component(path.parent, parts, device)
    return _single_file(WeightFile(path), parts, device)


# --- diffusers folders --------------------------------------------------------------------------


def _pipeline(folder: Path, parts: tuple[Part, ...], device: torch.device) -> dict[str, Any]:
    index = read_json(folder / "model_index.json")
    pipeline = str(index.get("_class_name", "?"))

    def component(name: str) -> Path:
        sub = folder / name
        if not sub.is_dir():
            raise CheckpointError(f"{display_name(folder)}/: the {pipeline} folder has no {name}/")
        return sub

    out: dict[str, Any] = {}
    if _component_class(index, "unet") == "UNet2DConditionModel":
        if "denoiser" in parts:
            out["denoiser"] = ldm.unet_folder(
                component("unet"), ldm.scheduler_schedule(folder), device
            )
        if "text_encoder" in parts:
            out["text_encoder"] = ldm.clip_folder(
                component("text_encoder"), component("tokenizer"), device
            )
        if "autoencoder" in parts:
            out["autoencoder"] = ldm.kl_vae_folder(component("vae"), device)
    elif _component_class(index, "transformer") == "SanaTransformer2DModel":
        if "denoiser" in parts:
            out["denoiser"] = sana.transformer_folder(
                component("transformer"), sana.scheduler_schedule(folder), device
            )
        if "text_encoder" in parts:
            out["text_encoder"] = sana.gemma_folder(
                component("text_encoder"), component("tokenizer"), device
            )
        if "autoencoder" in parts:
            out["autoencoder"] = sana.dcae_folder(component("vae"), device)
    else:
        raise CheckpointError(
            f"{display_name(folder)}/ is a {pipeline} pipeline; latentgraph loads "
            "Stable Diffusion 1.x and SANA pipelines"
        )
    return out


def _sidecar(config: Path) -> dict[str, Any]:
    return read_json(config) if config.is_file() else {}


def _component_class(index: dict[str, Any], name: str) -> str | None:
    entry = index.get(name)
    return str(entry[1]) if isinstance(entry, list) and len(entry) == 2 else None


def _component(folder: Path, parts: tuple[Part, ...], device: torch.device) -> dict[str, Any]:
    """A single model folder (config.json + weights), e.g. ``unet/`` or ``text_encoder/``."""
    cls = class_name(read_json(folder / "config.json"))
    root = folder.parent if (folder.parent / "model_index.json").is_file() else None
    loaders = {
        "UNet2DConditionModel": (
            "denoiser",
            lambda: ldm.unet_folder(folder, ldm.scheduler_schedule(root), device),
        ),
        "SanaTransformer2DModel": (
            "denoiser",
            lambda: sana.transformer_folder(folder, sana.scheduler_schedule(root), device),
        ),
        "CLIPTextModel": (
            "text_encoder",
            lambda: ldm.clip_folder(folder, _tokenizer_folder(folder), device),
        ),
        "Gemma2Model": (
            "text_encoder",
            lambda: sana.gemma_folder(folder, _tokenizer_folder(folder), device),
        ),
        "Gemma2ForCausalLM": (
            "text_encoder",
            lambda: sana.gemma_folder(folder, _tokenizer_folder(folder), device),
        ),
        "AutoencoderKL": ("autoencoder", lambda: ldm.kl_vae_folder(folder, device)),
        "AutoencoderDC": ("autoencoder", lambda: sana.dcae_folder(folder, device)),
    }
    if cls not in loaders:
        raise CheckpointError(
            f"{display_name(folder)}/ holds a {cls or 'model of unknown class'}, which latentgraph "
            "does not load"
        )
    part, load = loaders[cls]
    _check_parts(display_name(folder), f"a {cls}", part, parts)
    return {part: load()}


def _tokenizer_folder(folder: Path) -> Path:
    """Tokenizer files beside the model, else the pipeline's sibling ``tokenizer/`` folder."""
    names = ("tokenizer.json", "vocab.json", "tokenizer.model")
    if any((folder / n).is_file() for n in names) or not (folder.parent / "tokenizer").is_dir():
        return folder
    return folder.parent / "tokenizer"


def _check_parts(name: str, what: str, part: str, wanted: tuple[Part, ...]) -> None:
    if len(wanted) > 1:
        raise CheckpointError(
            f"{name} holds only {what}; LG_LoadCheckpoint needs a whole pipeline "
            f"(load this one with {NODE_FOR_PART[part]})"
        )
    if wanted[0] != part:
        raise CheckpointError(
            f"{name} holds {what}, not a {wanted[0].replace('_', ' ')} "
            f"(load it with {NODE_FOR_PART[part]})"
        )


# --- single files -------------------------------------------------------------------------------


def _single_file(
    weights: WeightFile, parts: tuple[Part, ...], device: torch.device
) -> dict[str, Any]:
    name = display_name(weights.path)
    layouts = detect(weights.keys())
    if layouts & OTHER_FAMILIES:
        raise CheckpointError(
            f"{name} is {describe(layouts & OTHER_FAMILIES)}: another model family "
            "(these loaders read Stable Diffusion 1.x and SANA)"
        )
    sd_full = {"ldm_unet", "ldm_clip", "ldm_vae"} <= layouts
    if len(parts) > 1 and not sd_full:
        raise CheckpointError(
            f"{name} holds {describe(layouts)}, not a whole model: LG_LoadCheckpoint reads SD 1.x "
            "single-file checkpoints and SD/SANA pipeline folders; load single models with "
            "LG_LoadDenoiser, LG_LoadTextEncoder or LG_LoadAutoencoder"
        )
    out: dict[str, Any] = {}
    for part in parts:
        out[part] = _single_part(weights, part, layouts, device)
    return out


def _single_part(weights: WeightFile, part: Part, layouts: set[str], device: torch.device) -> Any:
    name = display_name(weights.path)
    if part == "denoiser":
        if layouts & {"ldm_unet", "ldm_unet_bare"}:
            return ldm.unet_file(weights, device, ldm.vae_ch_mult(weights))
        if "nvlabs_sana" in layouts:
            return sana.nvlabs_file(weights, device)
    elif part == "text_encoder":
        if layouts & {"ldm_clip", "clip_text"}:
            return ldm.clip_file(weights, device)
    elif "ldm_vae" in layouts:
        return ldm.vae_file(weights, device)
    elif "efficientvit_dcae" in layouts:
        return sana.efficientvit_file(weights, device)
    diffusers_layouts = layouts & {
        "diffusers_unet",
        "diffusers_vae",
        "diffusers_dcae",
        "diffusers_sana",
        "gemma",
    }
    if diffusers_layouts:
        raise CheckpointError(
            f"{name} holds {describe(diffusers_layouts)} in diffusers/transformers layout; "
            "give the folder with its config.json instead"
        )
    raise CheckpointError(
        f"{name} holds no {part.replace('_', ' ')} latentgraph can load "
        f"(it holds {describe(layouts)})"
    )
