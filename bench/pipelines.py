"""Our graphs (through the Executor) against diffusers' pipelines on the same tiny random weights,
measured in one process: wall-time and peak-memory ratios, and the image difference.

Models are the test suite's tiny SD 1.x, SANA, SD3.5-medium-shaped MM-DiT and FLUX.1-dev
(tests/ldm/sd_tiny.py, tests/sana/sana_tiny.py, tests/mmdit/tiny_transformers.py with the tiny
text encoders and VAE of tests/mmdit/tiny_text.py), saved as diffusers folders that both sides
load. Per case, both sides are warmed up, then run
`--repeat` times alternately with fresh seeds. Our graph is timed two ways:
  fresh    the executor's value cache is emptied before each run, so prompts are encoded again
           as the pipeline does (models stay loaded on both sides): the like-for-like ratio;
  re-seed  only the seed changes, so cached prompt embeddings are reused: what a graph gains.
Peak memory is the growth of the process's peak RSS during one run (Linux VmHWM, reset through
/proc/self/clear_refs before each run); the median over the repeats is reported.

    python bench/pipelines.py [--steps 20] [--size 64] [--repeat 5] [--threads 2] [--only sd3,flux]

``--full`` swaps the tiny models for the real architectures with seeded random weights: SD 1.5
(CLIP ViT-L/14 text encoder, the 860M U-Net, the SD VAE) at 512 px and SANA-600M (Gemma-2-2B,
the 28-layer 1152-wide DiT, DC-AE f32c32) at 1024 px, built on the device, saved as diffusers
folders and loaded by both sides in half precision (fp16 for SD, bf16 for SANA, as our loaders
and the pipelines' model cards choose). Peak memory is then the CUDA allocator's peak growth.
(The SD3 and FLUX rows are the tiny models only.)

    python bench/pipelines.py --full --device cuda [--steps 20] [--repeat 5] [--sync-check]

``--cuda-graphs`` (CUDA) adds a run of our graph with LG_CUDAGraphs before the sampler to each
round (the network's forward replayed as a CUDA graph).

``--sync-check`` (CUDA) first runs each case once per side under torch's sync debug mode and
lists where the host waited for the GPU: a wait inside the sampling loop keeps the next network
call from being queued while one runs.
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
from latentgraph.executor.run import settle_heap

TESTS = Path(__file__).resolve().parents[1] / "tests"
sys.path[:0] = [str(TESTS / "ldm"), str(TESTS / "sana"), str(TESTS / "mmdit")]

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


def measured(fn: Callable[[], Any], device: torch.device) -> tuple[Any, float, float, float]:
    """(result, wall seconds, CPU seconds of all threads, peak memory growth in bytes) of one
    call: RSS on the CPU, the CUDA allocator's peak on a GPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        start, cpu = time.perf_counter(), time.process_time()
        result = fn()
        torch.cuda.synchronize(device)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        return result, seconds, cpu, torch.cuda.max_memory_allocated(device) - before
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


def build_models(root: Path, full: bool, device: torch.device) -> None:
    import sana_tiny
    import sd_tiny
    from latentgraph.nodes.ldm.loading import model_dtype as sd_dtype
    from latentgraph.nodes.sana.loading import model_dtype as sana_dtype

    if full:  # stored in the dtype both sides compute in: half the bytes to write and read
        sd, sana = half(full_sd15(device), sd_dtype(device)), half(full_sana600m(device), sana_dtype(device))
    else:
        sd, sana = sd_tiny.build_components(), sana_tiny.build_components()
    sd_tiny.save_pipeline(sd, root / "models" / "sd" / "tiny")
    sana_tiny.save_pipeline(sana, root / "models" / "sana" / "tiny")
    if not full:
        import tiny_transformers

        tiny_transformers.sd3_pipeline("sd35_medium").save_pretrained(root / "models" / "sd3" / "tiny")
        tiny_transformers.flux_pipeline(dev=True).save_pretrained(root / "models" / "flux" / "tiny")
    (root / "input").mkdir(parents=True, exist_ok=True)


