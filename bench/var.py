"""VAR class-to-image: our nodes through the executor against a plain loop over the same model.

Both sides use the same random-init models (VAR-d{depth} sized: embed 64*depth, depth heads, MLP 4x;
the released 256 px VQVAE shape) and the same seed, and must give the same image. The reference is
the model layer's one-shot ``generate`` (start, then ``scale_step`` per scale, then decode) with no
executor in between; our side is an ``LG_VARSampler`` expanding into start, one cached
``LG_VARScaleStep`` per scale, decode and token maps. Every timed executor run samples a new seed,
so nothing comes from the cache except the models. Previews are off, as in the CLI.

    python bench/var.py [--depth 16] [--batch 2] [--steps 10] [--repeats 3]

``--steps N`` samples only the first N scales of the 256 px schedule (1,2,3,4,5,6,8,10,13,16), so
the image is 16 * pn_N pixels: a quick run for small machines.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from latentgraph.executor import Executor, Inputs, Node, NodeRegistry, Outputs
from latentgraph.executor.graph_builder import GraphBuilder
from latentgraph.nodes import default_registry
from latentgraph.nodes.var.model import VAR, VQVAE, VARConfig, VQVAEConfig, generate
from latentgraph.nodes.var.model.vqvae import RELEASED_PATCH_NUMS_256
from latentgraph.nodes.var.sockets import VARModelSocket, VQVAESocket

MODELS: dict[str, torch.nn.Module] = {}


class BenchModels(Node):
    """The benchmark's in-memory random-init VQVAE and VAR (no checkpoint on disk)."""

    class_type = "LG_BenchVARModels"

    class In(Inputs):
        pass

    class Out(Outputs):
        vqvae: VQVAESocket
        var: VARModelSocket

    def run(self, x: In) -> Out:
        return self.Out(vqvae=MODELS["vqvae"], var=MODELS["var"])


def build_models(depth: int, patch_nums: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    config = VARConfig(depth=depth, embed_dim=64 * depth, num_heads=depth,
                       mlp_hidden_dim=4 * 64 * depth, patch_nums=patch_nums)
    MODELS["var"] = VAR(config).eval().requires_grad_(False)
    MODELS["vqvae"] = VQVAE(VQVAEConfig(patch_nums=patch_nums)).eval().requires_grad_(False)


def sampler_graph(labels: list[int], seed: int, settings: dict) -> dict:
    g = GraphBuilder()
    models = g.node("LG_BenchVARModels", id="models")
    g.node("LG_VARSampler", id="sampler", vqvae=models.out(0), var=models.out(1),
           class_labels=",".join(map(str, labels)), seed=seed, **settings)
    return g.build()


class Timer:
    """Wall time, and the process's CPU time (all threads), which other jobs on a shared machine
    disturb far less than wall time."""

    def __enter__(self) -> Timer:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def run_nodes(executor: Executor, labels: list[int], seed: int, settings: dict) -> torch.Tensor:
    graph = sampler_graph(labels, seed, settings)
    return executor.run(graph, targets=["sampler"]).outputs["sampler"][0]


def run_reference(labels: list[int], seed: int, settings: dict) -> torch.Tensor:
    result = generate(MODELS["var"], MODELS["vqvae"], torch.tensor(labels), seed=seed, **settings)
    return result.image.permute(0, 2, 3, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--depth", type=int, default=16)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=len(RELEASED_PATCH_NUMS_256),
                        help="scales to sample (a prefix of the 256 px schedule)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cfg", type=float, default=4.0)
    parser.add_argument("--top-k", type=int, default=900)
    parser.add_argument("--top-p", type=float, default=0.95)
    args = parser.parse_args()

    patch_nums = RELEASED_PATCH_NUMS_256[: args.steps]
    started = time.perf_counter()
    build_models(args.depth, patch_nums)
    params = sum(p.numel() for p in MODELS["var"].parameters()) / 1e6
    print(f"VAR-d{args.depth} ({params:.0f}M parameters), {len(patch_nums)} scales -> "
          f"{16 * patch_nums[-1]}x{16 * patch_nums[-1]} px, batch {args.batch}, CPU with "
          f"{torch.get_num_threads()} threads (models built in {time.perf_counter() - started:.1f} s)")

    settings = {"cfg": args.cfg, "top_k": args.top_k, "top_p": args.top_p, "more_smooth": False}
    labels = [(207 + 101 * i) % 1000 for i in range(args.batch)]
    executor = Executor(device="cpu", registry=NodeRegistry([*default_registry(), BenchModels]))
    times: dict[str, list[Timer]] = {"nodes": [], "reference": []}
    for repeat in range(args.repeats):
        seed = 1000 + repeat
        # Alternate which side runs first, so neither always gets the warmer caches.
        order = ("nodes", "reference") if repeat % 2 == 0 else ("reference", "nodes")
        images = {}
        for side in order:
            with Timer() as timer:
                if side == "nodes":
                    images[side] = run_nodes(executor, labels, seed, settings)
                else:
                    images[side] = run_reference(labels, seed, settings)
            times[side].append(timer)
        if not torch.equal(images["nodes"], images["reference"]):
            difference = (images["nodes"] - images["reference"]).abs().max()
            raise SystemExit(f"images differ: max |diff| {difference:.3g}")
        ours, ref = times["nodes"][-1], times["reference"][-1]
        print(f"  repeat {repeat}: nodes {ours.wall:.2f} s wall / {ours.cpu:.2f} s CPU, "
              f"reference {ref.wall:.2f} s wall / {ref.cpu:.2f} s CPU (same image)")
    for clock in ("wall", "cpu"):
        ours_s = statistics.median(getattr(t, clock) for t in times["nodes"])
        ref_s = statistics.median(getattr(t, clock) for t in times["reference"])
        print(f"median {clock} time per batch of {args.batch}: nodes {ours_s:.2f} s, reference "
              f"loop {ref_s:.2f} s, ratio nodes/reference {ours_s / ref_s:.3f}")


if __name__ == "__main__":
    main()
