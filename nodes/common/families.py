"""Model families as plug-ins of the shared loaders.

A family folder (``nodes/ldm``, ``nodes/sana``, ...) describes itself in one :class:`Family`
record, usually in its ``family.py``: the key layouts of its single weight files, the
diffusers/transformers classes of its component folders, which of those make up its pipeline
folders, a line per part for the loader nodes' descriptions, and the half-precision dtype it runs
in on a GPU (:func:`compute_dtype` is the one device/dtype policy). The node pack's assembly
(``nodes/__init__.py``) puts the records in a :class:`Families` registry and hands it to the loader
nodes; nothing here imports a family (families import this package, never the reverse), and a
registry is a plain immutable object, so a test can load through one of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import torch

from .files import CheckpointError, display_name
from .layouts import ALL_PARTS, FOREIGN_LAYOUTS, Layout, Part

__all__ = [
    "Component",
    "Families",
    "Family",
    "Layout",
    "ModelFolder",
    "Part",
    "compute_dtype",
    "pipeline_component",
]


def compute_dtype(device: torch.device, half: torch.dtype) -> torch.dtype:
    """The dtype a model runs in on ``device``, for a family whose half precision is ``half``
    (its :attr:`Family.half`); every loader asks this one function.

    fp32 off CUDA (half is slow and inexact on the CPU). On CUDA the family's own half: bf16 for
    families trained in it (SANA, Gemma-2, whose activations overflow fp16), fp16 for the others
    (SD 1.x, as its pipelines run); bf16 becomes fp16 on a GPU without it, fp32 stays fp32.
    """
    if device.type != "cuda":
        return torch.float32
    if half == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        return torch.float16
    return half


@dataclass(frozen=True)
class ModelFolder:
    """A component folder being loaded (config.json + weights), and where its companions are.

    ``pipeline`` is the pipeline folder it sits in, if any (its ``scheduler/`` gives the
    denoiser's training schedule). ``whole`` is set while a whole pipeline is loaded: its
    ``tokenizer/`` folder must then exist; a component loaded on its own takes tokenizer files
    beside it, else the sibling ``tokenizer/`` folder.
    """

    path: Path
    pipeline: Path | None = None
    whole: bool = False
    #: what the pipeline's model_index.json calls it, for messages.
    pipeline_class: str = "?"

    def tokenizer(self) -> Path:
        if self.whole and self.pipeline is not None:
            return pipeline_component(self.pipeline, self.pipeline_class, "tokenizer")
        names = ("tokenizer.json", "vocab.json", "tokenizer.model")
        sibling = self.path.parent / "tokenizer"
        if any((self.path / n).is_file() for n in names) or not sibling.is_dir():
            return self.path
        return sibling


def pipeline_component(folder: Path, pipeline_class: str, name: str) -> Path:
    """The sub-folder ``name`` of a pipeline folder, or a CheckpointError saying it is missing."""
    sub = folder / name
    if not sub.is_dir():
        raise CheckpointError(
            f"{display_name(folder)}/: the {pipeline_class} folder has no {name}/"
        )
    return sub


@dataclass(frozen=True)
class Component:
    """A diffusers/transformers model class a family reads from a component folder, and the part
    it is on the graph."""

    part: Part
    load: Callable[[ModelFolder, torch.device], Any]


def _frozen(mapping: Mapping[Any, Any]) -> Mapping[Any, Any]:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True, eq=False)  # compared and hashed by identity: one record per family
class Family:
    """Everything the shared loaders know about one model family.

    ``pipeline`` maps each part to the sub-folder of the family's diffusers pipeline folders and
    the component class (a key of ``components``) that reads it; a pipeline folder belongs to the
    family whose denoiser class its model_index.json names. ``loaded_by`` names the nodes that
    read a family the shared loaders do not (VAR's own loaders), for the message a file of it
    gets from them. ``reads`` describes, per part, what the loader nodes read of this family.
    ``half`` is the dtype its models run in on a GPU (see :func:`compute_dtype`).
    """

    name: str
    #: for messages: "Stable Diffusion 1.x"
    title: str
    layouts: tuple[Layout, ...] = ()
    components: Mapping[str, Component] = field(default_factory=dict)
    pipeline: Mapping[Part, tuple[str, str]] = field(default_factory=dict)
    reads: Mapping[Part, str] = field(default_factory=dict)
    loaded_by: tuple[str, ...] = ()
    half: torch.dtype = torch.float16

    def __post_init__(self) -> None:
        for name in ("components", "pipeline", "reads"):
            object.__setattr__(self, name, _frozen(getattr(self, name)))
        if self.pipeline and "denoiser" not in self.pipeline:
            raise ValueError(f"family {self.name!r}: a pipeline is recognised by its denoiser")
        for part, (sub, cls) in self.pipeline.items():
            component = self.components.get(cls)
            if component is None or component.part != part:
                raise ValueError(
                    f"family {self.name!r}: its pipeline's {sub}/ names {cls}, which is not "
                    f"one of its {part} components"
                )
        if not self.half.is_floating_point:
            raise ValueError(f"family {self.name!r}: its half dtype {self.half} is not a float")
        for layout in self.layouts:
            if layout.load is not None and layout.part is None:
                raise ValueError(f"family {self.name!r}: layout {layout.name!r} loads no part")

    def compute_dtype(self, device: torch.device) -> torch.dtype:
        """The dtype this family's models are loaded in on ``device``."""
        return compute_dtype(device, self.half)

    @property
    def layout_names(self) -> set[str]:
        return {layout.name for layout in self.layouts}

    @property
    def loads_files(self) -> bool:
        """Whether the shared loaders read anything of this family."""
        return bool(self.components) or any(layout.load for layout in self.layouts)

    def file_parts(self, layouts: set[str]) -> set[Part]:
        """The parts single files of these (detected) layouts give, with this family's loaders."""
        return {
            layout.part
            for layout in self.layouts
            if layout.name in layouts and layout.load is not None and layout.part is not None
        }

    def claims_pipeline(self, index: Mapping[str, Any]) -> bool:
        if "denoiser" not in self.pipeline:
            return False
        sub, cls = self.pipeline["denoiser"]
        entry = index.get(sub)
        return isinstance(entry, list) and len(entry) == 2 and str(entry[1]) == cls


class Families:
    """The model families the loaders know, in the order they are asked about a file.

    Built once by the node pack's assembly and passed to the loader nodes; immutable, so two
    registries (the default one, a test's) can live side by side. ``foreign`` are layouts of
    families latentgraph does not have, recognised only to name them in a message.
    """

    def __init__(
        self, families: Iterable[Family], foreign: Iterable[Layout] = FOREIGN_LAYOUTS
    ) -> None:
        self.families: tuple[Family, ...] = tuple(families)
        self._owner: dict[str, Family | None] = {}
        self._layouts: dict[str, Layout] = {}
        names: set[str] = set()
        for family in self.families:
            if family.name in names:
                raise ValueError(f"two families are called {family.name!r}")
            names.add(family.name)
            for layout in family.layouts:
                self._add_layout(layout, family)
        for layout in foreign:
            self._add_layout(layout, None)
        # A component folder goes to the first family that reads its class (a class may serve
        # several families' pipelines, e.g. AutoencoderKL; inside a pipeline the family's own
        # table is used).
        self._components: dict[str, tuple[Family, Component]] = {}
        for family in self.families:
            for cls, component in family.components.items():
                self._components.setdefault(cls, (family, component))

    def _add_layout(self, layout: Layout, family: Family | None) -> None:
        if layout.name in self._layouts:
            raise ValueError(f"two layouts are called {layout.name!r}")
        self._layouts[layout.name] = layout
        self._owner[layout.name] = family

    def __iter__(self) -> Iterator[Family]:
        return iter(self.families)

    # --- single files ---------------------------------------------------------------------------

    def detect(self, keys: Iterable[str]) -> set[str]:
        """The names of every layout (of a family or foreign) whose markers the keys hold."""
        keys = set(keys)
        return {name for name, layout in self._layouts.items() if layout.found_in(keys)}

    def layout(self, name: str) -> Layout:
        return self._layouts[name]

    def owner(self, layout: str) -> Family | None:
        """The family a layout belongs to; None for a foreign one."""
        return self._owner[layout]

    def describe(self, layouts: Iterable[str]) -> str:
        """'an SDXL checkpoint and a VQVAE' for a set of layouts."""
        names = sorted({self._layouts[n].description for n in layouts})
        if not names:
            return "weights of no layout latentgraph knows"
        return " and ".join(names)

    def unread(self, layouts: set[str]) -> set[str]:
        """The layouts that say a file is of a family the shared loaders do not read."""
        return {n for n in layouts if self._layouts[n].part is None}

    def loader_for(self, layouts: set[str], part: Part) -> Layout | None:
        """The first layout (in family order) of these that reads ``part`` from a single file."""
        for family in self.families:
            for layout in family.layouts:
                if layout.name in layouts and layout.part == part and layout.load is not None:
                    return layout
        return None

    def whole_file_family(self, layouts: set[str], parts: tuple[Part, ...]) -> Family | None:
        """The family whose loaders read every part in ``parts`` from one file of these layouts."""
        for family in self.families:
            if set(parts) <= family.file_parts(layouts):
                return family
        return None

    # --- folders --------------------------------------------------------------------------------

    def component(self, cls: str) -> tuple[Family, Component] | None:
        return self._components.get(cls)

    def pipeline_family(self, index: Mapping[str, Any]) -> Family | None:
        return next((f for f in self.families if f.claims_pipeline(index)), None)

    # --- what the loaders read, in words ----------------------------------------------------------

    def titles(
        self, which: Callable[[Family], bool] | None = None, conjunction: str = "and"
    ) -> str:
        """'Stable Diffusion 1.x and SANA': the families ``which`` picks (by default those the
        shared loaders read anything of), in words."""
        return _words([f.title for f in self.families if (which or _loads_files)(f)], conjunction)

    def whole_file_titles(self, conjunction: str = "and") -> str:
        """The families whose single files can hold a whole model."""
        return self.titles(lambda f: set(ALL_PARTS) <= f.file_parts(f.layout_names), conjunction)

    def pipeline_titles(self, conjunction: str = "and") -> str:
        """The families whose diffusers pipeline folders the loaders read."""
        return self.titles(lambda f: bool(f.pipeline), conjunction)

    def reads(self, part: Part) -> str:
        """What the loaders read as ``part``: the families' own lines, joined."""
        return _words([f.reads[part] for f in self.families if part in f.reads], "or")


def _loads_files(family: Family) -> bool:
    return family.loads_files


def _words(items: list[str], conjunction: str = "and") -> str:
    if len(items) <= 1:
        return "".join(items) or "nothing"
    return f"{', '.join(items[:-1])} {conjunction} {items[-1]}"
