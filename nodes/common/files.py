"""Finding model files and reading their tensors without ever running code from them.

A model path comes from a workflow. A relative name is looked up in each models folder of the
host in turn (``Folders.model_folders``: the user's folder(s), then the package's own), the first
that has it wins; the name itself may not leave its folder (``confined`` refuses ``..``,
absolute and odd names), but symbolic links inside a models folder are followed, since the
folder is the user's own. An absolute path is accepted only when it exists and the host allows
it (the CLI does: a user typing one means it). Weights are read from safetensors, or from a
pickle (``.pth``/``.pt``/``.ckpt``/``.bin``) through ``torch.load(weights_only=True)``, whose
unpickler refuses every global that is not a tensor building block, so a pickle carrying code is
rejected before anything in it runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
from collections.abc import Callable, Hashable, Iterable, Iterator
from pathlib import Path
from typing import Any

import safetensors
import safetensors.torch
import torch

from ...executor.context import PACKAGE_MODELS, Folders
from ...executor.paths import UnsafePath, check_name, confined

StateDict = dict[str, torch.Tensor]

SAFETENSORS_SUFFIXES = (".safetensors", ".sft")
PICKLE_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin")
# Checkpoints saved by training loops wrap the weights: {"state_dict": {...}, "epoch": ...}.
WRAPPER_KEYS = ("state_dict", "model", "module")


# The small models latentgraph ships in its models folder, and the command that re-creates each.
# (models/README.md gives the time each takes and the CPU recipe of the GPU-trained ones.)
SHIPPED_MODELS = {
    "shapes_sd": "python -m latentgraph.training.train_sd --out models/shapes_sd --device cuda",
    "shapes_sana": "python -m latentgraph.training.train_sana --out models/shapes_sana --batch 64 "
                   "--pool 20000 --workers 2 --steps 8000",
    "shapes_var": "python -m latentgraph.training.train_var --out models/shapes_var --device cuda",
    "shapes_stylegan": "python -m latentgraph.training.train_stylegan --out models/shapes_stylegan --threads 1",
    "shapes_flux": "python -m latentgraph.training.train_flux --out models/shapes_flux --batch 64 "
                   "--pool 20000 --workers 2 --steps 8000",
    "shapes_adm": "python -m latentgraph.training.train_adm --out models/shapes_adm",
}


class CheckpointError(ValueError):
    """A file or folder that cannot be used as the model asked for; the message names it."""


class ModelNotFound(CheckpointError):
    """A relative model name that none of the models folders holds."""


def not_found_message(folders: Folders, name: str) -> str:
    """What a user needs when a model is nowhere: the folders searched, how to add one, and, for
    one of the shipped models, the command that re-creates it.

    A host that takes absolute model paths (the CLI, ComfyUI) is the user's own machine, so the
    folders are given by their paths; a server (``absolute_models`` off) answers clients
    elsewhere and names each by its last part only, as other messages name files.
    """
    parts = check_name(name)
    searched = []
    for folder in folders.model_folders:
        if folders.absolute_models:
            where = os.path.abspath(folder)
        else:
            where = "latentgraph's own models/" if Path(folder) == PACKAGE_MODELS else f"{Path(folder).name}/"
        link = Path(folder).joinpath(*parts)
        if link.is_symlink():
            target = os.readlink(link) if folders.absolute_models else Path(os.readlink(link)).name
            where += f" (where '{name}' is a link to the missing {target})"
        searched.append(where)
    message = (f"'{name}' does not exist in any models folder (searched {', '.join(searched)}); "
               f"{folders.models_hint}")
    command = SHIPPED_MODELS.get(parts[0])
    if command is not None:
        message += (f". '{parts[0]}' is one of latentgraph's shipped models: re-create it with "
                    f"`{command}` (see models/README.md)")
    return message


def resolve_model_path(folders: Folders, name: str) -> Path:
    """The file or folder ``name`` names: the first models folder holding it (links inside the
    folder followed), or an existing absolute path where the host allows those. Raises
    ModelNotFound when no folder has it, CheckpointError when the name is unsafe."""
    candidate = Path(name)
    if candidate.is_absolute():
        if not folders.absolute_models:
            raise CheckpointError(f"'{name}': absolute paths are not allowed here; give a name "
                                  "inside a models folder")
        if not candidate.exists():
            raise ModelNotFound(f"'{name}' does not exist")
        return candidate  # links not resolved: their names tell the format (see ``confined``)
    try:
        for folder in folders.model_folders:
            path = confined(folder, name, follow_links=True)
            if path.exists():
                return path
        raise ModelNotFound(not_found_message(folders, name))
    except UnsafePath as err:
        raise CheckpointError(f"'{name}': {err}") from None


def path_fingerprint(folders: Folders, name: Any) -> Hashable:
    """Identity of a model file or folder (path, where its links lead, size, mtime; a folder
    hashes its file list), so that editing the weights, pointing a link elsewhere, or a copy
    appearing in an earlier models folder re-executes the nodes reading them."""
    if not isinstance(name, str):
        return None  # linked from another node: its signature stands for the name
    try:
        path = resolve_model_path(folders, name)
    except (CheckpointError, OSError):
        return ("missing", str(name))  # run() reports the problem
    if path.is_file():
        stat = path.stat()
        return (str(path), os.path.realpath(path), stat.st_size, stat.st_mtime_ns)
    digest = hashlib.blake2b(digest_size=16)
    for file, relative in _folder_files(path):
        stat = file.stat()
        digest.update(f"{relative}\0{os.path.realpath(file)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return (str(path), os.path.realpath(path), digest.hexdigest())


def _folder_files(root: Path) -> Iterator[tuple[Path, str]]:
    """The visible files under ``root`` with their relative names, sorted, following linked
    subfolders (a pipeline folder whose ``unet/`` links elsewhere) but never one twice."""
    seen: set[str] = set()
    found: list[tuple[str, Path]] = []
    for current, dirs, files in os.walk(root, followlinks=True):
        real = os.path.realpath(current)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for file in files:
            path = Path(current, file)
            if not file.startswith(".") and path.is_file():
                found.append((path.relative_to(root).as_posix(), path))
    for relative, path in sorted(found):
        yield path, relative


def display_name(path: Path) -> str:
    """The short name used in error messages: parent folder and file name."""
    return f"{path.parent.name}/{path.name}" if path.parent.name else path.name


def read_tokenizer(folder: Path, tokenizer_cls: Any, files: tuple[str, ...], what: str) -> Any:
    """A transformers tokenizer saved in ``folder`` (offline), or CheckpointError naming the
    folder and the files it should hold."""
    if not any((folder / f).is_file() for f in files):
        raise CheckpointError(f"{display_name(folder)}/ holds no tokenizer files ({' or '.join(files)})")
    try:
        return tokenizer_cls.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError, TypeError) as err:
        raise CheckpointError(f"{display_name(folder)}/: cannot read the {what} tokenizer: {err}") from None


def _is_index(path: Path) -> bool:
    """A sharded checkpoint's index (``*.safetensors.index.json``)."""
    return path.name.endswith(".safetensors.index.json")


