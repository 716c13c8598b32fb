"""Model families are plug-ins: a family's record, put in a registry of its own, is all the shared
loaders need to read its single files, component folders and pipelines; the shared package
imports no family, and the node library does not import the trainers."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import pytest
import torch
from graph_helpers import one_node
from latentgraph import Executor
from latentgraph.executor import NodeFailed, NodeRegistry
from latentgraph.nodes import MODEL_FAMILIES, common, default_families
from latentgraph.nodes.common.families import Component, Families, Family, Layout, ModelFolder
from latentgraph.nodes.common.files import WeightFile, component_weights
from latentgraph.nodes.common.schedules import SD15
from safetensors.torch import save_file

TOY_KEY = "toy.weight"


class ToyDenoiser:
    """A DENOISER of its own, with no common base class: the protocol is structural."""

    is_model = True
    spacing = "leading"
    steps_offset = 1

    def __init__(self, weight: torch.Tensor, source: str) -> None:
        self.weight = weight
        self.source = source
        self.schedule = SD15.schedule

    def to(self, device: torch.device | str) -> ToyDenoiser:
        return self

    def forward(self, sample, timestep, context):
        return sample * self.weight

    def predict(self, sample, timestep, positive, negative):
        return self.forward(sample, timestep, positive), None


def _toy_file(weights: WeightFile, device: torch.device) -> ToyDenoiser:
    return ToyDenoiser(weights.tensors()[TOY_KEY], "file")


def _toy_folder(folder: ModelFolder, device: torch.device) -> ToyDenoiser:
    source = "pipeline" if folder.pipeline is not None else "folder"
    return ToyDenoiser(component_weights(folder.path).tensors()[TOY_KEY], source)


TOY = Family(
    name="toy",
    title="Toy",
    layouts=(Layout("toy", "a toy denoiser", (TOY_KEY,), part="denoiser", load=_toy_file),),
    components={"ToyTransformer": Component("denoiser", _toy_folder)},
    pipeline={"denoiser": ("transformer", "ToyTransformer")},
    reads={"denoiser": "a toy denoiser"},
)


@pytest.fixture
def toy_executor(folders) -> Executor:
    registry = NodeRegistry(common.nodes(Families([TOY])))
    return Executor(device="cpu", registry=registry, folders=folders)


def _toy_weights(path, value: float = 2.0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({TOY_KEY: torch.full((1,), value)}, str(path))


def _component(folder) -> None:
    _toy_weights(folder / "model.safetensors", 3.0)
    (folder / "config.json").write_text(json.dumps({"_class_name": "ToyTransformer"}))


def load(executor: Executor, class_type: str, path: str) -> tuple:
    return executor.run(one_node(class_type, path=path), ["1"]).outputs["1"]


def failure(executor: Executor, class_type: str, path: str) -> str:
    with pytest.raises(NodeFailed) as info:
        load(executor, class_type, path)
    return str(info.value.error)


def test_a_toy_family_is_dispatched_to_for_its_layout(folders, toy_executor):
    _toy_weights(folders.models / "toy.safetensors")
    (denoiser,) = load(toy_executor, "LG_LoadDenoiser", "toy.safetensors")
    assert isinstance(denoiser, ToyDenoiser) and denoiser.source == "file"
    assert torch.equal(denoiser.weight, torch.full((1,), 2.0))


def test_a_toy_family_reads_its_component_and_pipeline_folders(folders, toy_executor):
    _component(folders.models / "toy_model")
    (denoiser,) = load(toy_executor, "LG_LoadDenoiser", "toy_model")
    assert denoiser.source == "folder"

    pipeline = folders.models / "toy_pipeline"
    _component(pipeline / "transformer")
    index = {"_class_name": "ToyPipeline", "transformer": ["toy", "ToyTransformer"]}
    (pipeline / "model_index.json").write_text(json.dumps(index))
    (denoiser,) = load(toy_executor, "LG_LoadDenoiser", "toy_pipeline")
    assert denoiser.source == "pipeline"
    # The toy pipeline declares no text encoder: a whole checkpoint is refused, saying so.
    message = failure(toy_executor, "LG_LoadCheckpoint", "toy_pipeline")
    assert "toy_pipeline" in message and "no text encoder of a Toy pipeline" in message


def test_the_loader_nodes_describe_the_families_they_read(toy_executor):
    assert toy_executor.registry["LG_LoadDenoiser"].spec.description.endswith("a toy denoiser.")


def test_each_registry_reads_only_its_own_families(folders, toy_executor):
    _toy_weights(folders.models / "toy.safetensors")
    shipped = Executor(device="cpu", folders=folders)
    message = failure(shipped, "LG_LoadDenoiser", "toy.safetensors")
    assert "toy.safetensors" in message and "no denoiser latentgraph can load" in message
    # ...and the toy registry reads no SD file, but still names another family's file.
    save_file(
        {"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(1)},
        str(folders.models / "unet.safetensors"),
    )
    assert "no denoiser" in failure(toy_executor, "LG_LoadDenoiser", "unet.safetensors")
    save_file({"conditioner.embedders.0.x": torch.zeros(1)}, str(folders.models / "xl.safetensors"))
    message = failure(toy_executor, "LG_LoadDenoiser", "xl.safetensors")
    assert "an SDXL checkpoint: another model family (these loaders read Toy)" in message


def test_shipped_families_name_the_loaders_of_a_family_they_do_not_read(folders):
    save_file(
        {"class_emb.weight": torch.zeros(2, 2), "lvl_1L": torch.zeros(1, 4)},
        str(folders.models / "var.safetensors"),
    )
    message = failure(Executor(device="cpu", folders=folders), "LG_LoadDenoiser", "var.safetensors")
    assert "a VAR transformer: another model family" in message and "LG_LoadVAR" in message
    shipped = [f.name for f in default_families()]
    assert {"sd1", "sana", "var"} <= set(shipped) and len(set(shipped)) == len(shipped)
    assert shipped == [_package_family(name) for name in MODEL_FAMILIES]


def _package_family(package: str) -> str:
    return importlib.import_module(f"latentgraph.nodes.{package}").FAMILY.name


def test_inconsistent_records_fail_when_they_are_built():
    with pytest.raises(ValueError, match="two layouts"):
        Families([TOY, Family(name="toy2", title="Toy 2", layouts=TOY.layouts)])
    with pytest.raises(ValueError, match="two families"):
        Families([TOY, TOY])
    with pytest.raises(ValueError, match="not one of its denoiser components"):
        Family(name="broken", title="Broken", pipeline={"denoiser": ("unet", "Missing")})


def _modules_after(code: str) -> set[str]:
    """The latentgraph modules a fresh interpreter holds after running ``code``."""
    script = f"{code}\nimport sys\nprint(' '.join(m for m in sys.modules if m.startswith('latentgraph')))"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    return set(done.stdout.split())


def test_the_shared_package_imports_no_family():
    modules = _modules_after(
        "import latentgraph.nodes.common.loader_nodes, latentgraph.nodes.common"
    )
    assert "latentgraph.nodes.common.loading" in modules
    families = [
        m
        for m in modules
        for family in ("ldm", "sana", "var", "shapes")
        if f"{m}.".startswith(f"latentgraph.nodes.{family}.")
    ]
    assert families == []


def test_the_node_library_does_not_import_the_trainers():
    modules = _modules_after("from latentgraph.nodes import default_registry; default_registry()")
    assert "latentgraph.nodes.shapes.dataset" in modules
    assert not [m for m in modules if m.startswith("latentgraph.training")]
