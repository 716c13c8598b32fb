"""Our graphs (through the Executor) against diffusers' pipelines on the same tiny random weights,
measured in one process: wall-time and peak-memory ratios, and the image difference.

Models are the test suite's tiny SD 1.x and SANA (tests/ldm/sd_tiny.py, tests/sana/sana_tiny.py),
saved as diffusers folders that both sides load. Per case, both sides are warmed up, then run
`--repeat` times alternately with fresh seeds. Our graph is timed two ways:
  fresh    the executor's value cache is emptied before each run, so prompts are encoded again
           as the pipeline does (models stay loaded on both sides): the like-for-like ratio;
  re-seed  only the seed changes, so cached prompt embeddings are reused: what a graph gains.
Peak memory is the growth of the process's peak RSS during one run (Linux VmHWM, reset through
/proc/self/clear_refs before each run); the median over the repeats is reported.

    python bench/pipelines.py [--steps 20] [--size 64] [--repeat 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import ctypes
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

TESTS = Path(__file__).resolve().parents[1] / "tests"
sys.path[:0] = [str(TESTS / "ldm"), str(TESTS / "sana")]

PROMPT = "a photograph of an astronaut riding a horse"


def _status(field: str) -> int:
    return (
        int(re.search(rf"{field}:\s+(\d+)", Path("/proc/self/status").read_text()).group(1)) * 1024
    )


def _trim() -> None:
    """Hand freed heap pages back to the OS, so the next run's peak counts what it allocates."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


def measured(fn: Callable[[], Any]) -> tuple[Any, float, float, float]:
    """(result, wall seconds, CPU seconds of all threads, peak RSS growth in bytes) of one call."""
    can_reset = Path("/proc/self/clear_refs").exists()
    if can_reset:
        _trim()
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        before = _status("VmRSS")
    start, cpu = time.perf_counter(), time.process_time()
    result = fn()
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    peak = _status("VmHWM") - before if can_reset else float("nan")
    return result, seconds, cpu, peak


def build_models(root: Path) -> None:
    import sana_tiny
    import sd_tiny

    sd_tiny.save_pipeline(sd_tiny.build_components(), root / "models" / "sd" / "tiny")
    sana_tiny.save_pipeline(sana_tiny.build_components(), root / "models" / "sana" / "tiny")
    (root / "input").mkdir(parents=True, exist_ok=True)


def cases(root: Path, steps: int, size: int) -> list[dict[str, Any]]:
    from diffusers import (
        DDIMScheduler,
        DPMSolverMultistepScheduler,
        FlowMatchEulerDiscreteScheduler,
        SanaPipeline,
        StableDiffusionImg2ImgPipeline,
        StableDiffusionPipeline,
    )
    from PIL import Image

    models = root / "models"
    image = Image.fromarray(
        np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    )
    image.save(root / "input" / "bench.png")
    sd = StableDiffusionPipeline.from_pretrained(
        models / "sd" / "tiny", safety_checker=None, requires_safety_checker=False
    )
    sd.scheduler = DPMSolverMultistepScheduler.from_config(sd.scheduler.config)
    sd_i2i = StableDiffusionImg2ImgPipeline(**sd.components)
    sd_i2i.scheduler = DDIMScheduler.from_config(sd.scheduler.config)
    sana = SanaPipeline.from_pretrained(models / "sana" / "tiny")
    sana_euler = SanaPipeline(
        **{**sana.components, "scheduler": FlowMatchEulerDiscreteScheduler(shift=3.0)}
    )
    for pipe in (sd, sd_i2i, sana, sana_euler):
        pipe.set_progress_bar_config(disable=True)

    def gen(seed: int) -> torch.Generator:
        return torch.Generator().manual_seed(seed)

    common = {"num_inference_steps": steps, "output_type": "pt"}
    return [
        {
            "name": "sd txt2img dpmpp_2m",
            "graph": "sd_txt2img",
            "changes": {
                "2": {"text": PROMPT},
                "4": {"width": size, "height": size},
                "5": {"steps": steps},
            },
            "seed_node": ("5",),
            "out": "6",
            "pipe": lambda s: sd(
                PROMPT, height=size, width=size, guidance_scale=7.5, generator=gen(s), **common
            ),
        },
        {
            "name": "sd img2img ddim 0.6",
            "graph": "sd_img2img",
            "changes": {"2": {"text": PROMPT}, "4": {"image": "bench.png"}, "6": {"steps": steps}},
            "seed_node": ("5", "6"),
            "out": "7",
            "pipe": lambda s: sd_i2i(
                PROMPT, image=image, strength=0.6, guidance_scale=7.5, generator=gen(s), **common
            ),
        },
        {
            "name": "sana flow_dpmpp_2m",
            "graph": "sana_txt2img",
            "changes": {
                "2": {"text": PROMPT},
                "4": {"width": size, "height": size},
                "5": {"steps": steps},
            },
            "seed_node": ("5",),
            "out": "6",
            "pipe": lambda s: sana(
                PROMPT,
                height=size,
                width=size,
                guidance_scale=4.5,
                generator=gen(s),
                use_resolution_binning=False,
                **common,
            ),
        },
        {
            "name": "sana flow_euler",
            "graph": "sana_txt2img",
            "changes": {
                "2": {"text": PROMPT},
                "4": {"width": size, "height": size},
                "5": {"steps": steps, "solver": "flow_euler"},
            },
            "seed_node": ("5",),
            "out": "6",
            "pipe": lambda s: sana_euler(
                PROMPT,
                height=size,
                width=size,
                guidance_scale=4.5,
                generator=gen(s),
                use_resolution_binning=False,
                **common,
            ),
        },
    ]