class WeightFile:
    """A checkpoint on disk. ``keys()`` is cheap for safetensors (the header only), so loaders
    can recognise a layout and read just the tensors they need from a multi-model file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._tensors: StateDict | None = None
        self._keys: list[str] | None = None
        if not path.is_file():
            raise CheckpointError(f"{display_name(path)} is not a file")
        if path.suffix not in SAFETENSORS_SUFFIXES + PICKLE_SUFFIXES and not _is_index(path):
            raise CheckpointError(
                f"{display_name(path)}: unsupported checkpoint format '{path.suffix}' "
                f"(use .safetensors, or .pth/.pt/.ckpt/.bin holding only tensors)"
            )

    def keys(self) -> list[str]:
        if self._keys is None:
            if self.path.suffix in SAFETENSORS_SUFFIXES:
                try:
                    with safetensors.safe_open(str(self.path), framework="pt", device="cpu") as f:
                        self._keys = list(f.keys())
                except Exception as err:  # safetensors raises its own error types for bad headers
                    raise CheckpointError(
                        f"{display_name(self.path)} is not a safetensors checkpoint: {err}"
                    ) from None
            elif _is_index(self.path):
                self._keys = list(_shard_map(self.path))
            else:
                self._keys = list(self.tensors())
        return self._keys

    def tensors(self, keep: Callable[[str], bool] | None = None) -> StateDict:
        """The tensors whose key passes ``keep`` (all of them by default)."""
        if self.path.suffix in SAFETENSORS_SUFFIXES:
            wanted = [k for k in self.keys() if keep is None or keep(k)]
            return _read_safetensors(self.path, wanted)
        if _is_index(self.path):
            shards = _shard_map(self.path)
            by_shard: dict[Path, list[str]] = {}
            for key, shard in shards.items():
                if keep is None or keep(key):
                    by_shard.setdefault(shard, []).append(key)
            out: StateDict = {}
            for shard, keys in by_shard.items():
                out.update(WeightFile(shard).tensors(set(keys).__contains__))
            return out
        if self._tensors is None:
            self._tensors = read_pickled_tensors(self.path)
        return {k: v for k, v in self._tensors.items() if keep is None or keep(k)}


def _read_safetensors(path: Path, keys: Iterable[str]) -> StateDict:
    try:
        with safetensors.safe_open(str(path), framework="pt", device="cpu") as f:
            return {k: f.get_tensor(k) for k in keys}
    except Exception as err:
        raise CheckpointError(f"{display_name(path)}: cannot read tensors: {err}") from None


def _shard_map(index: Path) -> dict[str, Path]:
    """key -> shard file of a sharded checkpoint; shard names must stay inside its folder
    (though links there are followed: a Hugging Face snapshot's files link to its blobs)."""
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
        if not isinstance(weight_map, dict):
            raise TypeError("weight_map is not an object")
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"{display_name(index)} is not a shard index: {err}") from None
    shards: dict[str, Path] = {}
    for key, shard in weight_map.items():
        try:
            shards[key] = confined(index.parent, str(shard), must_exist=True, follow_links=True)
        except (UnsafePath, FileNotFoundError) as err:
            raise CheckpointError(f"{display_name(index)}: shard '{shard}': {err}") from None
    return shards


