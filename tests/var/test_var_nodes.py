"""The VAR nodes through the executor: golden tokens, stepwise == sampler (and shared cache), the
shipped graphs, in-painting, and errors that name the node and the input.

Models come from a models folder holding copies of the golden fixture weights at the names the
shipped graphs use (var/vqvae.safetensors, var/var.safetensors).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from graph_helpers import Graph, NodeRef
from latentgraph.executor import (
    Executor,
    Folders,
    Inputs,
    Node,
    NodeFailed,
    NodeRegistry,
    Outputs,
    WorkflowInvalid,
)
from latentgraph.executor.types import Image, Mask
from latentgraph.nodes import default_registry
from latentgraph.nodes.var.model import VAR, VARConfig, inpaint, quantize_image
from PIL import Image as PILImage
from safetensors.torch import load_file, save_file
from torch.testing import assert_close

GRAPHS = Path(__file__).resolve().parents[2] / "graphs"
VQVAE_FILE, VAR_FILE = "var/vqvae.safetensors", "var/var.safetensors"
FIXTURE_PATCH_NUMS = "1,2,3,4"
INPAINT_SOURCE = "var_inpaint_source.png"
SAMPLING = {"class_labels": "3, 7", "seed": 42, "cfg": 1.5, "top_k": 900, "top_p": 0.96,
            "more_smooth": False}
IMAGE_ATOL, SMOOTH_IMAGE_ATOL = 5e-5, 5e-4  # as in test_var_generation


@pytest.fixture
def var_folders(folders: Folders, fixture_dir: Path) -> Folders:
    (folders.models / "var").mkdir()
    shutil.copy(fixture_dir / "vqvae_weights.safetensors", folders.models / VQVAE_FILE)
    shutil.copy(fixture_dir / "var_weights.safetensors", folders.models / VAR_FILE)
    return folders


def centre_mask(batch: int = 1, side: int = 64) -> torch.Tensor:
    """MASK (B,H,W): 1 (generate) in the central half of each side."""
    mask = torch.zeros(batch, side, side)
    mask[:, side // 4: 3 * side // 4, side // 4: 3 * side // 4] = 1
    return mask


def fixture_picture(fixture_dir: Path | str, side: int = 64) -> torch.Tensor:
    """The golden fixture's two pictures as an IMAGE (2,H,W,3) in 0..1, resized to side x side."""
    image = load_file(str(Path(fixture_dir) / "vqvae_io.safetensors"))["image"]
    if side != image.shape[-1]:
        image = torch.nn.functional.interpolate(image, size=side, mode="area")
    return image.add(1).mul(0.5).permute(0, 2, 3, 1).contiguous()


class FixturePicture(Node):
    """The golden fixture pictures (test only)."""

    class_type = "LG_TestFixturePicture"

    class In(Inputs):
        fixture_dir: str
        side: int = 64

    class Out(Outputs):
        image: Image

    def run(self, x: In) -> Out:
        return self.Out(image=fixture_picture(x.fixture_dir, x.side))


class CentreMask(Node):
    """A mask over the centre (test only)."""

    class_type = "LG_TestCentreMask"

    class In(Inputs):
        side: int = 64

    class Out(Outputs):
        mask: Mask

    def run(self, x: In) -> Out:
        return self.Out(mask=centre_mask(side=x.side))


@pytest.fixture
def executor(var_folders: Folders) -> Executor:
    registry = NodeRegistry([*default_registry(), FixturePicture, CentreMask])
    return Executor(device="cpu", folders=var_folders, registry=registry, previews=True)


def models(g: Graph, vqvae_path: str = VQVAE_FILE, var_path: str = VAR_FILE,
           patch_nums: str = FIXTURE_PATCH_NUMS) -> tuple[Any, Any]:
    vqvae = g.node("LG_LoadVQVAE", id="vqvae", path=vqvae_path, patch_nums=patch_nums)
    var = g.node("LG_LoadVAR", id="var", path=var_path)
    return vqvae, var


def sampler_graph(**settings: Any) -> dict[str, Any]:
    g = Graph()
    vqvae, var = models(g)
    g.node("LG_VARSampler", id="sampler", vqvae=vqvae, var=var, **{**SAMPLING, **settings})
    return g.build()


def load_graph(name: str) -> dict[str, Any]:
    return json.loads((GRAPHS / name).read_text())