def half(components: dict, dtype: torch.dtype) -> dict:
    return {k: v.to(dtype) if isinstance(v, torch.nn.Module) else v for k, v in components.items()}


def full_sd15(device: torch.device) -> dict:
    """SD 1.5's architecture (runwayml/stable-diffusion-v1-5 configs) with seeded random weights,
    initialised on `device` (on a GPU, minutes faster than on the CPU)."""
    from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel
    from latentgraph.nodes.ldm.clip import bundled_tokenizer
    from sd_tiny import SD15_SCHEDULER
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    text = CLIPTextConfig(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                          num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu",
                          bos_token_id=49406, eos_token_id=49407, pad_token_id=49407)
    with torch.device(device):
        models = {
            "unet": UNet2DConditionModel(sample_size=64, cross_attention_dim=768).eval(),  # the rest: defaults
            "vae": AutoencoderKL(block_out_channels=(128, 256, 512, 512), layers_per_block=2, sample_size=512,
                                 down_block_types=("DownEncoderBlock2D",) * 4,
                                 up_block_types=("UpDecoderBlock2D",) * 4).eval(),
            "text_encoder": CLIPTextModel(text).eval(),
        }
    return {
        **models,
        "tokenizer": bundled_tokenizer(),
        "scheduler": PNDMScheduler.from_config(SD15_SCHEDULER),
    }


def full_sana600m(device: torch.device) -> dict:
    """SANA-600M at 1024 px (Sana_600M_1024px_diffusers configs): Gemma-2-2B, the DiT, DC-AE f32c32.
    The tokenizer is the tests' small one; its ids are a subset of Gemma's 256,000."""
    from diffusers import AutoencoderDC, DPMSolverMultistepScheduler, SanaTransformer2DModel
    from sana_tiny import SANA_SCHEDULER, build_tokenizer
    from transformers import Gemma2Config, Gemma2Model

    torch.manual_seed(0)
    stages = ("ResBlock",) * 3 + ("EfficientViTBlock",) * 3
    scales = ((),) * 3 + ((5,),) * 3
    widths = (128, 256, 512, 512, 1024, 1024)
    gemma = Gemma2Config(vocab_size=256000, hidden_size=2304, intermediate_size=9216, num_hidden_layers=26,
                         num_attention_heads=8, num_key_value_heads=4, head_dim=256, query_pre_attn_scalar=256,
                         max_position_embeddings=8192, pad_token_id=0, eos_token_id=1, bos_token_id=2)
    with torch.device(device):
        models = {
            "text_encoder": Gemma2Model(gemma).eval(),
            "transformer": SanaTransformer2DModel(
                in_channels=32, out_channels=32, num_attention_heads=36, attention_head_dim=32, num_layers=28,
                num_cross_attention_heads=16, cross_attention_head_dim=72, cross_attention_dim=1152,
                caption_channels=2304, mlp_ratio=2.5, sample_size=32, patch_size=1).eval(),
            "vae": AutoencoderDC(
                in_channels=3, latent_channels=32, attention_head_dim=32, encoder_block_types=stages,
                decoder_block_types=stages, encoder_block_out_channels=widths, decoder_block_out_channels=widths,
                encoder_layers_per_block=(2, 2, 2, 3, 3, 3), decoder_layers_per_block=(3,) * 6,
                encoder_qkv_multiscales=scales, decoder_qkv_multiscales=scales,
                upsample_block_type="interpolate", downsample_block_type="Conv", scaling_factor=0.41407).eval(),
        }
    return {**models, "tokenizer": build_tokenizer(), "scheduler": DPMSolverMultistepScheduler(**SANA_SCHEDULER)}


