"""The node API: one declaration per node serves every host.

A node is a class with a typed ``In`` (pydantic) model, a typed ``Out`` model and a pure ``run``::

    class FloatMath(Node):
        \"\"\"a (op) b for two floats.\"\"\"
        class_type = "LG_FloatMath"
        category = "latentgraph/math"

        class In(Inputs):
            a: float = Input(0.0, tooltip="left operand")
            b: float = Input(0.0)
            op: Literal["add", "mul"] = "add"

        class Out(Outputs):
            result: float

        def run(self, x: In) -> Out:
            return self.Out(result=x.a + x.b if x.op == "add" else x.a * x.b)

The declaration is checked when the class is defined (a broken node fails at import, not at run
time) and compiled into a :class:`NodeSpec`, from which the ComfyUI ``/object_info`` schema, the
ComfyUI classic adapter, literal validation and the executor all read.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Hashable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar

import annotated_types
from pydantic import BaseModel, ConfigDict, Field
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from .types import SocketSpec, socket_of

if TYPE_CHECKING:
    from .context import Context, Folders

_SEMVER = re.compile(r"^\d+\.\d+\.\d+$")
_CLASS_TYPE = re.compile(r"^LG_[A-Za-z0-9_]+$")


class Inputs(BaseModel):
    """Base of a node's input model. Values arrive already validated, so building it is cheap."""

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True, extra="forbid")

    @classmethod
    def from_validated(cls, values: dict[str, Any]) -> Inputs:
        """The inputs from values that validation already coerced, with every default filled
        in; ``values`` becomes the instance's field dict. This is what ``model_construct`` ends
        with, without its walk over every field for aliases and defaults (a quarter of its
        cost, once per executed node). Anything unusual takes ``model_construct``."""
        if len(values) != len(cls.__pydantic_fields__) or cls.__pydantic_post_init__ is not None:
            return cls.model_construct(**values)
        instance = _new(cls)
        _set_dict(instance, "__dict__", values)
        _set_fields_set(instance, set(values))
        _set_extra(instance, None)
        _set_private(instance, None)
        return instance


# BaseModel's slots, written through their descriptors: frozen models refuse setattr, and a
# descriptor's own setter skips the generic attribute lookup (half of from_validated's cost).
_new = object.__new__
_set_dict = object.__setattr__
_set_fields_set = BaseModel.__dict__["__pydantic_fields_set__"].__set__
_set_extra = BaseModel.__dict__["__pydantic_extra__"].__set__
_set_private = BaseModel.__dict__["__pydantic_private__"].__set__


def output_values(result: Any, cls: type[Node]) -> tuple[Any, ...]:
    """What a node's run() returned, as its outputs in order: the ``Out`` model, or a tuple in
    output order (the leaner form hot nodes use); a node without outputs may return None."""
    names = cls.spec.output_names
    if type(result) is tuple and len(result) == len(names):  # before isinstance: pydantic's is slow
        return result
    if isinstance(result, cls.Out):
        return tuple([getattr(result, n) for n in names])
    if isinstance(result, tuple) and len(result) == len(names):
        return result
    if result is None and not names:
        return ()
    raise TypeError(f"run() returned {type(result).__name__}; expected {cls.__name__}.Out")


class Outputs(BaseModel):
    """Base of a node's output model; field order is the output order on the graph."""

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True, extra="forbid")


def Input(  # noqa: N802 - reads like a declaration, as pydantic's Field does
    default: Any = PydanticUndefined,
    *,
    ge: float | None = None,
    le: float | None = None,
    step: float | None = None,
    tooltip: str | None = None,
    multiline: bool = False,
    force_input: bool = False,
    display: str | None = None,
    min_length: int | None = None,
    max_length: int | None = None,
    control_after_generate: bool = False,
    image_upload: bool = False,
) -> Any:
    """Declare an input: a pydantic field plus the widget hints ComfyUI's editor understands."""
    hints: dict[str, Any] = {}
    if step is not None:
        hints["step"] = step
    if multiline:
        hints["multiline"] = True
    if force_input:
        hints["forceInput"] = True
    if display is not None:
        hints["display"] = display
    if control_after_generate:
        hints["control_after_generate"] = True
    if image_upload:
        hints["image_upload"] = True
    return Field(
        default,
        ge=ge,
        le=le,
        min_length=min_length,
        max_length=max_length,
        description=tooltip,
        json_schema_extra=hints or None,
    )


@dataclass(frozen=True)
class InputSpec:
    """One input of a node, compiled from its pydantic field."""

    name: str
    socket: SocketSpec
    required: bool
    default: Any
    ge: float | None
    le: float | None
    min_length: int | None
    max_length: int | None
    tooltip: str | None
    hints: dict[str, Any]

    # Read for every input of every validated node: computed once, then a plain attribute.
    @cached_property
    def type(self) -> str:
        return self.socket.type

    @cached_property
    def has_default(self) -> bool:
        return self.default is not PydanticUndefined


