"""Output cache keyed by node signature: a byte-bounded LRU for values, a separate tier for
models, and an optional disk tier (safetensors) that a later process can reuse.

A cache entry is a node's whole result: its tuple of outputs and its UI payload.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import torch

_SMALL_OBJECT_BYTES = 64


class Entry(NamedTuple):
    """A node's cached result (a named tuple: made once per executed node, so made cheaply)."""

    outputs: tuple[Any, ...]
    ui: dict[str, Any] | None = None
    #: Indices of lazy outputs the node skipped (None here): the entry cannot serve them.
    skipped: frozenset[int] = frozenset()


# None also stands for a lazy output left out
_SCALAR_KINDS = frozenset({int, float, bool, type(None)})


def nbytes(value: Any, _seen: set[int] | None = None) -> int:
    """Memory held by a value: tensors by their bytes, modules by parameters and buffers,
    containers and dataclasses summed; anything else counts as a small object."""
    kind = type(value)
    if kind is torch.Tensor:  # the common cases first, by exact type, without the generic walk
        tensor: torch.Tensor = value
        return tensor.numel() * tensor.element_size()
    if kind in _SCALAR_KINDS:
        return _SMALL_OBJECT_BYTES
    if kind is str:
        return len(value) + _SMALL_OBJECT_BYTES
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, int | float | bool | type(None)):
        return _SMALL_OBJECT_BYTES
    if isinstance(value, str | bytes):
        return len(value) + _SMALL_OBJECT_BYTES
    seen = _seen if _seen is not None else set()
    if id(value) in seen:
        return 0
    seen.add(id(value))
    if isinstance(value, torch.nn.Module):
        return sum(nbytes(t, seen) for t in (*value.parameters(), *value.buffers()))
    if isinstance(value, Entry):
        return nbytes(value.outputs, seen)
    if isinstance(value, dict):
        return sum(nbytes(v, seen) for v in value.values()) + _SMALL_OBJECT_BYTES
    if isinstance(value, list | tuple | set | frozenset):
        return sum(nbytes(v, seen) for v in value) + _SMALL_OBJECT_BYTES
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return sum([nbytes(getattr(value, name), seen) for name in _field_names(type(value))])
    reported = getattr(value, "nbytes", None)
    if isinstance(reported, int):
        return reported
    if hasattr(value, "__dict__"):
        return sum(nbytes(v, seen) for v in vars(value).values()) + _SMALL_OBJECT_BYTES
    return sys.getsizeof(value)


@functools.cache
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


def entry_bytes(entry: Entry) -> int:
    """nbytes of a node's outputs, with the common shapes (a tensor, a LATENT dict of tensors,
    a number) counted directly: this runs once per executed node."""
    total = _SMALL_OBJECT_BYTES
    for value in entry.outputs:
        kind = type(value)
        if kind is torch.Tensor:
            total += value.nbytes
        elif kind is dict:
            total += _SMALL_OBJECT_BYTES
            for item in value.values():
                total += item.nbytes if type(item) is torch.Tensor else nbytes(item)
        elif kind in _SCALAR_KINDS:
            total += _SMALL_OBJECT_BYTES
        else:
            total += nbytes(value)
    return total


_PLAIN_TYPES = frozenset({torch.Tensor, dict, list, tuple, int, float, bool, str, type(None)})


def is_model(value: Any) -> bool:
    """Models (and objects that say they hold one) live in the model tier."""
    if type(value) in _PLAIN_TYPES:  # most outputs: answered without a failing attribute lookup
        return False
    return isinstance(value, torch.nn.Module) or bool(getattr(value, "is_model", False))


