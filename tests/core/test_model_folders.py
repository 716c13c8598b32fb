"""Where loaders find weights: the models search list (the user's folder, then the package's own),
symbolic links inside a models folder, the messages for a model that is nowhere, and the
``latentgraph`` folder type registered with ComfyUI's ``folder_paths``."""

from __future__ import annotations

import json
import os
import shutil
import sys
import types
from pathlib import Path

import pytest
import torch
from graph_helpers import one_node
from latentgraph import Executor, comfy_plugin
from latentgraph.comfy_plugin import HostContext, comfy_class
from latentgraph.executor import Folders, NodeFailed
from latentgraph.executor.context import PACKAGE_MODELS
from latentgraph.executor.paths import UnsafePath, confined
from latentgraph.nodes import default_registry
from latentgraph.nodes.common.files import (
    SHIPPED_MODELS,
    CheckpointError,
    ModelNotFound,
    WeightFile,
    path_fingerprint,
    resolve_model_path,
)
from latentgraph.web import ServerConfig
from safetensors.torch import save_file

VQVAE = "shapes_var/vqvae.safetensors"  # the smallest shipped weights (2 MB)
VQVAE_INPUTS = {"patch_nums": "1,2,3,4,6,8"}


def folders_with(tmp_path: Path, *models: Path, absolute_models: bool = True) -> Folders:
    return Folders(tmp_path / "in", tmp_path / "out", tmp_path / "tmp", models[0],
                   absolute_models=absolute_models, more_models=models[1:])


def weights(path: Path, value: float = 1.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"w": torch.full((2,), value)}, str(path))
    return path


def load_vqvae(folders: Folders, name: str) -> dict:
    graph = one_node("LG_LoadVQVAE", path=name, **VQVAE_INPUTS)
    return Executor(device="cpu", folders=folders).run(graph, targets=["1"]).outputs


# --- the search list ----------------------------------------------------------------------------

