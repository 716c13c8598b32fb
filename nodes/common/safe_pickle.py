"""Reading network pickles (StyleGAN2-ADA / StyleGAN3 ``.pkl``) without running their code.

Those files are ``pickle.dump`` of a dict such as ``{"G": ..., "D": ..., "G_ema": ...,
"training_set_kwargs": {...}, "augment_pipe": ...}`` whose networks are objects of classes
made "persistent" by the training code: each pickles itself as a call
``torch_utils.persistence._reconstruct_persistent_obj(meta)``, where ``meta`` carries the
source code of the class's module (``module_src``), the class name and the object's
``__dict__`` (``state``: ``_parameters``, ``_buffers``, ``_modules`` and the init arguments).
A plain ``pickle.load`` would ``exec`` that source, and any pickle may name any callable.

``SafeUnpickler`` builds only data: tensors (through torch's own rebuild functions, storages
read with ``torch.load(weights_only=True)`` or from the zip of a ``torch.save`` file), plain
containers, numpy arrays and scalars, and torch dtypes. The persistence call is answered by
``PersistentRecord``, an inert record of the class name, the source text (kept, never run) and
the state. Every other global is refused with ``RefusedGlobal`` (a ``CheckpointError``) naming
the file and the global, before anything is called. ``state_dict_of`` flattens a record tree
into the ``{name: tensor}`` state dict the network's ``state_dict()`` would have given.
"""

from __future__ import annotations

import _compat_pickle
import io
import pickle
import warnings
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy
import torch

from .files import CheckpointError, StateDict, display_name

# The first object of a legacy (pre-zip) ``torch.save`` file.
_LEGACY_TORCH_MAGIC = 0x1950A86A20F9469CFC6C

# Storage classes torch's pickles name (``torch.FloatStorage``... and the untyped one).
_STORAGE_NAMES = frozenset({
    "UntypedStorage", "DoubleStorage", "FloatStorage", "HalfStorage", "BFloat16Storage",
    "LongStorage", "IntStorage", "ShortStorage", "CharStorage", "ByteStorage", "BoolStorage",
    "ComplexFloatStorage", "ComplexDoubleStorage",
})


class RefusedGlobal(CheckpointError):
    """A pickle that names a global which is not a data building block; nothing was called."""


@dataclass(frozen=True)
class PersistentRecord:
    """What a persistent network object of a training pickle holds, as data only.

    ``module_src`` is the text of the module that defined ``class_name``; it is kept so a
    caller can recognise the architecture (or show it), and never compiled or run here.
    ``state`` is the object's ``__dict__``: for a ``torch.nn.Module`` it has ``_parameters``,
    ``_buffers`` and ``_modules`` (sub-networks, themselves records), and the training code
    records the constructor's arguments in ``_init_args`` / ``_init_kwargs``.
    """

    class_name: str
    module_src: str = field(repr=False)
    state: dict[str, Any] = field(repr=False)

    @property
    def init_args(self) -> tuple[Any, ...]:
        return tuple(self.state.get("_init_args", ()))

    @property
    def init_kwargs(self) -> dict[str, Any]:
        return dict(self.state.get("_init_kwargs", {}))


class _EasyDict(dict):  # type: ignore[type-arg]
    """``dnnlib.util.EasyDict`` read as a plain dict (its attributes live in its items)."""

    def __setstate__(self, state: Any) -> None:
        if state:  # an EasyDict keeps nothing in __dict__; anything else is not that class
            raise pickle.UnpicklingError("an EasyDict with attribute state")


def _reconstruct_persistent(meta: Any) -> PersistentRecord:
    """Stands in for ``torch_utils.persistence._reconstruct_persistent_obj``: records, never execs."""
    if not isinstance(meta, dict) or meta.get("type") != "class":
        raise pickle.UnpicklingError("a persistent object whose meta is not a class record")
    state = meta.get("state")
    if state is None:
        state = {}
    if not isinstance(state, dict):
        raise pickle.UnpicklingError("a persistent object whose state is not a dict")
    return PersistentRecord(str(meta.get("class_name")), str(meta.get("module_src", "")), state)