class ByteLRU:
    """Least-recently-used map bounded by the bytes of its values. Thread-safe.

    A plain dict keeps the order: insertion order is recency, oldest first (a use moves the key
    to the end), and a dict stores faster than an OrderedDict, once per executed node."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._items: dict[str, tuple[Entry, int]] = {}
        self._lock = threading.Lock()
        # Keys the running workflow holds: evicted last, and only if nothing else is left.
        self.pinned: set[str] = set()

    def get(self, key: str) -> Entry | None:
        if key not in self._items:  # a miss needs no lock (a dict lookup is atomic)
            return None
        with self._lock:
            item = self._items.pop(key, None)
            if item is None:
                return None
            self._items[key] = item  # now the most recent
            return item[0]

    def put(self, key: str, entry: Entry, size: int) -> list[tuple[str, Entry, int]]:
        """Store and evict down to the bound, least recently used (and unpinned) first; returns
        what was evicted. A value larger than the whole bound is not stored at all."""
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self.bytes -= old[1]
            if size > self.max_bytes:
                return []
            self._items[key] = (entry, size)
            self.bytes += size
            evicted = []
            while self.bytes > self.max_bytes:
                victim = next((k for k in self._items if k not in self.pinned and k != key), None)
                if victim is None:
                    victim = next(iter(self._items))
                gone, gone_size = self._items.pop(victim)
                self.bytes -= gone_size
                evicted.append((victim, gone, gone_size))
            return evicted

    def pop(self, key: str) -> Entry | None:
        with self._lock:
            item = self._items.pop(key, None)
            if item is None:
                return None
            self.bytes -= item[1]
            return item[0]

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.bytes = 0

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: str) -> bool:
        return key in self._items

    def keys(self) -> Iterator[str]:
        return iter(list(self._items))


class DiskCache:
    """Tensor-valued results as safetensors files named by signature, bounded by total bytes.

    A file is trusted only if it parses, its metadata names the exact signature it is filed
    under and our format, and its layout rebuilds; anything else is ignored and removed.
    """

    FORMAT = "latentgraph-cache/1"

    def __init__(self, directory: str | os.PathLike[str], max_bytes: int) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes

    def _path(self, key: str) -> Path:
        return self.dir / f"{key}.safetensors"

    def get(self, key: str, device: torch.device) -> Entry | None:
        from safetensors import safe_open

        path = self._path(key)
        if not path.is_file():
            return None
        try:
            with safe_open(str(path), framework="pt", device="cpu") as f:
                meta = f.metadata() or {}
                if meta.get("format") != self.FORMAT or meta.get("signature") != key:
                    raise ValueError("foreign or misfiled cache file")
                tensors = {name: f.get_tensor(name) for name in f.keys()}
            layout = json.loads(meta["layout"])
            outputs = tuple(_rebuild(item, tensors, device) for item in layout)
            ui = json.loads(meta["ui"]) if meta.get("ui") else None
        except Exception:  # a damaged file of any kind: never trusted
            path.unlink(missing_ok=True)
            return None
        os.utime(path)  # recency for eviction
        return Entry(outputs, ui)

    def put(self, key: str, entry: Entry) -> bool:
        """Persist if every output is tensors/plain data; returns whether it was written."""
        from safetensors.torch import save_file

        tensors: dict[str, torch.Tensor] = {}
        try:
            layout = [_flatten(v, tensors) for v in entry.outputs]
            meta = {
                "format": self.FORMAT,
                "signature": key,
                "layout": json.dumps(layout),
                "ui": json.dumps(entry.ui) if entry.ui else "",
            }
        except (TypeError, ValueError):
            return False
        size = sum(t.numel() * t.element_size() for t in tensors.values())
        if size > self.max_bytes:
            return False
        fd, tmp = tempfile.mkstemp(dir=self.dir, suffix=".tmp")
        os.close(fd)
        try:
            save_file(tensors, tmp, metadata=meta)
            os.replace(tmp, self._path(key))
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        self._evict()
        return True

    def _evict(self) -> None:
        files = sorted(self.dir.glob("*.safetensors"), key=lambda p: p.stat().st_mtime)
        total = sum(p.stat().st_size for p in files)
        while files and total > self.max_bytes:
            oldest = files.pop(0)
            total -= oldest.stat().st_size
            oldest.unlink(missing_ok=True)


def _flatten(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """JSON layout of a value, moving its tensors into ``tensors``; TypeError if unsupported."""
    if isinstance(value, torch.Tensor):
        name = f"t{len(tensors)}"
        tensors[name] = value.detach().to("cpu").contiguous()
        return {"tensor": name}
    if value is None or isinstance(value, bool | int | float | str):
        return {"value": value}
    if isinstance(value, list | tuple):
        return {
            "list" if isinstance(value, list) else "tuple": [_flatten(v, tensors) for v in value]
        }
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {"dict": {k: _flatten(v, tensors) for k, v in value.items()}}
    raise TypeError(f"{type(value).__name__} is not stored in the disk cache")


def _rebuild(item: dict[str, Any], tensors: dict[str, torch.Tensor], device: torch.device) -> Any:
    ((kind, payload),) = item.items()
    if kind == "tensor":
        return tensors[payload].to(device)
    if kind == "value":
        return payload
    if kind == "list":
        return [_rebuild(v, tensors, device) for v in payload]
    if kind == "tuple":
        return tuple(_rebuild(v, tensors, device) for v in payload)
    if kind == "dict":
        return {k: _rebuild(v, tensors, device) for k, v in payload.items()}
    raise ValueError(f"unknown layout kind {kind!r}")


def _move_models(entry: Entry, device: torch.device) -> Entry:
    """The entry with its models moved (nn.Module.to moves in place; wrappers implement to())."""
    moved = tuple(v.to(device) if is_model(v) and hasattr(v, "to") else v for v in entry.outputs)
    return Entry(moved, entry.ui, entry.skipped)


class OutputCache:
    """The executor's cache: values tier, model tier, and the optional disk tier.

    Models live on the compute device within ``model_bytes``. Under pressure the least recently
    used model not held by the running workflow is offloaded to the CPU (within
    ``offload_bytes``) instead of being dropped, and comes back to the device when asked for.
    """

    def __init__(
        self,
        max_bytes: int,
        model_bytes: int,
        cache_dir: str | os.PathLike[str] | None = None,
        disk_bytes: int = 0,
        *,
        device: torch.device | None = None,
        offload_bytes: int = 0,
    ) -> None:
        self.values = ByteLRU(max_bytes)
        self.models = ByteLRU(model_bytes)
        self.offloaded = ByteLRU(offload_bytes)
        self.device = device or torch.device("cpu")
        self.disk = DiskCache(cache_dir, disk_bytes) if cache_dir is not None else None

    def get(self, key: str) -> Entry | None:
        entry = self.values.get(key) or self.models.get(key)
        if (
            entry is None
            and key in self.offloaded
            and (entry := self.offloaded.pop(key)) is not None
        ):
            entry = _move_models(entry, self.device)
            self.put(key, entry)
        return entry

    def pin(self, keys: set[str]) -> None:
        """Models the running workflow uses are never offloaded under it."""
        self.models.pinned = keys

    def _put_model(self, key: str, entry: Entry) -> None:
        for gone_key, gone, size in self.models.put(key, entry, entry_bytes(entry)):
            if self.device.type != "cpu" and gone_key not in self.models.pinned:
                self.offloaded.put(gone_key, _move_models(gone, torch.device("cpu")), size)

    def get_from_disk(self, key: str, device: torch.device) -> Entry | None:
        if self.disk is None:
            return None
        entry = self.disk.get(key, device)
        if entry is not None:
            self.put(key, entry)
        return entry

    def put(self, key: str, entry: Entry) -> None:
        for value in entry.outputs:
            if type(value) not in _PLAIN_TYPES and is_model(value):  # plain outputs without a call
                self._put_model(key, entry)
                return
        self.values.put(key, entry, entry_bytes(entry))

    def persist(self, key: str, entry: Entry) -> bool:
        return self.disk.put(key, entry) if self.disk is not None else False

    def __contains__(self, key: str) -> bool:
        return key in self.values or key in self.models or key in self.offloaded

    def clear(self, models: bool = True) -> None:
        self.values.clear()
        if models:
            self.models.clear()
            self.offloaded.clear()
