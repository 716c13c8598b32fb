"""The shipped shapes models end to end: each shapes graph, run through the executor with the
shipped weights, must draw what its prompt (or class label) asks for, as read by the checker.
A regression in any node of the pipeline shows up here."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from latentgraph import Executor, load_workflow
from latentgraph.executor import Folders, NodeFailed
from latentgraph.nodes.common.files import SHIPPED_MODELS
from latentgraph.nodes.shapes import dataset as shapes
from latentgraph.training import checker

ROOT = Path(__file__).resolve().parents[2]
# (class id, seed): every shape and every colour at least once.
CASES = [(0, 1), (7, 2), (14, 3), (21, 4), (11, 5), (16, 6)]


def shipped(family: str) -> Path:
    graph = ROOT / "graphs" / f"shapes_{family}.json"
    if not graph.is_file():
        pytest.fail(f"graphs/shapes_{family}.json is missing")
    return graph


def of_type(graph: dict, class_type: str) -> str:
    return next(node_id for node_id, call in graph.items() if call["class_type"] == class_type)


def run_text_graph(tmp_path: Path, family: str, text: str, seed: int = 0):
    """The shipped text-to-image graph's decoded image. The prompt is typed into the graph's
    LG_String where it has one (FLUX's CLIP-L and T5 encoders share it), else into the encode
    node of the sampler's positive input."""
    graph = load_workflow(shipped(family)).nodes
    sampler, save = of_type(graph, "LG_Sampler"), of_type(graph, "LG_SaveImage")
    if any(call["class_type"] == "LG_String" for call in graph.values()):
        graph[of_type(graph, "LG_String")]["inputs"]["value"] = text
    else:
        graph[graph[sampler]["inputs"]["positive"][0]]["inputs"]["text"] = text
    graph[sampler]["inputs"]["seed"] = seed
    decode = graph.pop(save)["inputs"]["images"][0]  # the image, not the file
    folders = Folders(tmp_path / "in", tmp_path / "out", tmp_path / "tmp", ROOT / "models")
    return Executor(device="cpu", folders=folders).run(graph, targets=[decode]).outputs[decode][0]


@pytest.mark.parametrize("family", ["sd", "sana", "flux"])
@pytest.mark.parametrize("class_id, seed", CASES)
def test_shapes_text_models_draw_the_prompt(tmp_path, family, class_id, seed):
    image = run_text_graph(tmp_path, family, shapes.caption_of(class_id), seed)
    verdict = checker.check(image[0].numpy())
    assert (verdict.shape, verdict.colour) == shapes.class_names(class_id)


@pytest.mark.parametrize("family", ["sd", "sana", "flux"])
def test_prompt_outside_the_grammar_still_makes_an_image(tmp_path, family):
    image = run_text_graph(tmp_path, family, "An Astronaut riding a horse, 4k!")
    assert image.shape == (1, 32, 32, 3) and 0 <= float(image.min()) <= float(image.max()) <= 1


#: class-conditional graphs: (node, input) that carry the class ids, the node giving the image
CLASS_GRAPHS = {"var": ("3", "class_labels", "3"), "adm": ("3", "labels", "4")}


@pytest.mark.parametrize("family", sorted(CLASS_GRAPHS))
@pytest.mark.parametrize("class_id, seed", CASES)
def test_shapes_class_models_draw_the_class(tmp_path, family, class_id, seed):
    """VAR by next-scale prediction; ADM by classifier guidance of its unconditional U-Net."""
    node, class_input, image_node = CLASS_GRAPHS[family]
    graph = load_workflow(shipped(family)).nodes
    graph[node]["inputs"].update({class_input: str(class_id), "seed": seed})
    del graph[of_type(graph, "LG_SaveImage")]
    folders = Folders(tmp_path / "in", tmp_path / "out", tmp_path / "tmp", ROOT / "models")
    image = Executor(device="cpu", folders=folders).run(graph, targets=[image_node]).outputs[image_node][0]
    verdict = checker.check(image[0].numpy())
    assert (verdict.shape, verdict.colour) == shapes.class_names(class_id)


def run_with_models(tmp_path: Path, family: str, models: Path) -> None:
    graph = load_workflow(shipped(family)).nodes
    graph = {k: v for k, v in graph.items() if v["class_type"] != "LG_SaveImage"}
    folders = Folders(tmp_path / "in", tmp_path / "out", tmp_path / "tmp", models)
    Executor(device="cpu", folders=folders).run(graph, targets=list(graph))


@pytest.mark.parametrize("family, weights", [
    ("sd", "shapes_sd/unet/diffusion_pytorch_model.safetensors"),
    ("sana", "shapes_sana/transformer/diffusion_pytorch_model.safetensors"),
    ("var", "shapes_var/var.safetensors"),
    ("flux", "shapes_flux/transformer/diffusion_pytorch_model.safetensors"),
    ("adm", "shapes_adm/classifier.safetensors"),
])
def test_a_damaged_shipped_weight_file_is_named(tmp_path, family, weights):
    """A file that is there but does not load: the message names it, and suggests no trainer (the
    file may be the user's own; the trainer is the answer only when the model is nowhere)."""
    models = tmp_path / "models"
    folder = weights.split("/")[0]
    shutil.copytree(ROOT / "models" / folder, models / folder)
    (models / weights).write_bytes(b"\x00" * 100)  # truncated by a bad copy
    with pytest.raises(NodeFailed) as failure:
        run_with_models(tmp_path, family, models)
    message = str(failure.value)
    assert Path(weights).name in message
    assert "re-create" not in message


@pytest.mark.parametrize("family", ["sd", "sana", "var", "stylegan", "flux", "adm"])
def test_a_missing_shipped_model_says_where_it_looked_and_how_to_re_create_it(tmp_path, family):
    (tmp_path / "models").mkdir()
    with pytest.raises(NodeFailed) as failure:
        run_with_models(tmp_path, family, tmp_path / "models")
    message = str(failure.value)
    assert f"'shapes_{family}" in message and "does not exist" in message
    assert str(tmp_path / "models") in message and "--models-dir" in message
    assert f"re-create it with `{SHIPPED_MODELS[f'shapes_{family}']}`" in message
    assert f"latentgraph.training.train_{family} --out models/shapes_{family}" in message