def _rebuild_tensor_v2(storage: Any, *args: Any) -> torch.Tensor:
    if not isinstance(storage, (torch.storage.TypedStorage, torch.UntypedStorage)):
        raise pickle.UnpicklingError("a tensor rebuilt from something that is not a storage")
    return torch._utils._rebuild_tensor_v2(storage, *args)  # type: ignore[no-any-return]


def _rebuild_parameter(data: Any, requires_grad: Any, backward_hooks: Any) -> torch.Tensor:
    if not isinstance(data, torch.Tensor) or backward_hooks:
        raise pickle.UnpicklingError("a parameter that is not a plain tensor")
    return torch.nn.Parameter(data, bool(requires_grad))


def _load_from_bytes(data: Any) -> Any:
    """A storage pickled on its own (``torch.storage._load_from_bytes``), read weights-only."""
    if not isinstance(data, (bytes, bytearray)):
        raise pickle.UnpicklingError("storage bytes that are not bytes")
    storage = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    if not isinstance(storage, (torch.storage.TypedStorage, torch.UntypedStorage)):
        raise pickle.UnpicklingError("storage bytes that hold something else than a storage")
    return storage


def _codecs_encode(text: Any, encoding: str = "utf-8") -> bytes:
    """How protocol 2 writes ``bytes``: ``_codecs.encode(str, 'latin1')``; no other codec."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("a _codecs.encode that is not bytes as latin1")
    return text.encode("latin1")


def _numpy_reconstruct(subtype: Any, shape: Any, dtype: Any) -> Any:
    if subtype is not numpy.ndarray:
        raise pickle.UnpicklingError("a numpy array of a subclass")
    return numpy.ndarray.__new__(numpy.ndarray, shape, dtype)


def _numpy_globals() -> dict[tuple[str, str], Any]:
    # numpy 2 moved ``numpy.core`` to ``numpy._core``; old pickles name the former.
    multiarray = numpy._core.multiarray if hasattr(numpy, "_core") else numpy.core.multiarray
    found: dict[tuple[str, str], Any] = {("numpy", "ndarray"): numpy.ndarray, ("numpy", "dtype"): numpy.dtype}
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        found[(module, "_reconstruct")] = _numpy_reconstruct
        found[(module, "scalar")] = multiarray.scalar
    return found


# (module, name) -> what it is built with. Only data: every callable here either is a torch or
# numpy constructor of plain values or a checked wrapper of one.
_ALLOWED: dict[tuple[str, str], Any] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent,
    ("dnnlib.util", "EasyDict"): _EasyDict,
    ("dnnlib", "EasyDict"): _EasyDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _load_from_bytes,
    ("collections", "OrderedDict"): OrderedDict,
    ("_codecs", "encode"): _codecs_encode,
    **{("builtins", name): obj for name, obj in (
        ("set", set), ("frozenset", frozenset), ("bytearray", bytearray), ("complex", complex),
        ("slice", slice))},
    **_numpy_globals(),
}


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that builds tensors, containers and persistent records, and nothing else.

    ``storages`` answers the persistent ids of a ``torch.save`` zip (None for a plain pickle,
    whose tensors carry their storages as bytes).
    """

    def __init__(self, file: IO[bytes], source: str,
                 storages: Callable[[Any], Any] | None = None) -> None:
        super().__init__(file)
        self.source = source
        self._storages = storages

    def find_class(self, module: str, name: str) -> Any:
        # Protocol 2 (torch.save's) writes Python 2 names ('__builtin__.set'); read them as 3's.
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        allowed = _ALLOWED.get((module, name))
        if allowed is not None:
            return allowed
        if module == "torch":
            if name in _STORAGE_NAMES:
                return getattr(torch, name)
            if isinstance(getattr(torch, name, None), torch.dtype):
                return getattr(torch, name)
        raise RefusedGlobal(
            f"{self.source} was refused: it needs the global '{module}.{name}', which a safe "
            "load does not build; nothing in it was run"
        )

    def persistent_load(self, pid: Any) -> Any:
        if self._storages is None:
            raise pickle.UnpicklingError("a persistent id in a plain pickle")
        return self._storages(pid)