def cases(
    root: Path, steps: int, sizes: dict[str, int], device: torch.device, mmdit: bool = True
) -> list[dict[str, Any]]:
    from diffusers import (
        DDIMScheduler,
        DPMSolverMultistepScheduler,
        FlowMatchEulerDiscreteScheduler,
        SanaPipeline,
        StableDiffusionImg2ImgPipeline,
        StableDiffusionPipeline,
    )
    from latentgraph.nodes.ldm.loading import model_dtype as sd_dtype
    from latentgraph.nodes.sana.loading import model_dtype as sana_dtype
    from PIL import Image

    models = root / "models"
    size, sana_size = sizes["sd"], sizes["sana"]
    image = Image.fromarray(
        np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    )
    image.save(root / "input" / "bench.png")
    sd = StableDiffusionPipeline.from_pretrained(
        models / "sd" / "tiny", safety_checker=None, requires_safety_checker=False,
        torch_dtype=sd_dtype(device),
    ).to(device)
    sd.scheduler = DPMSolverMultistepScheduler.from_config(sd.scheduler.config)
    sd_i2i = StableDiffusionImg2ImgPipeline(**sd.components)
    sd_i2i.scheduler = DDIMScheduler.from_config(sd.scheduler.config)
    sana = SanaPipeline.from_pretrained(models / "sana" / "tiny", torch_dtype=sana_dtype(device)).to(device)
    sana_euler = SanaPipeline(
        **{**sana.components, "scheduler": FlowMatchEulerDiscreteScheduler(shift=3.0)}
    )
    for pipe in (sd, sd_i2i, sana, sana_euler):
        pipe.set_progress_bar_config(disable=True)

    def gen(seed: int) -> torch.Generator:
        return torch.Generator().manual_seed(seed)

    common = {"num_inference_steps": steps, "output_type": "pt"}
    return [*_sd_and_sana(sd, sd_i2i, sana, sana_euler, image, size, sana_size, gen, steps, common),
            *(_mmdit_cases(models, size, gen, steps, common) if mmdit else [])]


def _mmdit_cases(models: Path, size: int, gen: Callable, steps: int, common: dict) -> list[dict[str, Any]]:
    """SD3 with CFG 7 and FLUX.1-dev with guidance 3.5 (no uncond branch), flow-matching Euler."""
    from diffusers import FluxPipeline, StableDiffusion3Pipeline

    sd3 = StableDiffusion3Pipeline.from_pretrained(models / "sd3" / "tiny")
    flux = FluxPipeline.from_pretrained(models / "flux" / "tiny")
    for pipe in (sd3, flux):
        pipe.set_progress_bar_config(disable=True)
    return [
        {
            "name": "sd3 flow_euler",
            "graph": "sd3_txt2img",
            "changes": {"2": {"text": PROMPT}, "4": {"width": size, "height": size}, "5": {"steps": steps}},
            "seed_node": ("5",),
            "out": "6",
            "pipe": lambda s: sd3(PROMPT, height=size, width=size, guidance_scale=7.0, generator=gen(s), **common),
        },
        {
            "name": "flux-dev flow_euler",
            "graph": "flux_txt2img",
            "changes": {"2": {"text": PROMPT}, "4": {"width": size, "height": size}, "5": {"steps": steps}},
            "seed_node": ("5",),
            "out": "6",
            "pipe": lambda s: flux(PROMPT, height=size, width=size, guidance_scale=3.5, generator=gen(s), **common),
        },
    ]


def _sd_and_sana(sd, sd_i2i, sana, sana_euler, image, size, sana_size, gen, steps, common) -> list[dict[str, Any]]:
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
                "4": {"width": sana_size, "height": sana_size},
                "5": {"steps": steps},
            },
            "seed_node": ("5",),
            "out": "6",
            "pipe": lambda s: sana(
                PROMPT,
                height=sana_size,
                width=sana_size,
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
                "4": {"width": sana_size, "height": sana_size},
                "5": {"steps": steps, "solver": "flow_euler"},
            },
            "seed_node": ("5",),
            "out": "6",
            "pipe": lambda s: sana_euler(
                PROMPT,
                height=sana_size,
                width=sana_size,
                guidance_scale=4.5,
                generator=gen(s),
                use_resolution_binning=False,
                **common,
            ),
        },
    ]


