"""VAR class-to-image: our loaders and nodes against the official implementation, same weights.

The official code (github.com/FoundationVision/VAR) is not part of latentgraph and is never
committed: clone it into a temporary folder and pass that folder with ``--official``. The script
builds the official VQVAE and VAR with seeded random weights (released shapes: the 256 px VQVAE
``vae_ch160v4096z32``, VAR-d{depth} with width 64*depth), saves them as safetensors in the official
key layout, and loads that file back through ``LG_LoadVQVAE`` / ``LG_LoadVAR``, so our side runs
exactly the code a user's downloaded checkpoint would. Both sides then generate the same classes
with the same seed, alternately, timed after a warm-up run each:

  official  ``VAR.autoregressive_infer_cfg(B, labels, g_seed=seed, cfg, top_k, top_p)``, under
            ``torch.autocast(float16)`` on CUDA as the official demo runs it;
  ours      ``LG_VARSampler`` through the executor (one cached node per scale), fp16 weights on
            CUDA, every run with a fresh seed so only the models come from the cache.

On the CPU (fp32) the two images must be identical; on CUDA half precision rounding differs
between autocast and fp16 weights, so the script reports the difference instead.

    git clone https://github.com/FoundationVision/VAR /tmp/var-official
    python bench/var_official.py --official /tmp/var-official --device cuda --depth 16 --batch 16
    python bench/var_official.py --official /tmp/var-official --device cuda --depth 30 --batch 16
    python bench/var_official.py --official /tmp/var-official --depth 16 --batch 2 --scales 6  # CPU
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from latentgraph import Executor
from latentgraph.executor import Folders
from latentgraph.executor.graph_builder import GraphBuilder
from latentgraph.executor.run import settle_heap
from latentgraph.nodes.var.model.vqvae import RELEASED_PATCH_NUMS_256
from safetensors.torch import save_file


def official_models(official: Path, depth: int, patch_nums: tuple[int, ...], device: torch.device):
    """The official VQVAE and VAR with seeded random weights, initialised as build_vae_var does
    (without its global switch-off of torch's default initialisers, so the VQVAE gets real
    values rather than uninitialised memory)."""
    sys.path.insert(0, str(official))  # its `models` package and `dist` module
    from models.var import VAR as OfficialVAR  # noqa: PLC0415 - only importable from --official
    from models.vqvae import VQVAE as OfficialVQVAE  # noqa: PLC0415

    torch.manual_seed(0)
    vqvae = OfficialVQVAE(vocab_size=4096, z_channels=32, ch=160, test_mode=True, share_quant_resi=4,
                          v_patch_nums=patch_nums).to(device)
    var = OfficialVAR(vae_local=vqvae, num_classes=1000, depth=depth, embed_dim=64 * depth, num_heads=depth,
                      drop_rate=0.0, attn_drop_rate=0.0, drop_path_rate=0.1 * depth / 24, norm_eps=1e-6,
                      shared_aln=False, cond_drop_rate=0.1, attn_l2_norm=True, patch_nums=patch_nums).to(device)
    var.init_weights(init_adaln=0.5, init_adaln_gamma=1e-5, init_head=0.02, init_std=-1)
    return vqvae.eval().requires_grad_(False), var.eval().requires_grad_(False)


def save_official_layout(module: torch.nn.Module, path: Path, dtype: torch.dtype) -> None:
    """The state dict under the official key names, floating tensors stored as `dtype` (half on a
    GPU: what autocast rounds the weights to anyway, and half the bytes to write and read)."""
    tensors = {k: (v.to(dtype) if v.is_floating_point() else v).detach().to("cpu").contiguous().clone()
               for k, v in module.state_dict().items()}
    save_file(tensors, str(path))


def our_graph(labels: list[int], patch_nums: tuple[int, ...], seed: int, settings: dict) -> dict:
    g = GraphBuilder()
    vqvae = g.node("LG_LoadVQVAE", path="vqvae.safetensors", patch_nums=",".join(map(str, patch_nums)))
    var = g.node("LG_LoadVAR", path="var.safetensors")
    g.node("LG_VARSampler", id="sampler", vqvae=vqvae, var=var, class_labels=",".join(map(str, labels)),
           seed=seed, **settings)
    return g.build()


def timed(fn: Callable[[], torch.Tensor], device: torch.device) -> tuple[torch.Tensor, float]:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    result = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return result, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--official", type=Path, required=True, help="a clone of FoundationVision/VAR")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--depth", type=int, default=16)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--scales", type=int, default=len(RELEASED_PATCH_NUMS_256),
                        help="sample only the first N scales of the 256 px schedule (quick CPU runs)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cfg", type=float, default=4.0)
    parser.add_argument("--top-k", type=int, default=900)
    parser.add_argument("--top-p", type=float, default=0.95)
    args = parser.parse_args()
    if not (args.official / "models" / "var.py").is_file():
        parser.error(f"--official {args.official} is not a clone of FoundationVision/VAR (no models/var.py)")

    device = torch.device(args.device)
    half = device.type == "cuda"
    settle_heap()
    torch.backends.cuda.matmul.allow_tf32 = False  # both sides at the precision they ask for
    patch_nums = RELEASED_PATCH_NUMS_256[: args.scales]
    labels = [(207 + 101 * i) % 1000 for i in range(args.batch)]
    settings = {"cfg": args.cfg, "top_k": args.top_k, "top_p": args.top_p, "more_smooth": False}

    vqvae, var = official_models(args.official, args.depth, patch_nums, device)
    params = sum(p.numel() for p in var.parameters()) / 1e6
    side = 16 * patch_nums[-1]
    print(f"VAR-d{args.depth} ({params:.0f}M parameters), {len(patch_nums)} scales -> {side}x{side} px, "
          f"batch {args.batch}, {torch.cuda.get_device_name(device) if half else 'CPU'}, "
          f"{'float16' if half else f'float32, {torch.get_num_threads()} threads'}")

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        stored = torch.float16 if half else torch.float32
        save_official_layout(vqvae, root / "vqvae.safetensors", stored)
        save_official_layout(var, root / "var.safetensors", stored)
        executor = Executor(device=device, folders=Folders(root / "in", root / "out", root / "tmp", root))
        label_tensor = torch.tensor(labels, device=device)

        def official(seed: int) -> torch.Tensor:
            with torch.inference_mode(), torch.autocast(device.type, torch.float16, enabled=half):
                image = var.autoregressive_infer_cfg(args.batch, label_tensor, g_seed=seed, **settings)
            return image.permute(0, 2, 3, 1).float()

        def ours(seed: int) -> torch.Tensor:
            graph = our_graph(labels, patch_nums, seed, settings)
            return executor.run(graph, targets=["sampler"]).outputs["sampler"][0].float()

        sides = {"official": official, "ours": ours}
        for fn in sides.values():  # warm-up: loading, kernels, allocator
            timed(lambda fn=fn: fn(999), device)
        times: dict[str, list[float]] = {name: [] for name in sides}
        for repeat in range(args.repeats):
            seed = 1000 + repeat
            images = {}
            for name in (("ours", "official") if repeat % 2 == 0 else ("official", "ours")):
                images[name], seconds = timed(lambda fn=sides[name], seed=seed: fn(seed), device)
                times[name].append(seconds)
            difference = (images["ours"] - images["official"].to(images["ours"].device)).abs()
            print(f"  seed {seed}: ours {times['ours'][-1]:.3f} s, official {times['official'][-1]:.3f} s, "
                  f"image max |diff| {difference.max():.3g}, mean {difference.mean():.3g}")
            if not half and difference.max() > 0:
                raise SystemExit("in fp32 on the CPU the images must be identical")
        ours_s, official_s = statistics.median(times["ours"]), statistics.median(times["official"])
        print(f"median latency per batch of {args.batch}: ours {ours_s:.3f} s ({args.batch / ours_s:.1f} img/s), "
              f"official {official_s:.3f} s ({args.batch / official_s:.1f} img/s), ratio ours/official "
              f"{ours_s / official_s:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