@dataclass(frozen=True)
class OutputSpec:
    name: str
    type: str
    tooltip: str | None


@dataclass(frozen=True)
class NodeSpec:
    """Everything the hosts need to know about a node, derived once from its declaration."""

    class_type: str
    display_name: str
    category: str
    description: str
    version: str
    output_node: bool
    inputs: dict[str, InputSpec]
    outputs: tuple[OutputSpec, ...]
    reads_files: bool
    deprecated: bool = False
    #: (output index, name) of each output the node may leave out when nothing reads it.
    lazy_indices: tuple[tuple[int, str], ...] = ()

    # Derived once (read for every node of every run): plain attributes, set in __post_init__.
    output_types: tuple[str, ...] = field(init=False, repr=False, compare=False)
    output_names: tuple[str, ...] = field(init=False, repr=False, compare=False)
    #: The first lines of every signature of this node: class and version.
    signature_head: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "output_types", tuple(o.type for o in self.outputs))
        object.__setattr__(self, "output_names", tuple(o.name for o in self.outputs))
        object.__setattr__(self, "signature_head", f"{self.class_type}\n{self.version}")


@dataclass(frozen=True)
class Expand:
    """A node's run may return this instead of outputs: a subgraph to execute in its place.

    ``nodes`` is an API-format graph whose ids are local to the expansion; an input value may be
    a link ``[local_id, index]``, a literal, or :class:`ParentInput` to pass on whatever the
    expanding node itself received for that input (so signatures keep flowing from upstream).
    ``outputs`` gives, per output of the expanding node, the ``[local_id, index]`` producing it.
    """

    nodes: dict[str, dict[str, Any]]
    outputs: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class ParentInput:
    """Inside an :class:`Expand`, stands for the expanding node's own input ``name``."""

    name: str


class InputError(ValueError):
    """Raised by a node's run() when an input value is unusable; names the input.

    Hosts read ``input`` (the executor's :class:`NodeFailed` carries it on), never the message,
    which says it for people: ``input 'width': ...``."""

    def __init__(self, input: str, message: str) -> None:
        self.input = input
        self.message = message
        super().__init__(f"input '{input}': {message}")

    @property
    def input_name(self) -> str:
        return self.input


class Node:
    """Base of every node. Subclasses set the class attributes and define In, Out and run()."""

    class_type: ClassVar[str]
    display_name: ClassVar[str | None] = None
    category: ClassVar[str] = "latentgraph"
    version: ClassVar[str] = "1.0.0"
    output_node: ClassVar[bool] = False
    deprecated: ClassVar[bool] = False
    # Whether the executor may persist this node's outputs in the disk tier.
    disk_cacheable: ClassVar[bool] = True
    # Outputs the node may leave out (return None for) when ``self.ctx.wants(name)`` is False:
    # nothing in the run reads them. The cache remembers the gap and runs the node again for a
    # run that does read them.
    lazy_outputs: ClassVar[tuple[str, ...]] = ()

    In: ClassVar[type[Inputs]]
    Out: ClassVar[type[Outputs]]
    spec: ClassVar[NodeSpec]

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        # Output nodes put what the UI shows (ComfyUI's "executed" payload) here.
        self.ui: dict[str, Any] | None = None

    def run(self, x: Any) -> Any:  # pragma: no cover - every concrete node overrides it
        raise NotImplementedError

    @classmethod
    def fingerprint(cls, inputs: dict[str, Any], folders: Folders) -> Hashable | None:
        """Identity of external state the node reads (a file's path, size and mtime).

        It joins the node's signature, so editing a file re-executes the node that reads it.
        Nodes that read nothing outside their inputs keep the default ``None``.
        """
        return None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "class_type" not in cls.__dict__:
            return  # an intermediate base class, not a node
        cls.spec = _compile_spec(cls)


_BOUND_ATTRS = {
    annotated_types.Ge: "ge",
    annotated_types.Le: "le",
    annotated_types.MinLen: "min_length",
    annotated_types.MaxLen: "max_length",
}


def _field_bound(info: FieldInfo, kind: type) -> Any:
    for meta in info.metadata:
        if isinstance(meta, kind):
            return getattr(meta, _BOUND_ATTRS[kind])
    return None


def _field_socket(info: FieldInfo) -> SocketSpec:
    # pydantic moves Annotated metadata (our Socket marker among it) into info.metadata.
    return socket_of(info.annotation, info.metadata)


