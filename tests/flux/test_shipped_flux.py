"""The shipped tiny FLUX.1-architecture model (models/shapes_flux, fp16 safetensors): its graph
is FluxPipeline's run of the same folder (true CFG against the empty prompt, T5 at the 32 tokens
it was trained with), decoded images within 1e-5 in fp32 on the CPU; the model's adherence is
tests/core/test_shapes_models.py's, bench/adherence.py measures it over 200 images."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import FluxPipeline
from latentgraph import Executor
from latentgraph.executor import Folders

ROOT = Path(__file__).resolve().parents[2]
PROMPT, SEED, STEPS, TOLERANCE = "a yellow cross", 5, 20, 1e-5


def test_shipped_graph_equals_flux_pipeline(tmp_path):
    graph = json.loads((ROOT / "graphs" / "shapes_flux.json").read_text())
    graph["2"]["inputs"]["value"] = PROMPT
    graph["10"]["inputs"].update(seed=SEED, steps=STEPS)
    cfg, t5_tokens = graph["10"]["inputs"]["cfg"], graph["4"]["inputs"]["max_length"]
    folders = Folders(tmp_path / "in", tmp_path / "out", tmp_path / "tmp", ROOT / "models")
    ours = Executor(device="cpu", folders=folders).run(graph, targets=["11"]).outputs["11"][0]

    pipe = FluxPipeline.from_pretrained(ROOT / "models" / "shapes_flux", torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    ref = pipe(
        PROMPT, negative_prompt="", true_cfg_scale=cfg, max_sequence_length=t5_tokens,
        num_inference_steps=STEPS, height=32, width=32,
        generator=torch.Generator().manual_seed(SEED), output_type="pt",
    ).images  # fmt: skip
    assert ours.shape == (1, 32, 32, 3)
    assert (ours.permute(0, 3, 1, 2) - ref).abs().max().item() <= TOLERANCE