def _zip_storages(archive: zipfile.ZipFile, prefix: str) -> Callable[[Any], Any]:
    """The persistent_load of a ``torch.save`` zip: ``('storage', type, key, location, numel)``
    names the raw bytes ``<prefix>data/<key>``; storages shared by several tensors are built once."""
    cache: dict[str, torch.storage.TypedStorage] = {}

    def load(pid: Any) -> torch.storage.TypedStorage:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unknown persistent id {pid!r:.60}")
        storage_type, key = pid[1], str(pid[2])
        if not (isinstance(storage_type, type) and storage_type.__name__ in _STORAGE_NAMES):
            raise pickle.UnpicklingError("a storage of an unknown type")
        if key not in cache:
            raw = bytearray(archive.read(f"{prefix}data/{key}"))
            untyped = (torch.frombuffer(raw, dtype=torch.uint8).untyped_storage() if raw
                       else torch.UntypedStorage(0))
            with warnings.catch_warnings():  # torch deprecates typed storages, yet builds on them
                warnings.simplefilter("ignore", UserWarning)
                dtype = torch.uint8 if storage_type is torch.UntypedStorage else storage_type.dtype
                cache[key] = torch.storage.TypedStorage(wrap_storage=untyped, dtype=dtype, _internal=True)
        return cache[key]

    return load


def _load_zip(path: Path, source: str) -> Any:
    with zipfile.ZipFile(path) as archive:
        pickles = [n for n in archive.namelist() if n.endswith("data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise CheckpointError(f"{source} is a zip but not a torch.save file (no single data.pkl)")
        prefix = pickles[0][: -len("data.pkl")]
        if f"{prefix}byteorder" in archive.namelist():
            if archive.read(f"{prefix}byteorder").strip() not in (b"little", b""):
                raise CheckpointError(f"{source}: big-endian torch.save files are not read")
        with archive.open(pickles[0]) as data:
            return SafeUnpickler(data, source, _zip_storages(archive, prefix)).load()


def safe_loads(data: bytes, source: str = "pickle") -> Any:
    """The object of a plain pickle in ``data``, built from data-only globals (see the module doc)."""
    try:
        return SafeUnpickler(io.BytesIO(data), source).load()
    except CheckpointError:
        raise
    except Exception as err:  # a malformed pickle may raise anything while being decoded
        raise CheckpointError(f"{source} is not a readable pickle ({err}); nothing in it was run") from None


def safe_load(path: Path) -> Any:
    """The object in a network pickle (``pickle.dump``) or a ``torch.save`` zip, without running
    code from it. Raises RefusedGlobal for a pickle that needs a code global, CheckpointError for
    a file that is not a readable pickle."""
    path = Path(path)
    source = display_name(path)
    try:
        if zipfile.is_zipfile(path):
            return _load_zip(path, source)
        with open(path, "rb") as f:
            loaded = SafeUnpickler(f, source).load()
    except CheckpointError:
        raise
    except Exception as err:  # a malformed pickle may raise anything while being decoded
        raise CheckpointError(f"{source} is not a readable pickle ({err}); nothing in it was run") from None
    if isinstance(loaded, int) and loaded == _LEGACY_TORCH_MAGIC:
        raise CheckpointError(f"{source} is a legacy torch.save file; read it as a checkpoint "
                              "(torch.load weights-only) or re-save it as .safetensors")
    return loaded


def state_dict_of(record: Any, prefix: str = "") -> StateDict:
    """The flat ``{name: tensor}`` state dict of a network record, as ``Module.state_dict()``
    names it: parameters, then persistent buffers, then each sub-network under ``name.``."""
    if not isinstance(record, PersistentRecord):
        raise CheckpointError(f"'{prefix.rstrip('.') or 'the object'}' is {type(record).__name__}, "
                              "not a network record")
    state = record.state
    out: StateDict = {}
    non_persistent = state.get("_non_persistent_buffers_set") or set()
    for group in ("_parameters", "_buffers"):
        for name, value in (state.get(group) or {}).items():
            if value is None or (group == "_buffers" and name in non_persistent):
                continue
            if not isinstance(value, torch.Tensor):
                raise CheckpointError(f"'{prefix}{name}' of {record.class_name} is not a tensor")
            out[prefix + name] = value.detach()
    for name, child in (state.get("_modules") or {}).items():
        if child is not None:
            out.update(state_dict_of(child, f"{prefix}{name}."))
    return out