def graph_for(case: dict[str, Any], seed: int) -> dict[str, Any]:
    import json

    graph = json.loads(
        (Path(__file__).resolve().parents[1] / "graphs" / f"{case['graph']}.json").read_text()
    )
    for node, inputs in case["changes"].items():
        graph[node]["inputs"].update(inputs)
    for node in case["seed_node"]:
        graph[node]["inputs"]["seed"] = seed
    # Measure the image, not the PNG encoder: drop the save node.
    return {k: v for k, v in graph.items() if v["class_type"] != "LG_SaveImage"}


def run_case(case: dict[str, Any], executor: Any, repeat: int) -> dict[str, float]:
    def ours(seed: int, fresh: bool) -> torch.Tensor:
        if fresh:
            executor.cache.clear(models=False)
        result = executor.run(graph_for(case, seed), [case["out"]])
        return result.outputs[case["out"]][0].permute(0, 3, 1, 2)

    ours(0, True), case["pipe"](0)  # warm-up: loading, first-call allocations
    rows: dict[str, list[float]] = {}
    diff = 0.0
    for r in range(repeat):
        seed = 1000 + r
        # Rotate the order so that a neighbour's load on a shared machine hits every side alike.
        runs = [
            ("pipe", lambda seed=seed: case["pipe"](seed).images),
            ("fresh", lambda seed=seed: ours(seed, True)),
            ("reseed", lambda seed=seed: ours(seed + 500, False)),
        ]
        runs = runs[r % 3 :] + runs[: r % 3]
        images = {}
        for name, fn in runs:
            images[name], seconds, cpu, peak = measured(fn)
            for key, value in (("wall", seconds), ("cpu", cpu), ("mem", peak)):
                rows.setdefault(f"{name}_{key}", []).append(value)
        diff = max(diff, (images["fresh"] - images["pipe"]).abs().max().item())
    out = {k: statistics.median(v) for k, v in rows.items()}
    # Ratios of runs made back to back, then their median: robust to slow spells of the machine.
    for name in ("fresh", "reseed"):
        for key in ("wall", "cpu"):
            pairs = zip(rows[f"{name}_{key}"], rows[f"pipe_{key}"], strict=True)
            out[f"{name}_{key}_ratio"] = statistics.median(a / b for a, b in pairs)
    out["diff"] = diff
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, default=64, help="image side in pixels")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from latentgraph.executor import Executor, Folders

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        build_models(root)
        folders = Folders.under(root)
        for d in (folders.output, folders.temp):
            d.mkdir(parents=True, exist_ok=True)
        executor = Executor(device="cpu", folders=folders)
        print(
            f"CPU, {args.threads} threads, fp32; {args.size}x{args.size} px, {args.steps} steps; medians of "
            f"{args.repeat} runs; ratios are ours / pipeline (medians of back-to-back pairs)"
        )
        print(
            f"{'':<22}{'pipeline':>9}{'ours (fresh)':>26}{'ours (re-seed)':>16}{'peak RSS growth MB':>24}"
        )
        print(
            f"{'case':<22}{'ms':>9}{'ms':>8}{'wall':>7}{'cpu':>7}{'ms':>10}{'wall':>7}"
            f"{'pipe':>9}{'ours':>7}{'ratio':>7}{'max|diff|':>11}"
        )
        mb = 1 << 20
        for case in cases(root, args.steps, args.size):
            r = run_case(case, executor, args.repeat)
            print(
                f"{case['name']:<22}{r['pipe_wall'] * 1e3:>9.1f}{r['fresh_wall'] * 1e3:>8.1f}"
                f"{r['fresh_wall_ratio']:>7.3f}{r['fresh_cpu_ratio']:>7.3f}"
                f"{r['reseed_wall'] * 1e3:>10.1f}{r['reseed_wall_ratio']:>7.3f}"
                f"{r['pipe_mem'] / mb:>9.1f}{r['fresh_mem'] / mb:>7.1f}{r['fresh_mem'] / max(r['pipe_mem'], 1):>7.2f}"
                f"{r['diff']:>11.1e}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
