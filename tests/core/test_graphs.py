"""Every shared workflow validates; those that need no downloaded weights run end to end."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from graph_helpers import one_node
from latentgraph import Executor, load_workflow
from latentgraph.executor import Folders

GRAPHS = sorted((Path(__file__).resolve().parents[2] / "graphs").glob("*.json"))
SELF_CONTAINED = ["core_demo.json", "ddpm_vs_ddim.json", "ddim_unrolled.json"]


@pytest.mark.parametrize("path", GRAPHS, ids=[p.name for p in GRAPHS])
def test_shared_graph_validates(path):
    assert Executor(device="cpu").validate(load_workflow(path)) == []


@pytest.mark.parametrize("name", SELF_CONTAINED)
def test_self_contained_graph_runs(tmp_path, name):
    result = Executor(device="cpu", folders=Folders.under(tmp_path)).run(load_workflow(GRAPHS[0].parent / name))
    images = [img for ui in result.ui.values() for img in ui["images"]]
    assert images and all((tmp_path / img["type"] / img["subfolder"] / img["filename"]).is_file() for img in images)


def test_ideal_denoiser_reproduces_dataset_images(tmp_path):
    """Sampling with the posterior-mean denoiser of a dataset lands on one of its images."""
    graph = load_workflow(GRAPHS[0].parent / "ddpm_vs_ddim.json").nodes
    ex = Executor(device="cpu", folders=Folders.under(tmp_path))
    result = ex.run(graph, targets=["1", "7"])
    data = result.outputs["1"][0].permute(0, 3, 1, 2) * 2 - 1
    samples = result.outputs["7"][0]["samples"]
    nearest = torch.cdist(samples.flatten(1), data.flatten(1)).min(dim=1).values
    assert (nearest / data[0].numel() ** 0.5 < 0.02).all()


def test_shapes_images_node_checks_class_ids(tmp_path):
    from latentgraph.executor import NodeFailed

    graph = one_node("LG_ShapesImages", count=2, class_ids="3,99")
    with pytest.raises(NodeFailed, match="input 'class_ids'"):
        Executor(device="cpu", folders=Folders.under(tmp_path)).run(graph, targets=["1"])