def _input_spec(name: str, info: FieldInfo, owner: str) -> InputSpec:
    try:
        socket = _field_socket(info)
    except TypeError as err:
        raise TypeError(f"{owner}.In.{name}: {err}") from None
    hints = dict(info.json_schema_extra or {}) if isinstance(info.json_schema_extra, dict) else {}
    required = not socket.optional
    default = info.default
    if socket.optional and default is PydanticUndefined:
        raise TypeError(f"{owner}.In.{name}: an Optional input needs a default (usually None)")
    if not socket.is_widget and default not in (PydanticUndefined, None):
        raise TypeError(f"{owner}.In.{name}: a {socket.type} socket cannot have a literal default")
    spec = InputSpec(
        name=name,
        socket=socket,
        required=required,
        default=default,
        ge=_field_bound(info, annotated_types.Ge),
        le=_field_bound(info, annotated_types.Le),
        min_length=_field_bound(info, annotated_types.MinLen),
        max_length=_field_bound(info, annotated_types.MaxLen),
        tooltip=info.description,
        hints=hints,
    )
    if spec.has_default and spec.default is not None and socket.is_widget:
        from .literals import check_literal  # local: literals imports this module

        problem = check_literal(spec, spec.default)
        if problem is not None:
            raise TypeError(f"{owner}.In.{name}: default {spec.default!r} is invalid: {problem[1]}")
    return spec


def _compile_spec(cls: type[Node]) -> NodeSpec:
    owner = cls.__name__
    if not _CLASS_TYPE.match(cls.class_type):
        raise TypeError(f"{owner}.class_type {cls.class_type!r} must look like 'LG_Name'")
    if not _SEMVER.match(cls.version):
        raise TypeError(f"{owner}.version {cls.version!r} is not a semver 'MAJOR.MINOR.PATCH'")
    for part in ("In", "Out"):
        model = cls.__dict__.get(part) or getattr(cls, part, None)
        base = Inputs if part == "In" else Outputs
        if not (isinstance(model, type) and issubclass(model, base)):
            raise TypeError(f"{owner}.{part} must be a subclass of {base.__name__}")
    if cls.run is Node.run:
        raise TypeError(f"{owner} must define run(self, x)")
    unknown = set(cls.lazy_outputs) - set(cls.Out.model_fields)
    if unknown:
        raise TypeError(f"{owner}.lazy_outputs names no output: {', '.join(sorted(unknown))}")
    if not (cls.__doc__ or "").strip():
        raise TypeError(f"{owner} needs a docstring: it is the node's description")

    inputs = {name: _input_spec(name, info, owner) for name, info in cls.In.model_fields.items()}
    outputs = []
    for name, info in cls.Out.model_fields.items():
        try:
            out_socket = _field_socket(info)
        except TypeError as err:
            raise TypeError(f"{owner}.Out.{name}: {err}") from None
        outputs.append(OutputSpec(name, out_socket.type, info.description))
    if not outputs and not cls.output_node:
        raise TypeError(f"{owner} has no outputs and is not an output node")
    # a class of its own (or a base below Node) defines fingerprint: the node reads files
    reads_files = inspect.getattr_static(cls, "fingerprint") is not inspect.getattr_static(
        Node, "fingerprint"
    )
    description = " ".join((cls.__doc__ or "").split())
    return NodeSpec(
        class_type=cls.class_type,
        display_name=cls.display_name or _spaced(cls.class_type.removeprefix("LG_")),
        category=cls.category,
        description=description,
        version=cls.version,
        output_node=cls.output_node,
        inputs=inputs,
        outputs=tuple(outputs),
        reads_files=reads_files,
        deprecated=cls.deprecated,
        lazy_indices=tuple(
            (list(cls.Out.model_fields).index(name), name) for name in cls.lazy_outputs
        ),
    )


def _spaced(name: str) -> str:
    """'VAEDecodeTiled' -> 'VAE Decode Tiled'."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", " ", name).replace("_", " ")


class NodeRegistry:
    """The set of node classes an executor or server knows, by class_type.

    Registries are explicit objects rather than one global dict, so tests and hosts can hold
    different sets of nodes side by side.
    """

    def __init__(self, nodes: Iterable[type[Node]] = ()) -> None:
        self._nodes: dict[str, type[Node]] = {}
        for node in nodes:
            self.register(node)

    def register(self, node: type[Node]) -> type[Node]:
        if not (isinstance(node, type) and issubclass(node, Node) and "spec" in node.__dict__):
            raise TypeError(f"{node!r} is not a node class (does it set class_type?)")
        existing = self._nodes.get(node.class_type)
        if existing is not None and existing is not node:
            raise ValueError(f"two nodes claim class_type {node.class_type!r}")
        self._nodes[node.class_type] = node
        return node

    def get(self, class_type: object) -> type[Node] | None:
        # Anything but a name (a malformed workflow's list, say, unhashable) names no node.
        return self._nodes.get(class_type) if isinstance(class_type, str) else None

    def __getitem__(self, class_type: str) -> type[Node]:
        return self._nodes[class_type]

    def __contains__(self, class_type: object) -> bool:
        return self.get(class_type) is not None

    def __iter__(self) -> Iterator[type[Node]]:
        return iter(self._nodes.values())

    def __len__(self) -> int:
        return len(self._nodes)

    def specs(self) -> list[NodeSpec]:
        return [n.spec for n in self._nodes.values()]