def read_pickled_tensors(path: Path) -> StateDict:
    """Tensors of a pickle checkpoint, refusing any pickle that needs more than tensor globals."""
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True, mmap=_is_zip(path))
    except pickle.UnpicklingError as err:
        detail = _unpickler_complaint(str(err))
        if "global" in detail.lower():
            raise CheckpointError(
                f"{display_name(path)} was refused: {detail}, which a weights-only load does not build; "
                "nothing in it was run. Convert it to .safetensors from a source you trust"
            ) from None
        raise CheckpointError(
            f"{display_name(path)} is not a readable checkpoint ({detail}); nothing in it was run"
        ) from None
    except (RuntimeError, OSError, EOFError, ValueError) as err:
        raise CheckpointError(f"{display_name(path)} is not a readable checkpoint: {err}") from None
    return flat_tensors(loaded, display_name(path))


def _unpickler_complaint(message: str) -> str:
    """The useful sentence of torch's long weights-only error, e.g. 'Unsupported global: GLOBAL exec'."""
    match = re.search(
        r"WeightsUnpickler error:\s*(.+?)(?: was not an allowed global|\n\n|$)", message, re.S
    )
    return " ".join(match.group(1).split()) if match else "not a tensors-only pickle"


def _is_zip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == b"PK\x03\x04"


def flat_tensors(loaded: Any, source: str) -> StateDict:
    """The flat name -> tensor dict inside a loaded checkpoint, unwrapping {"state_dict": ...}."""
    while isinstance(loaded, dict):
        wrapped = next((loaded[k] for k in WRAPPER_KEYS if isinstance(loaded.get(k), dict)), None)
        if wrapped is None or any(isinstance(v, torch.Tensor) for v in loaded.values()):
            break
        loaded = wrapped
    if not isinstance(loaded, dict) or not loaded:
        raise CheckpointError(f"{source} holds no state dict of tensors")
    tensors = {k: v for k, v in loaded.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError(f"{source} holds no tensors")
    return tensors


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{display_name(path)} is not readable JSON: {err}") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{display_name(path)} does not hold a JSON object")
    return data


# Weight file names of one diffusers/transformers component, in order of preference (full
# precision first, then the half-precision variants some repositories ship instead).
COMPONENT_WEIGHTS = tuple(
    f"{stem}{variant}{suffix}"
    for variant in ("", ".fp16", ".bf16")
    for suffix in (".safetensors", ".safetensors.index.json")
    for stem in ("diffusion_pytorch_model", "model")
) + ("diffusion_pytorch_model.bin", "pytorch_model.bin")


def component_weights(folder: Path) -> WeightFile:
    """The weight file of a diffusers/transformers component folder (config.json + weights)."""
    for name in COMPONENT_WEIGHTS:
        if (folder / name).is_file():
            return WeightFile(folder / name)
    raise CheckpointError(
        f"{display_name(folder)}/ holds no weights (looked for {', '.join(COMPONENT_WEIGHTS[:4])}, ...)"
    )