def test_the_first_models_folder_holding_the_name_wins(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    weights(second / "m.safetensors")
    folders = folders_with(tmp_path, first, second)
    assert resolve_model_path(folders, "m.safetensors") == (second / "m.safetensors").resolve()
    before = path_fingerprint(folders, "m.safetensors")
    weights(first / "m.safetensors", 2.0)
    assert resolve_model_path(folders, "m.safetensors") == (first / "m.safetensors").resolve()
    assert path_fingerprint(folders, "m.safetensors") != before  # the loader runs again


def test_under_searches_its_models_folder_then_the_shipped_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folders = Folders.under(".")
    assert [os.path.abspath(f) for f in folders.model_folders] == [str(tmp_path / "models"), str(PACKAGE_MODELS)]
    assert resolve_model_path(folders, VQVAE) == (PACKAGE_MODELS / VQVAE).resolve()
    assert Folders.under(tmp_path, models=PACKAGE_MODELS).model_folders == (PACKAGE_MODELS,)  # once


def test_the_server_searches_its_models_dir_then_the_shipped_one(tmp_path):
    default = ServerConfig(data_dir=tmp_path).folders
    assert default.model_folders == (tmp_path / "models", PACKAGE_MODELS) and not default.absolute_models
    chosen = ServerConfig(data_dir=tmp_path, models_dir=tmp_path / "mine").folders
    assert chosen.model_folders == (tmp_path / "mine", PACKAGE_MODELS)
    assert "--models-dir" in chosen.models_hint


def test_a_missing_model_names_every_folder_searched_and_how_to_add_one(tmp_path):
    folders = folders_with(tmp_path, tmp_path / "a", tmp_path / "b")
    with pytest.raises(ModelNotFound) as missing:
        resolve_model_path(folders, "sd/x.safetensors")
    message = str(missing.value)
    assert str(tmp_path / "a") in message and str(tmp_path / "b") in message
    assert "--models-dir" in message
    assert "re-create" not in message  # not one of the shipped models


def test_a_server_names_the_folders_it_searched_without_its_layout(tmp_path):
    served = ServerConfig(data_dir=tmp_path / "data", models_dir=tmp_path / "data" / "mine").folders
    with pytest.raises(ModelNotFound) as missing:
        resolve_model_path(served, "sd/x.safetensors")
    message = str(missing.value)
    assert "searched mine/, latentgraph's own models/" in message and "--models-dir" in message
    assert str(tmp_path) not in message and str(PACKAGE_MODELS) not in message


def test_the_trainer_is_suggested_only_for_a_shipped_model_missing_everywhere(tmp_path):
    folders = folders_with(tmp_path, tmp_path / "models")
    with pytest.raises(NodeFailed) as failure:
        load_vqvae(folders, VQVAE)
    message = str(failure.value)
    assert f"re-create it with `{SHIPPED_MODELS['shapes_var']}`" in message
    assert str(tmp_path / "models") in message and "--models-dir" in message

    damaged = tmp_path / "models" / VQVAE
    damaged.parent.mkdir(parents=True)
    damaged.write_bytes(b"\x00" * 100)  # there, but not loadable: the trainer is no answer
    with pytest.raises(NodeFailed) as failure:
        load_vqvae(folders, VQVAE)
    assert "vqvae.safetensors" in str(failure.value)
    assert "re-create" not in str(failure.value) and "searched" not in str(failure.value)


def test_a_shipped_model_missing_from_the_first_folder_comes_from_the_package(tmp_path):
    folders = folders_with(tmp_path, tmp_path / "models", PACKAGE_MODELS)
    assert load_vqvae(folders, VQVAE)["1"][0] is not None


# --- symbolic links -------------------------------------------------------------------------------

@pytest.fixture
def linked(tmp_path: Path) -> Folders:
    """A served models folder (no absolute names) whose entries link to another disk."""
    disk, models = tmp_path / "big_disk", tmp_path / "models"
    weights(disk / "sd" / "unet" / "w.safetensors")
    weights(disk / "loose.safetensors")
    models.mkdir()
    (models / "sd").symlink_to(disk / "sd", target_is_directory=True)
    (models / "one.safetensors").symlink_to(disk / "loose.safetensors")
    (models / "var").symlink_to(PACKAGE_MODELS / "shapes_var", target_is_directory=True)
    (models / "gone.safetensors").symlink_to(disk / "deleted.safetensors")
    return folders_with(tmp_path, models, absolute_models=False)


def test_links_inside_a_models_folder_are_followed(linked, tmp_path):
    models = linked.models.resolve()
    for name in ("sd", "sd/unet/w.safetensors", "one.safetensors"):
        path = resolve_model_path(linked, name)
        assert path == models / name and path.exists()  # named as asked; the link leads out
    assert resolve_model_path(linked, "one.safetensors").resolve() == (tmp_path / "big_disk/loose.safetensors").resolve()
    assert load_vqvae(linked, "var/vqvae.safetensors")["1"][0] is not None


@pytest.mark.parametrize("name", ["../big_disk/loose.safetensors", "sd/../../big_disk/loose.safetensors",
                                  "/etc/passwd", "~/x.safetensors", "sd\\unet"])
def test_names_still_cannot_leave_a_models_folder(linked, name):
    with pytest.raises(CheckpointError) as refused:
        resolve_model_path(linked, name)
    assert not isinstance(refused.value, ModelNotFound)


def test_a_broken_link_is_named_in_the_message(linked):
    with pytest.raises(ModelNotFound, match="link to the missing .*deleted.safetensors"):
        resolve_model_path(linked, "gone.safetensors")


def test_a_linked_folder_keeps_its_file_identity(linked, tmp_path):
    before = path_fingerprint(linked, "sd")
    assert before == path_fingerprint(linked, "sd")
    weights(tmp_path / "big_disk" / "sd" / "unet" / "w.safetensors", 3.0)  # the weights change behind the link
    os.utime(tmp_path / "big_disk" / "sd" / "unet" / "w.safetensors", ns=(1, 1))
    assert path_fingerprint(linked, "sd") != before


def test_a_linked_subfolder_counts_in_the_identity_and_loops_end(tmp_path):
    other, models = tmp_path / "other_unet", tmp_path / "models"
    weights(other / "w.safetensors")
    weights(models / "pipe" / "vae" / "w.safetensors")
    (models / "pipe" / "unet").symlink_to(other, target_is_directory=True)
    (models / "pipe" / "vae" / "loop").symlink_to(models / "pipe", target_is_directory=True)
    folders = folders_with(tmp_path, models)
    before = path_fingerprint(folders, "pipe")
    os.utime(other / "w.safetensors", ns=(1, 1))
    assert path_fingerprint(folders, "pipe") != before


def test_a_sharded_snapshot_whose_files_link_to_blobs_loads(tmp_path):
    """The Hugging Face cache layout: snapshots/<rev>/ holds links to ../../blobs/<hash>."""
    blobs, snapshot = tmp_path / "hub" / "blobs", tmp_path / "hub" / "snapshots" / "abc"
    weights(blobs / "1111", 1.0)
    save_file({"v": torch.zeros(3)}, str(blobs / "2222"))
    (blobs / "3333").write_text(json.dumps({"weight_map": {"w": "a.safetensors", "v": "b.safetensors"}}))
    snapshot.mkdir(parents=True)
    for name, blob in [("a.safetensors", "1111"), ("b.safetensors", "2222"), ("m.safetensors.index.json", "3333")]:
        (snapshot / name).symlink_to(Path("../../blobs") / blob)
    models = tmp_path / "models"
    models.mkdir()
    (models / "big").symlink_to(snapshot, target_is_directory=True)
    path = resolve_model_path(folders_with(tmp_path, models, absolute_models=False), "big/m.safetensors.index.json")
    assert set(WeightFile(path).tensors()) == {"w", "v"}


def test_other_folders_still_refuse_links_leading_out(tmp_path):
    outside, served = tmp_path / "outside", tmp_path / "input"
    outside.mkdir()
    served.mkdir()
    (outside / "secret.png").write_bytes(b"x")
    (served / "link.png").symlink_to(outside / "secret.png")
    with pytest.raises(UnsafePath):
        confined(served, "link.png")
    assert confined(served, "link.png", follow_links=True).resolve() == (outside / "secret.png").resolve()


# --- inside ComfyUI -------------------------------------------------------------------------------

def fake_folder_paths(base: Path) -> types.ModuleType:
    """The part of ComfyUI's folder_paths the plugin uses, with its behaviour: a type maps to
    (paths, extensions); adding to an unknown type creates it; adding appends."""
    module = types.ModuleType("folder_paths")
    module.models_dir = str(base / "models")
    module.folder_names_and_paths = {"checkpoints": ([str(base / "models" / "checkpoints")], {".safetensors"})}

    def add_model_folder_path(folder_name: str, full_folder_path: str, is_default: bool = False) -> None:
        paths = module.folder_names_and_paths.setdefault(folder_name, ([], set()))[0]
        paths.insert(0, full_folder_path) if is_default else paths.append(full_folder_path)

    module.add_model_folder_path = add_model_folder_path
    module.get_folder_paths = lambda name: list(module.folder_names_and_paths[name][0])
    module.get_input_directory = lambda: str(base / "input")
    module.get_output_directory = lambda: str(base / "output")
    module.get_temp_directory = lambda: str(base / "temp")
    return module


@pytest.fixture
def comfy(tmp_path, monkeypatch) -> types.ModuleType:
    module = fake_folder_paths(tmp_path / "ComfyUI")
    # An extra_model_paths.yaml `latentgraph:` entry, which ComfyUI registers before loading us.
    module.add_model_folder_path("latentgraph", str(tmp_path / "extra"))
    monkeypatch.setitem(sys.modules, "folder_paths", module)
    return module


def test_the_plugin_registers_its_folder_type_and_keeps_yaml_entries(comfy, tmp_path):
    folders = comfy_plugin.comfy_folders()
    comfy_plugin.comfy_folders()  # loaded twice: still registered once
    own = str(tmp_path / "ComfyUI" / "models" / "latentgraph")
    assert comfy.get_folder_paths("latentgraph") == [str(tmp_path / "extra"), own]
    assert folders.model_folders == (tmp_path / "extra", Path(own), tmp_path / "ComfyUI" / "models", PACKAGE_MODELS)
    assert folders.input == tmp_path / "ComfyUI" / "input"


def test_the_plugin_creates_its_folder_type_when_no_yaml_names_it(tmp_path, monkeypatch):
    module = fake_folder_paths(tmp_path)
    monkeypatch.setitem(sys.modules, "folder_paths", module)
    comfy_plugin.comfy_folders()
    assert module.get_folder_paths("latentgraph") == [str(tmp_path / "models" / "latentgraph")]


def test_comfy_loaders_use_the_shipped_weights_in_place_and_the_yaml_folders(comfy, tmp_path):
    host = HostContext(comfy_plugin.comfy_folders())
    loader = comfy_class(default_registry()["LG_LoadVQVAE"], host)
    (shipped,) = loader().execute(unique_id="1", path=VQVAE, **VQVAE_INPUTS)
    assert shipped is not None
    assert not (tmp_path / "ComfyUI" / "models" / "latentgraph").exists()  # nothing copied
    shutil.copy(PACKAGE_MODELS / VQVAE, weights(tmp_path / "extra" / VQVAE))  # the user's own copy
    assert str(tmp_path / "extra") in json.dumps(loader.IS_CHANGED(path=VQVAE, unique_id="1", **VQVAE_INPUTS))
    with pytest.raises(Exception, match="extra_model_paths.yaml") as missing:
        loader().execute(unique_id="1", path="nowhere/vqvae.safetensors", **VQVAE_INPUTS)
    # ComfyUI serves its clients: the message names the folders searched, not the disk's layout
    assert "searched extra/" in str(missing.value) and str(tmp_path) not in str(missing.value)
    with pytest.raises(Exception, match="absolute paths are not allowed"):
        loader().execute(unique_id="1", path=str(PACKAGE_MODELS / VQVAE), **VQVAE_INPUTS)


def test_inside_comfyui_a_loader_records_its_models_for_the_saving_node(comfy, tmp_path):
    """ComfyUI gives every node the prompt and the host keeps one info for its lifetime, so a
    saved PNG there names the models upstream as it does under our executor."""
    from latentgraph.nodes.core import provenance

    host = HostContext(comfy_plugin.comfy_folders())
    loader = comfy_class(default_registry()["LG_LoadVQVAE"], host)
    prompt = {"1": {"class_type": "LG_LoadVQVAE", "inputs": {"path": VQVAE, **VQVAE_INPUTS}},
              "2": {"class_type": "Anything", "inputs": {"vqvae": ["1", 0]}}}
    loader().execute(unique_id="1", prompt=prompt, path=VQVAE, **VQVAE_INPUTS)
    (records,) = host.info[provenance.INFO_KEY].values()
    assert records[1] == {"vqvae": "float32"}
    saver = default_registry()["LG_SaveImage"]
    assert provenance.upstream_models(saver(host.context(saver, "2", prompt))) == {"1": {"vqvae": "float32"}}
