"""The shipped tiny ADM pair (models/shapes_adm): small, and classifier guidance is what makes
the class: one batch of all 24 classes through the shipped graph, guided at its scale and
unguided (scale 0) from the same seed. bench/adherence.py measures 200 images of each."""

from __future__ import annotations

import json
from pathlib import Path

from latentgraph import Executor
from latentgraph.executor import Folders
from latentgraph.nodes.shapes.dataset import NUM_CLASSES
from latentgraph.training import checker

ROOT = Path(__file__).resolve().parents[2]
#: the bench's 200 images measure the shipped figures (92.5 % guided, 4.0 % unguided, chance
#: 1/24); 24 images leave room for sampling noise
MIN_GUIDED, MAX_UNGUIDED = 0.75, 0.25


def correct_share(tmp_path: Path, scale: float | None) -> float:
    graph = json.loads((ROOT / "graphs" / "shapes_adm.json").read_text())
    labels = list(range(NUM_CLASSES))
    graph["3"]["inputs"].update(labels=",".join(map(str, labels)), batch=len(labels), seed=7)
    if scale is not None:
        graph["3"]["inputs"]["scale"] = scale
    folders = Folders(tmp_path / "in", tmp_path / "out", tmp_path / "tmp", ROOT / "models")
    images = Executor(device="cpu", folders=folders).run(graph, targets=["4"]).outputs["4"][0]
    assert images.shape == (NUM_CLASSES, 16, 16, 3)
    return sum(checker.is_correct(i.numpy(), c) for i, c in zip(images, labels, strict=True)) / len(labels)


def test_shipped_weights_are_small():
    files = [ROOT / "models" / "shapes_adm" / n for n in ("unet.safetensors", "classifier.safetensors")]
    assert sum(f.stat().st_size for f in files) <= 3.5e6


def test_guidance_makes_the_class_and_unguided_sampling_does_not(tmp_path):
    assert correct_share(tmp_path, None) >= MIN_GUIDED
    assert correct_share(tmp_path, 0.0) <= MAX_UNGUIDED
