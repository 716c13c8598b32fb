"""Prompt adherence of the shipped shapes models, measured by the training-free checker.

For each family, N images with prompts (or class labels) drawn uniformly from the 24 classes
and varied seeds are generated through the shipped graph (graphs/shapes_<family>.json) by the
executor, and the checker (training/checker.py) reads colour and shape back. Prints accuracy,
CPU time per image and images per second.

    python bench/adherence.py [--families sd var sana flux stylegan adm adm@0] [--images 200] [--models-dir models]

ADM is guided by its noisy classifier at the shipped graph's scale; ``adm@S`` measures it at
classifier scale S instead (``adm@0``: unguided, the unconditional model alone).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import torch
from latentgraph import Executor, load_workflow
from latentgraph.executor import Folders
from latentgraph.nodes.shapes import dataset as shapes
from latentgraph.training import checker

ROOT = Path(__file__).resolve().parents[1]


def _find(graph: dict, class_type: str) -> str:
    return next(node_id for node_id, call in graph.items() if call["class_type"] == class_type)


class Prepared(NamedTuple):
    graph: dict
    class_input: tuple[str, str]  # (node, input) that carries the class
    class_value: Callable[[int], Any]  # class id -> that input's value
    image_node: str
    seed_node: str  # the node whose "seed" input varies per image


def _prompt_input(graph: dict, sampler: str) -> tuple[str, str]:
    """Where the prompt is typed: the graph's LG_String (FLUX's CLIP-L and T5 encoders share
    one), else the text of the encode node on the sampler's positive input."""
    if any(call["class_type"] == "LG_String" for call in graph.values()):
        return _find(graph, "LG_String"), "value"
    return graph[sampler]["inputs"]["positive"][0], "text"


def prepared(family: str) -> Prepared:
    """The shipped graph without its save node, and where the class and the seed go."""
    family, _, scale = family.partition("@")
    graph = load_workflow(ROOT / "graphs" / f"shapes_{family}.json").nodes
    save = _find(graph, "LG_SaveImage")
    image_node = graph[save]["inputs"]["images"][0]
    del graph[save]  # measure generation, not PNG writing
    if family == "var":
        sampler = _find(graph, "LG_VARSampler")
        return Prepared(graph, (sampler, "class_labels"), str, image_node, sampler)
    if family == "adm":  # the sampler carries the class (labels), the seed and the guidance scale
        sampler = _find(graph, "LG_ADMSampler")
        if scale:
            graph[sampler]["inputs"]["scale"] = float(scale)
        return Prepared(graph, (sampler, "labels"), str, image_node, sampler)
    if family == "stylegan":  # the mapping node carries the class and the seed
        mapping = _find(graph, "LG_StyleGANMapping")
        return Prepared(graph, (mapping, "class_label"), int, image_node, mapping)
    sampler = _find(graph, "LG_Sampler")
    return Prepared(graph, _prompt_input(graph, sampler), shapes.caption_of, image_node, sampler)


def measure(family: str, count: int, models_dir: Path, seed: int) -> dict[str, float]:
    graph, (class_node, class_input), class_value, image_node, sampler = prepared(family)
    executor = Executor(device="cpu", folders=Folders(ROOT / "input", ROOT / "output", ROOT / "temp", models_dir))
    rng = random.Random(seed)
    correct = colour_ok = shape_ok = 0
    cpu = wall = 0.0
    for i in range(count):
        class_id = rng.randrange(shapes.NUM_CLASSES)
        graph[class_node]["inputs"][class_input] = class_value(class_id)
        graph[sampler]["inputs"]["seed"] = seed * 100_000 + i
        started, started_cpu = time.perf_counter(), time.process_time()
        image = executor.run(graph, targets=[image_node]).outputs[image_node][0]
        wall += time.perf_counter() - started
        cpu += time.process_time() - started_cpu
        verdict = checker.check(image[0].float().cpu().numpy())
        want_shape, want_colour = shapes.class_names(class_id)
        colour_ok += verdict.colour == want_colour
        shape_ok += verdict.shape == want_shape
        correct += verdict.colour == want_colour and verdict.shape == want_shape
    return {"images": count, "both": correct / count, "colour": colour_ok / count, "shape": shape_ok / count,
            "cpu_s_per_image": cpu / count, "images_per_s": count / wall}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", nargs="+", default=["sd", "var", "sana", "flux", "stylegan", "adm", "adm@0"])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--models-dir", type=Path, default=ROOT / "models")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    print(f"torch threads: {torch.get_num_threads()}")
    print(f"{'family':<8}{'images':>8}{'both':>8}{'colour':>8}{'shape':>8}{'CPU s/img':>11}{'img/s':>8}")
    for family in args.families:
        name = family.partition("@")[0]
        if not (ROOT / "graphs" / f"shapes_{name}.json").is_file():
            print(f"{family:<8} no graphs/shapes_{name}.json yet")
            continue
        r = measure(family, args.images, args.models_dir, args.seed)
        print(f"{family:<8}{r['images']:>8}{r['both']:>8.1%}{r['colour']:>8.1%}{r['shape']:>8.1%}"
              f"{r['cpu_s_per_image']:>11.3f}{r['images_per_s']:>8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