# --- golden parity ------------------------------------------------------------------------------


@pytest.mark.parametrize("run", ["greedy", "topk_topp", "smooth"])
def test_sampler_tokens_equal_the_official_sampler(executor, configs, golden, run):
    official = configs["infer"][run]
    settings = {key: official[key] for key in ("cfg", "top_k", "top_p", "more_smooth")}
    graph = sampler_graph(class_labels=",".join(map(str, official["label_B"])),
                          seed=official["g_seed"], **settings)
    image, token_maps = executor.run(graph, targets=["sampler"]).outputs["sampler"]
    expected = golden(f"var_infer_{run}")
    for scale, indices in enumerate(token_maps.indices):
        assert torch.equal(indices, expected[f"idx_s{scale}"]), f"scale {scale}"
    atol = SMOOTH_IMAGE_ATOL if official["more_smooth"] else IMAGE_ATOL
    assert_close(image, expected["image01"].permute(0, 2, 3, 1), atol=atol, rtol=0)


def test_quantize_and_decode_match_the_official_tokenizer(executor, golden, fixture_dir):
    g = Graph()
    vqvae, _ = models(g)
    tokens = g.node("LG_VQVAEQuantize", id="quantize", vqvae=vqvae,
                    image=g.node("LG_TestFixturePicture", id="picture", fixture_dir=str(fixture_dir)))
    g.node("LG_VQVAEDecode", id="decode", vqvae=vqvae, token_maps=tokens)
    result = executor.run(g.build(), targets=["quantize", "decode"])
    (token_maps,), (image,) = result.outputs["quantize"], result.outputs["decode"]
    io = golden("vqvae_io")
    for scale, indices in enumerate(token_maps.indices):
        assert torch.equal(indices, io[f"idx_s{scale}"]), f"scale {scale}"
    assert_close(image, io["recon"].add(1).mul(0.5).permute(0, 2, 3, 1), atol=IMAGE_ATOL, rtol=0)


# --- stepwise graph, cache sharing, shipped graphs ----------------------------------------------


def test_stepwise_graph_equals_the_sampler_and_reuses_its_steps(executor):
    by_sampler = executor.run(load_graph("var_class2img.json"), targets=["3"])
    stepwise = load_graph("var_stepwise.json")
    again = executor.run(stepwise, targets=["8"])
    assert torch.equal(again.outputs["8"][0], by_sampler.outputs["3"][0])
    executed = {stepwise[node]["class_type"] for node in again.executed}
    # Loaders, start, every scale step and the final decode come from the sampler's run.
    assert executed == {"LG_VARDecodeState", "LG_PreviewImage", "LG_SaveImage"}
    assert "8" in again.cached and not {"3", "4", "5", "6", "7"} & set(again.executed)


def test_each_scale_reports_a_decoded_preview(executor):
    events = []
    executor.run(sampler_graph(), targets=["sampler"], on_event=events.append)
    previews = [e.data for e in events if e.type == "progress" and "preview" in e.data]
    assert [(p["value"], p["max"]) for p in previews] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert [tuple(p["preview"].shape) for p in previews] == [(1, 16 * s, 16 * s, 3) for s in (1, 2, 3, 4)]
    assert all(p["node"].startswith("sampler.scale") for p in previews)


def write_inpaint_source(folders: Folders, fixture_dir: Path) -> None:
    """The fixture picture as RGBA with a transparent centre, which LG_LoadImage masks."""
    rgb = (fixture_picture(fixture_dir)[0].numpy() * 255).round().astype(np.uint8)
    alpha = np.where(centre_mask()[0].numpy() > 0, 0, 255).astype(np.uint8)
    PILImage.fromarray(np.dstack([rgb, alpha]), "RGBA").save(folders.input / INPAINT_SOURCE)


@pytest.mark.parametrize("name", ["var_class2img.json", "var_stepwise.json", "var_inpaint.json"])
def test_shipped_graphs_validate_and_run(executor, var_folders, fixture_dir, name):
    write_inpaint_source(var_folders, fixture_dir)
    graph = load_graph(name)
    assert executor.validate(graph) == []
    result = executor.run(graph)
    saved = [item for ui in result.ui.values() for item in ui["images"] if item["type"] == "output"]
    assert saved and all((var_folders.output / item["filename"]).is_file() for item in saved)


