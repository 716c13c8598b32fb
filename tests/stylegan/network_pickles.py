"""Network pickles in the structure NVlabs' training code writes, made without its code.

The official ``torch_utils.persistence`` pickles each network as a call
``torch_utils.persistence._reconstruct_persistent_obj(meta)`` with ``meta = {"type": "class",
"version": 6, "module_src": <its module's source>, "class_name": ..., "state": <__dict__>}``;
the state holds ``_parameters``, ``_buffers`` and ``_modules`` (sub-networks, persistent
themselves) and the init arguments. ``network_pickle`` writes that structure for a module tree
of ours (whose names are the official ones), naming the official classes, with a placeholder
instead of the source text. The reconstruct function it names only exists while pickling, in a
stand-in module that is removed right after, and it refuses to be called.
"""

from __future__ import annotations

import pickle
import sys
import types
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from latentgraph.nodes.stylegan import model
from torch import nn

# Our classes -> the official class names they stand for.
OFFICIAL_NAMES = {
    model.Generator: "Generator", model.MappingNetwork: "MappingNetwork",
    model.SynthesisNetwork: "SynthesisNetwork", model.SynthesisBlock: "SynthesisBlock",
    model.SynthesisLayer: "SynthesisLayer", model.ToRGB: "ToRGBLayer",
    model.FullyConnected: "FullyConnectedLayer", model.SkipConv: "Conv2dLayer",
}
SOURCE_PLACEHOLDER = "# the official training/networks.py source travels here, as text\n"


class Persistent:
    """Pickles as the official persistence call with ``meta``."""

    reconstruct: Any = None

    def __init__(self, meta: dict[str, Any]) -> None:
        self.meta = meta

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return Persistent.reconstruct, (self.meta,)


@contextmanager
def persistence_stand_in() -> Iterator[None]:
    names = ("torch_utils", "torch_utils.persistence")
    saved = {name: sys.modules.get(name) for name in names}
    package, module = types.ModuleType(names[0]), types.ModuleType(names[1])

    def _reconstruct_persistent_obj(meta: Any) -> Any:
        raise AssertionError("a network pickle was unpickled by running code")

    _reconstruct_persistent_obj.__module__ = names[1]
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    module._reconstruct_persistent_obj = _reconstruct_persistent_obj  # type: ignore[attr-defined]
    package.persistence = module  # type: ignore[attr-defined]
    sys.modules.update({names[0]: package, names[1]: module})
    Persistent.reconstruct = _reconstruct_persistent_obj
    try:
        yield
    finally:
        Persistent.reconstruct = None
        for name, old in saved.items():
            if old is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = old


def record_of(net: nn.Module, init_kwargs: dict[str, Any] | None = None,
              class_name: str | None = None) -> Persistent:
    """The persistent record of ``net`` and its sub-modules, as the official pickle holds it."""
    state = {
        "training": False,
        "_parameters": OrderedDict((k, v) for k, v in net._parameters.items()),
        "_buffers": OrderedDict((k, v) for k, v in net._buffers.items()),
        "_non_persistent_buffers_set": set(),
        "_modules": OrderedDict((k, record_of(v)) for k, v in net._modules.items()),
        "_init_args": (),
        "_init_kwargs": dict(init_kwargs or {}),
    }
    meta = {"type": "class", "version": 6, "module_src": SOURCE_PLACEHOLDER,
            "class_name": class_name or OFFICIAL_NAMES[type(net)], "state": state}
    return Persistent(meta)


def network_pickle(path: Path, generator: nn.Module, init_kwargs: dict[str, Any],
                   extra: dict[str, Any] | None = None) -> None:
    """Write ``{"G": ..., "D": None, "G_ema": ..., "training_set_kwargs": {}}`` as the official
    snapshots are laid out (G and G_ema the same network here; no discriminator)."""
    record = record_of(generator, init_kwargs)
    data = {"G": record, "D": None, "G_ema": record, "training_set_kwargs": {}, **(extra or {})}
    with persistence_stand_in(), open(path, "wb") as f:
        pickle.dump(data, f, protocol=pickle.HIGHEST_PROTOCOL)
