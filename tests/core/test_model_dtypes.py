"""One dtype policy, each family's half dtype declared in its Family record, and saved PNGs that
name the dtypes of the models upstream as their loaders recorded them (never a guess from the
device)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from latentgraph import Executor, load_workflow
from latentgraph.executor import Folders
from latentgraph.executor.context import Context
from latentgraph.executor.graph_builder import GraphBuilder
from latentgraph.nodes import default_families
from latentgraph.nodes.common import families
from latentgraph.nodes.common.families import Family
from latentgraph.nodes.ldm import loading as ldm_loading
from latentgraph.nodes.sana import loading as sana_loading
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
CPU, CUDA = torch.device("cpu"), torch.device("cuda")
PARTS = ("denoiser", "text_encoder", "autoencoder")


def shipped(name: str, steps: int = 2) -> dict:
    """A shipped shapes graph, with fewer sampling steps."""
    graph = load_workflow(ROOT / "graphs" / f"{name}.json").nodes
    for call in graph.values():
        if "steps" in call["inputs"]:
            call["inputs"]["steps"] = steps
    return graph


def saved_meta(folders: Folders, prefix: str) -> dict:
    (png,) = folders.output.glob(f"{prefix}_*.png")
    with Image.open(png) as img:
        return json.loads(img.text["latentgraph"])


@pytest.fixture
def shipped_models(tmp_path: Path) -> Folders:
    return Folders.under(tmp_path, models=ROOT / "models")


def test_each_family_declares_its_half_dtype_and_one_policy_picks(monkeypatch):
    by_name = {f.name: f for f in default_families()}
    sd, sana, var = by_name["sd1"], by_name["sana"], by_name["var"]
    assert (sd.half, sana.half, var.half) == (torch.float16, torch.bfloat16, torch.float16)
    assert all(f.compute_dtype(CPU) == torch.float32 for f in by_name.values())
    # As on a GPU with bf16 (nothing runs: the policy is asked only)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert sana.compute_dtype(CUDA) == torch.bfloat16
    assert sd.compute_dtype(CUDA) == var.compute_dtype(CUDA) == torch.float16
    # the families' loaders read their record's answer
    assert sana_loading.model_dtype(CUDA) == torch.bfloat16
    assert ldm_loading.model_dtype(CUDA) == torch.float16
    assert ldm_loading.model_dtype(CPU) == sana_loading.model_dtype(CPU) == torch.float32
    # a GPU without bf16 runs SANA in fp16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert sana.compute_dtype(CUDA) == torch.float16
    # and there is no second policy on the node context
    assert not hasattr(Context, "dtype")


def test_a_half_dtype_must_be_a_float():
    with pytest.raises(ValueError, match="not a float"):
        Family(name="odd", title="Odd", half=torch.int8)


def test_var_loaders_ask_the_policy_with_the_var_record(shipped_models, monkeypatch):
    asked = []

    def policy(device, half):
        asked.append((device.type, half))
        return torch.float32

    monkeypatch.setattr(families, "compute_dtype", policy)
    Executor(device="cpu", folders=shipped_models).run(shipped("shapes_var"))
    assert asked == [("cpu", torch.float16), ("cpu", torch.float16)]  # the VQVAE and the VAR


@pytest.mark.parametrize(
    "name, models",
    [
        ("shapes_sd", {"1": dict.fromkeys(PARTS, "float32")}),
        ("shapes_sana", {"1": dict.fromkeys(PARTS, "float32")}),
        ("shapes_var", {"1": {"vqvae": "float32"}, "2": {"var": "float32"}}),
    ],
)
def test_the_png_records_the_dtypes_of_the_models_that_made_it(shipped_models, name, models):
    executor = Executor(device="cpu", folders=shipped_models)
    graph = shipped(name)
    executor.run(graph)
    meta = saved_meta(shipped_models, name)
    assert meta["device"] == "cpu" and meta["models"] == models and meta["dtype"] == "float32"
    # a run that takes every model from the cache (only the file name changes) says the same
    (save,) = [i for i, call in graph.items() if call["class_type"] == "LG_SaveImage"]
    graph[save]["inputs"]["filename_prefix"] = "again"
    assert executor.run(graph).executed == [save]
    assert saved_meta(shipped_models, "again")["models"] == models


def test_only_the_models_upstream_and_the_outputs_read(shipped_models):
    g = GraphBuilder()
    sd = g.node("LG_LoadCheckpoint", id="sd", path="shapes_sd")
    latent = g.node("LG_EmptyLatent", autoencoder=sd.out(2), width=32, height=32, batch=1)
    decoded = g.node("LG_AutoencoderDecode", autoencoder=sd.out(2), latent=latent.out(0))
    g.node("LG_SaveImage", images=decoded.out(0), filename_prefix="decoded")
    vqvae = g.node(
        "LG_LoadVQVAE", id="vq", path="shapes_var/vqvae.safetensors", patch_nums="1,2,3,4,6,8"
    )
    var = g.node("LG_LoadVAR", id="var", path="shapes_var/var.safetensors")
    sampled = g.node(
        "LG_VARSampler", vqvae=vqvae.out(0), var=var.out(0), class_labels="3", top_k=0, top_p=0.0
    )
    g.node("LG_SaveImage", images=sampled.out(0), filename_prefix="sampled")
    plain = g.node("LG_EmptyImage", width=8, height=8)
    g.node("LG_SaveImage", images=plain.out(0), filename_prefix="plain")
    Executor(device="cpu", folders=shipped_models).run(g.build())
    # the decode reads the checkpoint's autoencoder only; the VAR image reads both VAR loaders
    assert saved_meta(shipped_models, "decoded")["models"] == {"sd": {"autoencoder": "float32"}}
    assert saved_meta(shipped_models, "sampled")["models"] == {
        "var": {"var": "float32"},
        "vq": {"vqvae": "float32"},
    }
    plain_meta = saved_meta(shipped_models, "plain")
    assert plain_meta["models"] == {} and plain_meta["dtype"] is None


def test_the_png_says_what_the_loader_recorded_not_the_device(tmp_path, monkeypatch):
    # Every family loads in its half dtype, as on a GPU, but on the CPU: SANA's models are bf16,
    # and the PNG must say so although the device is the CPU.
    monkeypatch.setattr(families, "compute_dtype", lambda device, half: half)
    folders = Folders.under(tmp_path)
    # a copy: loaded parts are shared per file, and another test may hold the fp32 ones
    shutil.copytree(ROOT / "models" / "shapes_sana", folders.models / "shapes_sana")
    result = Executor(device="cpu", folders=folders).run(
        shipped("shapes_sana", steps=1), targets=["1"]
    )
    assert {model.placement[1] for model in result.outputs["1"]} == {torch.bfloat16}
    meta = saved_meta(folders, "shapes_sana")
    assert meta["device"] == "cpu" and meta["dtype"] == "bfloat16"
    assert meta["models"] == {"1": dict.fromkeys(PARTS, "bfloat16")}