# --- in-painting --------------------------------------------------------------------------------


def test_inpaint_node_equals_model_inpaint_and_keeps_known_tokens(executor, golden, fixture_dir):
    g = Graph()
    vqvae, var = models(g)
    g.node("LG_VARInpaint", id="inpaint", vqvae=vqvae, var=var, image=g.node("LG_TestFixturePicture", fixture_dir=str(fixture_dir)),
           mask=g.node("LG_TestCentreMask"), **SAMPLING)
    result = executor.run(g.build(), targets=["inpaint", "vqvae", "var"])
    image, token_maps = result.outputs["inpaint"]
    model_vqvae, model_var = result.outputs["vqvae"][0], result.outputs["var"][0]

    reference = quantize_image(model_vqvae, golden("vqvae_io")["image"]).indices
    expected = inpaint(model_var, model_vqvae, reference, centre_mask()[None], torch.tensor([3, 7]),
                       seed=42, cfg=1.5, top_k=900, top_p=0.96)
    for ours, theirs in zip(token_maps.indices, expected.state.token_maps, strict=True):
        assert torch.equal(ours, theirs)
    assert torch.equal(image, expected.image.permute(0, 2, 3, 1))
    # The 4x4 map's corner cells lie wholly outside the mask: they are the reference's tokens.
    corners = [0, 3, 12, 15]
    assert torch.equal(token_maps.indices[3][:, corners], reference[3][:, corners])


# --- files and fingerprints ---------------------------------------------------------------------


def test_editing_a_weight_file_reexecutes_its_loader(executor, var_folders):
    graph = sampler_graph()
    executor.run(graph, targets=["sampler"])
    path = var_folders.models / VAR_FILE
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    result = executor.run(graph, targets=["sampler"])
    assert "var" in result.executed and "vqvae" not in result.executed


def test_absolute_paths_load_existing_files(executor, var_folders):
    graph = sampler_graph()
    graph["var"]["inputs"]["path"] = str((var_folders.models / VAR_FILE).resolve())
    assert executor.run(graph, targets=["sampler"]).outputs["sampler"][0].shape == (2, 64, 64, 3)


# --- errors name the node and the input ---------------------------------------------------------


class Evil:
    """Unpickling this would run code: weights-only loading must refuse it."""

    ran = False

    def __reduce__(self):
        return (_mark_ran, ())


def _mark_ran() -> None:
    Evil.ran = True


def _other_vocabulary_var(folders: Folders) -> None:
    config = VARConfig(vocab_size=512, z_channels=32, num_classes=10, depth=1, embed_dim=64,
                       num_heads=1, mlp_hidden_dim=128, patch_nums=(1, 2, 3, 4))
    save_file(VAR(config).state_dict(), str(folders.models / "var" / "other_vocab.safetensors"))


LOADER_ERRORS = [
    # (node, input value, input at fault, words the message must contain)
    ("vqvae", {"path": VAR_FILE}, "path", ["var/var.safetensors", "VQVAE"]),
    ("var", {"path": VQVAE_FILE}, "path", ["var/vqvae.safetensors", "VAR"]),
    ("var", {"path": "var/missing.safetensors"}, "path", ["missing.safetensors", "does not exist"]),
    ("var", {"path": "../outside.safetensors"}, "path", [".."]),
    ("var", {"path": "var/notes.txt"}, "path", ["notes.txt", "not a checkpoint"]),
    ("var", {"path": "/nonexistent/var.pth"}, "path", ["/nonexistent/var.pth", "does not exist"]),
    ("var", {"path": "var/evil.pth"}, "path", ["evil.pth", "weights-only"]),
    ("vqvae", {"patch_nums": "1,2,3,4,5"}, "patch_nums", ["trained with 4"]),
    ("vqvae", {"patch_nums": "1,3,2,4"}, "patch_nums", ["increasing"]),
    ("vqvae", {"patch_nums": "one,two"}, "patch_nums", ["integers"]),
]


