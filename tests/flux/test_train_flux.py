"""Smoke test of the tiny FLUX.1-architecture trainer: 3 CPU steps per stage, an export that is a
FluxPipeline folder of safetensors, which diffusers' FluxPipeline and our flux_txt2img graph
(with a negative prompt: true CFG) turn into the same image; a stopped run resumes bit for bit.
Slow (a smoke run is a minute or more on 2 busy CPU cores, the resume check three more), so
marked as such: ``-m slow`` runs them."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from diffusers import FluxPipeline
from graph_helpers import Graph, NodeRef
from latentgraph import Executor
from latentgraph.executor import Folders
from latentgraph.training.train_flux import EVAL_GUIDANCE, main

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training"))
from trainer_runs import SMOKE, assert_resumes_bit_exact  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("flux") / "models" / "shapes_flux"
    assert main(["--out", str(out), *SMOKE]) == out
    return out


def test_export_is_a_safetensors_flux_pipeline_folder(trained: Path) -> None:
    for part in ("model_index.json", "scheduler/scheduler_config.json", "tokenizer/vocab.json",
                 "text_encoder/model.safetensors", "text_encoder_2/model.safetensors",
                 "transformer/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.safetensors"):  # fmt: skip
        assert (trained / part).is_file(), part
    files = [p for p in trained.rglob("*") if p.is_file()]
    assert not [p for p in files if p.suffix in (".bin", ".pt", ".pth", ".ckpt", ".pkl")]
    assert sum(p.stat().st_size for p in files if p.suffix == ".safetensors") <= 20 * 2**20
    index = json.loads((trained / "model_index.json").read_text())
    assert index["_class_name"] == "FluxPipeline" and index["transformer"][1] == "FluxTransformer2DModel"


def test_our_graph_gives_the_pipelines_image(trained: Path, shipped_graph) -> None:
    pipe = FluxPipeline.from_pretrained(str(trained), torch_dtype=torch.float32)  # the fp16 files, as ours
    pipe.set_progress_bar_config(disable=True)
    ref = pipe("a red circle", negative_prompt="", true_cfg_scale=EVAL_GUIDANCE, height=32, width=32,
               num_inference_steps=2, generator=torch.Generator().manual_seed(3), output_type="pt").images
    g = Graph.extend(shipped_graph("flux_txt2img", {"1": {"path": "shapes_flux"}, "2": {"text": "a red circle"},
                                                    "4": {"width": 32, "height": 32},
                                                    "5": {"steps": 2, "seed": 3, "cfg": EVAL_GUIDANCE}}))
    negative = g.node("LG_TextEncode", id="20", encoder=g.output(NodeRef("1"), "text_encoder"), text="")
    g.set("5", negative=negative)
    folders = Folders.under(trained.parent.parent)
    ours = Executor(device="cpu", folders=folders).run(g.build(), ["6"]).outputs["6"][0].permute(0, 3, 1, 2)
    assert (ours - ref).abs().max().item() <= 1e-5


def test_stopped_and_resumed_run_is_bit_exact(trained: Path, tmp_path: Path) -> None:
    assert_resumes_bit_exact(main, trained, tmp_path / "resumed", "flux",
                             ("vae", "text_encoder", "transformer", "ema_text", "ema_transformer"))
