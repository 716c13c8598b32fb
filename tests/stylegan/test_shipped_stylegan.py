"""The shipped tiny StyleGAN2 (models/shapes_stylegan): its graph runs, the file is small, and it
draws the class it is asked for (2 images per class here; bench/adherence.py measures 200)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from latentgraph import Executor
from latentgraph.executor import Folders
from latentgraph.executor.pixels import pixels_to_image
from latentgraph.nodes.shapes.dataset import NUM_CLASSES
from latentgraph.nodes.stylegan.loading import load_generator
from latentgraph.nodes.stylegan.model import truncate
from latentgraph.nodes.stylegan.noise import gaussian_z
from latentgraph.training import checker

ROOT = Path(__file__).resolve().parents[2]
WEIGHTS = ROOT / "models" / "shapes_stylegan" / "generator.safetensors"
#: the bench's 200 images measure the shipped number (98.5 %); 48 leave room for sampling noise
MIN_CORRECT = 0.8
PSI = 0.7


def test_shipped_graph_runs(tmp_path):
    assert WEIGHTS.stat().st_size <= 2.5e6
    graph = json.loads((ROOT / "graphs" / "shapes_stylegan.json").read_text())
    result = Executor(device="cpu", folders=Folders.under(tmp_path)).run(graph, targets=["3", "4"])
    image = result.outputs["3"][0]
    assert image.shape == (1, 32, 32, 3) and checker.is_correct(image[0].numpy(), 16)


def test_shipped_generator_draws_the_asked_class():
    g = load_generator(WEIGHTS, torch.device("cpu"), torch.float32)
    labels = torch.arange(NUM_CLASSES).repeat(2)
    z = gaussian_z(1000, len(labels), g.z_dim)
    with torch.no_grad():
        ws = truncate(g.mapping(z, torch.nn.functional.one_hot(labels, NUM_CLASSES).float()),
                      g.mapping.w_avg, PSI, None)
        images = pixels_to_image(g.synthesis(ws, noise_mode="const"))
    correct = sum(checker.is_correct(i.numpy(), int(c)) for i, c in zip(images, labels, strict=True))
    assert correct / len(labels) >= MIN_CORRECT