def graph_for(case: dict[str, Any], seed: int, cuda_graphs: bool = False) -> dict[str, Any]:
    import json

    graph = json.loads(
        (Path(__file__).resolve().parents[1] / "graphs" / f"{case['graph']}.json").read_text()
    )
    for node, inputs in case["changes"].items():
        graph[node]["inputs"].update(inputs)
    for node in case["seed_node"]:
        graph[node]["inputs"]["seed"] = seed
    if cuda_graphs:  # LG_CUDAGraphs between the loader and the sampler
        sampler = next(v for v in graph.values() if v["class_type"] == "LG_Sampler")
        graph["graphs"] = {"class_type": "LG_CUDAGraphs", "inputs": {"denoiser": sampler["inputs"]["denoiser"]}}
        sampler["inputs"]["denoiser"] = ["graphs", 0]
    # Measure the image, not the PNG encoder: drop the save node.
    return {k: v for k, v in graph.items() if v["class_type"] != "LG_SaveImage"}


def run_case(
    case: dict[str, Any], executor: Any, repeat: int, device: torch.device, cuda_graphs: bool = False
) -> dict[str, float]:
    def ours(seed: int, fresh: bool, graphed: bool = False) -> torch.Tensor:
        if fresh:
            executor.cache.clear(models=False)
        result = executor.run(graph_for(case, seed, graphed), [case["out"]])
        return result.outputs[case["out"]][0].permute(0, 3, 1, 2).float()

    ours(0, True), case["pipe"](0)  # warm-up: loading, first-call allocations
    if cuda_graphs:
        ours(0, True, graphed=True)  # records the graphs
    # Both sides loaded: collect, then freeze what is alive out of the cyclic collector's passes
    # (as `latentgraph run` does at start-up), so a full collection over the models and
    # libraries of both sides does not land at random inside a timed run.
    settle_heap()
    rows: dict[str, list[float]] = {}
    diff = graphs_diff = 0.0
    for r in range(repeat):
        seed = 1000 + r
        # Rotate the order so that a neighbour's load on a shared machine hits every side alike.
        runs = [
            ("pipe", lambda seed=seed: case["pipe"](seed).images.float()),
            ("fresh", lambda seed=seed: ours(seed, True)),
            ("reseed", lambda seed=seed: ours(seed + 500, False)),
        ]
        if cuda_graphs:
            runs.append(("graphs", lambda seed=seed: ours(seed, True, graphed=True)))
        runs = runs[r % len(runs) :] + runs[: r % len(runs)]
        images = {}
        for name, fn in runs:
            images[name], seconds, cpu, peak = measured(fn, device)
            for key, value in (("wall", seconds), ("cpu", cpu), ("mem", peak)):
                rows.setdefault(f"{name}_{key}", []).append(value)
        diff = max(diff, (images["fresh"] - images["pipe"].to(images["fresh"].device)).abs().max().item())
        if cuda_graphs:
            graphs_diff = max(graphs_diff, (images["graphs"] - images["fresh"]).abs().max().item())
    out = {k: statistics.median(v) for k, v in rows.items()}
    # Ratios of runs made back to back, then their median: robust to slow spells of the machine.
    for name in ("fresh", "reseed", "graphs")[: 3 if cuda_graphs else 2]:
        for key in ("wall", "cpu"):
            pairs = zip(rows[f"{name}_{key}"], rows[f"pipe_{key}"], strict=True)
            out[f"{name}_{key}_ratio"] = statistics.median(a / b for a, b in pairs)
    out["diff"], out["graphs_diff"] = diff, graphs_diff
    return out


