"""Which loader reads a path: diffusers pipeline folders, component folders, and single weight
files recognised by their key layout. The loaders themselves are the families' own, found in the
:class:`~.families.Families` registry the caller passes; every failure is a CheckpointError
naming the file."""

from __future__ import annotations

import weakref
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import torch

from .components import class_name
from .families import Families, ModelFolder, pipeline_component
from .files import (
    COMPONENT_WEIGHTS,
    CheckpointError,
    WeightFile,
    component_weights,
    display_name,
    read_json,
)
from .layouts import ALL_PARTS, Part

__all__ = ["ALL_PARTS", "NODE_FOR_PART", "Part", "load_parts"]

NODE_FOR_PART = {
    "denoiser": "LG_LoadDenoiser",
    "text_encoder": "LG_LoadTextEncoder",
    "autoencoder": "LG_LoadAutoencoder",
}

# Loaded parts, shared while anything holds them: a checkpoint loaded by LG_LoadCheckpoint and
# its text encoder loaded again by LG_LoadTextEncoder are one model in memory (for one registry:
# another may read the same file with other loaders).
_loaded: weakref.WeakValueDictionary[tuple[Families, Hashable, str, str], Any] = (
    weakref.WeakValueDictionary()
)


def load_parts(
    families: Families,
    path: Path,
    parts: tuple[Part, ...],
    device: torch.device,
    identity: Hashable,
) -> dict[str, Any]:
    """The requested parts of the model at ``path``, read by the loaders of ``families``;
    ``identity`` is its file fingerprint."""
    out: dict[str, Any] = {}
    missing: list[Part] = []
    for part in parts:
        shared = _loaded.get((families, identity, part, str(device)))
        if shared is not None:
            out[part] = shared.to(device)  # it may have been offloaded to the CPU meanwhile
        else:
            missing.append(part)
    if missing:
        loaded = _load(families, path, tuple(missing), device)
        for name, value in loaded.items():
            _loaded[(families, identity, name, str(device))] = value
        out.update(loaded)
    return out


def _load(
    families: Families, path: Path, parts: tuple[Part, ...], device: torch.device
) -> dict[str, Any]:
    if path.is_dir():
        if (path / "model_index.json").is_file():
            return _pipeline(families, path, parts, device)
        if class_name(_sidecar(path / "config.json")):
            return _component(families, path, parts, device)
        if (path / "config.json").is_file():  # a research checkpoint with its own small config
            return _single_file(families, component_weights(path), parts, device)
        raise CheckpointError(
            f"{display_name(path)}/ is neither a diffusers pipeline (model_index.json) "
            "nor a model folder (config.json)"
        )
    if path.name in COMPONENT_WEIGHTS and class_name(_sidecar(path.parent / "config.json")):
        return _component(families, path.parent, parts, device)
    return _single_file(families, WeightFile(path), parts, device)


# --- diffusers folders --------------------------------------------------------------------------


def _pipeline(
    families: Families, folder: Path, parts: tuple[Part, ...], device: torch.device
) -> dict[str, Any]:
    index = read_json(folder / "model_index.json")
    pipeline = str(index.get("_class_name", "?"))
    family = families.pipeline_family(index)
    if family is None:
        raise CheckpointError(
            f"{display_name(folder)}/ is a {pipeline} pipeline; latentgraph loads "
            f"{families.pipeline_titles()} pipelines"
        )
    out: dict[str, Any] = {}
    for part in parts:
        if part not in family.pipeline:
            raise CheckpointError(
                f"{display_name(folder)}/: latentgraph reads no {part.replace('_', ' ')} of a "
                f"{family.title} pipeline"
            )
        sub, cls = family.pipeline[part]
        component = ModelFolder(
            pipeline_component(folder, pipeline, sub), folder, whole=True, pipeline_class=pipeline
        )
        out[part] = family.components[cls].load(component, device)
    return out


def _sidecar(config: Path) -> dict[str, Any]:
    return read_json(config) if config.is_file() else {}


def _component(
    families: Families, folder: Path, parts: tuple[Part, ...], device: torch.device
) -> dict[str, Any]:
    """A single model folder (config.json + weights), e.g. ``unet/`` or ``text_encoder/``."""
    cls = class_name(read_json(folder / "config.json"))
    found = families.component(cls)
    if found is None:
        raise CheckpointError(
            f"{display_name(folder)}/ holds a {cls or 'model of unknown class'}, which latentgraph "
            "does not load"
        )
    _, component = found
    _check_parts(display_name(folder), f"a {cls}", component.part, parts)
    root = folder.parent if (folder.parent / "model_index.json").is_file() else None
    return {component.part: component.load(ModelFolder(folder, root), device)}


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
    families: Families, weights: WeightFile, parts: tuple[Part, ...], device: torch.device
) -> dict[str, Any]:
    name = display_name(weights.path)
    layouts = families.detect(weights.keys())
    unread = families.unread(layouts)
    if unread:
        raise CheckpointError(_another_family(families, name, unread))
    if len(parts) > 1 and families.whole_file_family(layouts, parts) is None:
        raise CheckpointError(
            f"{name} holds {families.describe(layouts)}, not a whole model: LG_LoadCheckpoint "
            f"reads single-file checkpoints ({families.whole_file_titles()}) and pipeline folders "
            f"({families.pipeline_titles()}); load single models with LG_LoadDenoiser, "
            "LG_LoadTextEncoder or LG_LoadAutoencoder"
        )
    out: dict[str, Any] = {}
    for part in parts:
        out[part] = _single_part(families, weights, part, layouts, device)
    return out


def _another_family(families: Families, name: str, unread: set[str]) -> str:
    message = (
        f"{name} is {families.describe(unread)}: another model family "
        f"(these loaders read {families.titles()}"
    )
    nodes = [
        node
        for family in families
        if any(families.owner(layout) is family for layout in unread)
        for node in family.loaded_by
    ]
    if nodes:
        message += f"; load it with {' or '.join(nodes)}"
    return message + ")"


def _single_part(
    families: Families, weights: WeightFile, part: Part, layouts: set[str], device: torch.device
) -> Any:
    name = display_name(weights.path)
    layout = families.loader_for(layouts, part)
    if layout is not None and layout.load is not None:
        return layout.load(weights, device)
    needs_config = {n for n in layouts if families.layout(n).load is None}
    if needs_config:
        raise CheckpointError(
            f"{name} holds {families.describe(needs_config)} in diffusers/transformers layout; "
            "give the folder with its config.json instead"
        )
    raise CheckpointError(
        f"{name} holds no {part.replace('_', ' ')} latentgraph can load "
        f"(it holds {families.describe(layouts)})"
    )