@pytest.mark.parametrize(("node", "inputs", "at_fault", "words"), LOADER_ERRORS)
def test_loader_errors_name_node_input_and_file(executor, var_folders, node, inputs, at_fault, words):
    torch.save({"weights": torch.zeros(2), "payload": Evil()}, var_folders.models / "var" / "evil.pth")
    graph = sampler_graph()
    graph[node]["inputs"].update(inputs)
    with pytest.raises(NodeFailed) as failure:
        executor.run(graph, targets=["sampler"])
    assert (failure.value.node_id, failure.value.error.input_name) == (node, at_fault)
    for word in words:
        assert word in str(failure.value)
    if "searched" not in str(failure.value):  # a local host names the models folders it searched
        assert str(var_folders.models.resolve()) not in str(failure.value)  # no server layout leaks
    assert not Evil.ran


SAMPLER_ERRORS = [
    ({"class_labels": "3, 12"}, "class_labels", "12 is not a class"),
    ({"class_labels": "three"}, "class_labels", "integers"),
    ({"top_k": 5000}, "top_k", "vocabulary of 1024"),
]


@pytest.mark.parametrize(("settings", "at_fault", "words"), SAMPLER_ERRORS)
def test_sampler_errors_name_the_sampler_and_input(executor, settings, at_fault, words):
    with pytest.raises(NodeFailed) as failure:
        executor.run(sampler_graph(**settings), targets=["sampler"])
    assert (failure.value.node_id, failure.value.error.input_name) == ("sampler", at_fault)
    assert words in str(failure.value)


def test_out_of_range_literals_are_refused_before_running(executor):
    graph = sampler_graph(cfg=-1.0, top_p=1.5)
    with pytest.raises(WorkflowInvalid) as invalid:
        executor.run(graph, targets=["sampler"])
    assert {(i.node_id, i.input) for i in invalid.value.issues} == {("sampler", "cfg"), ("sampler", "top_p")}


def test_vqvae_of_another_vocabulary_is_refused(executor, var_folders):
    _other_vocabulary_var(var_folders)
    graph = sampler_graph()
    graph["var"]["inputs"]["path"] = "var/other_vocab.safetensors"
    with pytest.raises(NodeFailed) as failure:
        executor.run(graph, targets=["sampler"])
    assert (failure.value.node_id, failure.value.error.input_name) == ("sampler", "vqvae")
    assert "1024" in str(failure.value) and "512" in str(failure.value)


@pytest.mark.parametrize(("image_side", "mask_side", "at_fault"), [(64, 32, "mask"), (32, 64, "image")])
def test_inpaint_refuses_wrongly_sized_image_or_mask(executor, fixture_dir, image_side, mask_side,
                                                    at_fault):
    g = Graph()
    vqvae, var = models(g)
    g.node("LG_VARInpaint", id="inpaint", vqvae=vqvae, var=var,
           image=g.node("LG_TestFixturePicture", fixture_dir=str(fixture_dir), side=image_side),
           mask=g.node("LG_TestCentreMask", side=mask_side), **SAMPLING)
    with pytest.raises(NodeFailed) as failure:
        executor.run(g.build(), targets=["inpaint"])
    assert (failure.value.node_id, failure.value.error.input_name) == ("inpaint", at_fault)
    assert "64x64" in str(failure.value)


def test_a_step_past_the_last_scale_names_the_state(executor):
    g = Graph.extend(load_graph("var_stepwise.json"))
    g.node("LG_VARScaleStep", id="12", **{**g.nodes["7"]["inputs"], "state": NodeRef("7")})
    with pytest.raises(NodeFailed) as failure:
        executor.run(g.build(), targets=["12"])
    assert (failure.value.node_id, failure.value.error.input_name) == ("12", "state")
    assert "all 4 scales" in str(failure.value)


def test_a_reference_without_a_mask_names_the_mask(executor, fixture_dir):
    g = Graph.extend(load_graph("var_stepwise.json"))
    picture = g.node("LG_TestFixturePicture", id="20", fixture_dir=str(fixture_dir))
    g.set("4", reference=g.node("LG_VQVAEQuantize", id="21", vqvae=NodeRef("1"), image=picture))
    with pytest.raises(NodeFailed) as failure:
        executor.run(g.build(), targets=["4"])
    assert (failure.value.node_id, failure.value.error.input_name) == ("4", "mask")


def test_label_minus_one_asks_for_the_null_class(executor):
    g = Graph()
    _, var = models(g)
    g.node("LG_VARStart", id="start", var=var, class_labels="-1, 9", seed=0)
    state = executor.run(g.build(), targets=["start"]).outputs["start"][0]
    assert state.labels.tolist() == [10, 9] and state.scale_index == 0