def sync_points(case: dict[str, Any], executor: Any) -> None:
    """Print, per side, how often and where one run made the host wait for the GPU."""
    import collections
    import warnings

    sides = {
        "pipeline": lambda: case["pipe"](7),
        "ours": lambda: executor.run(graph_for(case, 7), [case["out"]]),
    }
    for side, fn in sides.items():
        executor.cache.clear(models=False)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                fn()
            finally:
                torch.cuda.set_sync_debug_mode("default")
        places = collections.Counter(
            f"{Path(w.filename).name}:{w.lineno}" for w in caught if "synchroniz" in str(w.message)
        )
        where = ", ".join(f"{place} x{n}" for place, n in places.most_common(6)) or "-"
        print(f"  syncs, {case['name']}, {side}: {sum(places.values())} ({where})", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, help="image side in pixels (default 64; --full: 512 SD, 1024 SANA)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--full", action="store_true", help="SD 1.5 and SANA-600M sized random models")
    parser.add_argument("--sync-check", action="store_true", help="list host-device syncs per run (CUDA)")
    parser.add_argument("--cuda-graphs", action="store_true",
                        help="also time our graphs with LG_CUDAGraphs before the sampler (CUDA)")
    parser.add_argument("--only", help="run only the cases whose name holds one of these comma-separated words")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sizes = {"sd": 512, "sana": 1024} if args.full else {"sd": 64, "sana": 64}
    if args.size:
        sizes = {"sd": args.size, "sana": args.size}

    from latentgraph import Executor
    from latentgraph.executor import Folders

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        build_models(root, args.full, device)
        folders = Folders.under(root)
        for d in (folders.output, folders.temp):
            d.mkdir(parents=True, exist_ok=True)
        executor = Executor(device=device, folders=folders)
        where = (torch.cuda.get_device_name(device) + ", fp16 SD / bf16 SANA" if device.type == "cuda"
                 else f"CPU, {args.threads} threads, fp32")
        print(
            f"{where}; {'full-size' if args.full else 'tiny'} random models (built and saved in "
            f"{time.perf_counter() - started:.0f} s); SD {sizes['sd']} px, SANA {sizes['sana']} px, "
            f"{args.steps} steps; medians of {args.repeat} runs; ratios are ours / pipeline "
            f"(medians of back-to-back pairs)"
        )
        print(
            f"{'':<22}{'pipeline':>9}{'ours (fresh)':>26}{'ours (re-seed)':>16}{'peak memory growth MB':>24}"
        )
        mb = 1 << 20
        for case in cases(root, args.steps, sizes, device, mmdit=not args.full):
            if args.only and not any(word in case["name"] for word in args.only.split(",")):
                continue
            if args.sync_check and device.type == "cuda":
                sync_points(case, executor)
            graphs = args.cuda_graphs and device.type == "cuda"
            r = run_case(case, executor, args.repeat, device, graphs)
            print(
                f"{case['name']:<22}{r['pipe_wall'] * 1e3:>9.1f}{r['fresh_wall'] * 1e3:>8.1f}"
                f"{r['fresh_wall_ratio']:>7.3f}{r['fresh_cpu_ratio']:>7.3f}"
                f"{r['reseed_wall'] * 1e3:>10.1f}{r['reseed_wall_ratio']:>7.3f}"
                f"{r['pipe_mem'] / mb:>9.1f}{r['fresh_mem'] / mb:>7.1f}{r['fresh_mem'] / max(r['pipe_mem'], 1):>7.2f}"
                f"{r['diff']:>11.1e}"
            )
            if graphs:
                print(f"{'  + LG_CUDAGraphs':<31}{r['graphs_wall'] * 1e3:>8.1f}{r['graphs_wall_ratio']:>7.3f}"
                      f"{r['graphs_cpu_ratio']:>7.3f}   max |diff| to ours eager {r['graphs_diff']:.1e}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
