"""Train latentgraph's tiny VAR family on the shapes dataset: a multi-scale VQVAE, then a
class-conditional VAR transformer (24 classes = 6 x shape + colour).

Both are instances of the real architectures in ``latentgraph.nodes.var.model`` and are saved
with the official key names, so the shipped graph loads them through LG_LoadVQVAE / LG_LoadVAR
exactly as it would load a released checkpoint.

    python -m latentgraph.training.train_var --out models/shapes_var --device cuda
    python -m latentgraph.training.train_var --out /tmp/v --vqvae-steps 3 --var-steps 3   # smoke

Deterministic for a given seed and device; resumes from ``OUT/checkpoint.pt`` (tensors only,
read with ``weights_only=True``) when restarted.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from ..executor.pixels import uint8_to_pixels, unit_to_image
from ..nodes.shapes import dataset as shapes
from ..nodes.var.model import VAR, VQVAE, generate
from ..nodes.var.model.quantizer import PhiSharing, area_downsample
from ..nodes.var.model.var import VARConfig
from ..nodes.var.model.vqvae import VQVAEConfig
from . import checker
from .common import lr_at

PATCH_NUMS = (1, 2, 3, 4, 6, 8)  # 64 px images, downsample 8 -> an 8 x 8 latent
VQVAE_CONFIG = VQVAEConfig(vocab_size=512, z_channels=32, ch=32, ch_mult=(1, 1, 2, 2), num_res_blocks=1,
                           phi_sharing=PhiSharing.PARTIAL, phi_count=4, patch_nums=PATCH_NUMS)
VAR_CONFIG = VARConfig(vocab_size=512, z_channels=32, num_classes=shapes.NUM_CLASSES, depth=4, embed_dim=192,
                       num_heads=3, mlp_hidden_dim=768, patch_nums=PATCH_NUMS)
COMMITMENT = 0.25  # beta of the VQ-VAE commitment term (van den Oord et al. 2017), as VAR uses
CLASS_DROPOUT = 0.1  # labels replaced by the null class, so classifier-free guidance works


def vq_forward(vqvae: VQVAE, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Reconstruction and VQ loss of the multi-scale residual quantizer in training mode.

    As in VAR's tokenizer: every scale quantizes what the coarser scales left unexplained; the
    codebook and phi learn from |f_hat - sg(f)|^2, the encoder from beta |sg(f_hat) - f|^2, and the
    decoder sees f_hat through a straight-through estimator.
    """
    q = vqvae.quantize
    f = vqvae.image_to_latent(image)
    f_target = f.detach()
    residual = f_target.clone()
    f_hat = torch.zeros_like(f)
    loss = f.new_zeros(())
    full = PATCH_NUMS[-1]
    for k, pn in enumerate(PATCH_NUMS):
        z = residual if pn == full else area_downsample(residual, pn)
        idx = q.nearest_codes(z.permute(0, 2, 3, 1).reshape(-1, q.channels))
        h = q.embedding(idx).view(f.shape[0], pn, pn, -1).permute(0, 3, 1, 2)
        if pn != full:
            h = F.interpolate(h, size=(full, full), mode="bicubic")
        h = q.phi(k, len(PATCH_NUMS))(h)
        f_hat = f_hat + h
        residual = residual - h.detach()
        loss = loss + F.mse_loss(f_hat.detach(), f) * COMMITMENT + F.mse_loss(f_hat, f_target)
    straight_through = f + (f_hat - f).detach()
    return vqvae.decoder(vqvae.post_quant_conv(straight_through)), loss / len(PATCH_NUMS)


def init_var(var: VAR, seed: int) -> None:
    """Small-normal init (std 0.02), as transformers are usually started."""
    gen = torch.Generator().manual_seed(seed)
    for module in var.modules():
        if isinstance(module, nn.Linear | nn.Embedding):
            module.weight.data.copy_(torch.randn(module.weight.shape, generator=gen) * 0.02)
            if getattr(module, "bias", None) is not None:
                module.bias.data.zero_()
    for param in (var.pos_start, var.pos_1LC):
        param.data.copy_(torch.randn(param.shape, generator=gen) * 0.02)


def save_weights(module: nn.Module, path: Path, dtype: torch.dtype) -> None:
    state = {k: (v.to(dtype) if v.is_floating_point() and k != "attn_bias_for_masking" else v).contiguous().cpu()
             for k, v in module.state_dict().items()}
    save_file(state, str(path))


@torch.no_grad()
def adherence(var: VAR, vqvae: VQVAE, per_class: int, cfg: float, seed: int) -> float:
    labels = torch.arange(shapes.NUM_CLASSES, device=var.device).repeat_interleave(per_class)
    result = generate(var, vqvae, labels, seed=seed, cfg=cfg, top_k=0, top_p=0.0)
    images = unit_to_image(result.image).cpu().numpy()
    correct = sum(checker.is_correct(img, int(c)) for img, c in zip(images, labels.tolist(), strict=True))
    return correct / len(labels)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--images", type=int, default=24_000)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--vqvae-steps", type=int, default=3000)
    parser.add_argument("--var-steps", type=int, default=4000)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-every", type=int, default=1000)
    parser.add_argument("--cfg", type=float, default=3.0)
    parser.add_argument("--max-seconds", type=float, default=float("inf"),
                        help="stop (and save) when this much time has passed; rerun to resume")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")

    started = time.time()
    pool, labels = shapes.make_pool(args.images, args.size, workers=args.workers)
    images = uint8_to_pixels(pool.to(device)).contiguous()
    labels = labels.to(device)
    print(f"dataset: {len(images)} images in {time.time() - started:.1f}s", flush=True)

    vqvae = VQVAE(replace(VQVAE_CONFIG)).to(device)
    var = VAR(VAR_CONFIG).to(device)
    init_var(var, args.seed)
    opt_vq = torch.optim.AdamW(vqvae.parameters(), lr=2e-4, betas=(0.5, 0.9), weight_decay=0.0)
    opt_var = torch.optim.AdamW(var.parameters(), lr=4e-4, betas=(0.9, 0.95), weight_decay=0.05)
    checkpoint = args.out / "checkpoint.pt"
    step = 0
    if checkpoint.is_file():
        state = torch.load(checkpoint, map_location=device, weights_only=True)
        vqvae.load_state_dict(state["vqvae"])
        var.load_state_dict(state["var"])
        opt_vq.load_state_dict(state["opt_vq"])
        opt_var.load_state_dict(state["opt_var"])
        step = int(state["step"])
        print(f"resumed at step {step}", flush=True)
    gen = torch.Generator(device="cpu").manual_seed(args.seed + step)

    def save_checkpoint() -> None:
        torch.save({"vqvae": vqvae.state_dict(), "var": var.state_dict(), "opt_vq": opt_vq.state_dict(),
                    "opt_var": opt_var.state_dict(), "step": torch.tensor(step)}, checkpoint)

    total = args.vqvae_steps + args.var_steps
    tokens = teacher = None
    while step < total and time.time() - started < args.max_seconds:
        batch = torch.randint(len(images), (args.batch,), generator=gen).to(device)
        if step < args.vqvae_steps:
            for group in opt_vq.param_groups:
                group["lr"] = lr_at(step, args.vqvae_steps, 2e-4, warmup=100)
            with autocast:
                recon, vq_loss = vq_forward(vqvae, images[batch])
                loss = F.mse_loss(recon.float(), images[batch]) + (recon.float() - images[batch]).abs().mean() + vq_loss
            opt_vq.zero_grad(set_to_none=True)
            loss.backward()
            opt_vq.step()
        else:
            if tokens is None:
                tokens, teacher = encode_dataset(vqvae, images)
            k = step - args.vqvae_steps
            for group in opt_var.param_groups:
                group["lr"] = lr_at(k, args.var_steps, 4e-4, warmup=100)
            y = labels[batch].clone()
            drop = torch.rand(len(y), generator=gen).to(device) < CLASS_DROPOUT
            y[drop] = VAR_CONFIG.num_classes
            with autocast:
                logits = var(y, teacher[batch])
            loss = F.cross_entropy(logits.float().reshape(-1, VAR_CONFIG.vocab_size), tokens[batch].reshape(-1))
            opt_var.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(var.parameters(), 2.0)
            opt_var.step()
        step += 1
        if step % 100 == 0 or step == total:
            stage = "vqvae" if step <= args.vqvae_steps else "var"
            print(f"step {step}/{total} {stage} loss {loss.item():.4f} ({time.time() - started:.0f}s)", flush=True)
        if step % 500 == 0 or step == total:
            save_checkpoint()
        if step > args.vqvae_steps and (step % args.eval_every == 0 or step == total):
            var.eval()
            vqvae.eval()
            score = adherence(var, vqvae, per_class=4, cfg=args.cfg, seed=1234)
            print(f"step {step}: colour+shape correct {score:.1%} (cfg {args.cfg})", flush=True)
            var.train()
            vqvae.train()
    save_weights(vqvae, args.out / "vqvae.safetensors", torch.float16)
    save_weights(var, args.out / "var.safetensors", torch.float16)
    print(f"saved {args.out}/vqvae.safetensors and var.safetensors in {time.time() - started:.0f}s", flush=True)


@torch.no_grad()
def encode_dataset(vqvae: VQVAE, images: torch.Tensor, chunk: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids (N, L) and VAR's teacher-forcing inputs (N, L - 1, C) of every image."""
    vqvae.eval()
    ids, inputs = [], []
    for start in range(0, len(images), chunk):
        f = vqvae.image_to_latent(images[start:start + chunk]).float()
        maps = vqvae.quantize.latent_to_tokens(f, PATCH_NUMS)
        ids.append(torch.cat(maps.indices, dim=1))
        inputs.append(vqvae.quantize.teacher_forcing_input(maps.indices, PATCH_NUMS))
    vqvae.train()
    return torch.cat(ids), torch.cat(inputs)


if __name__ == "__main__":
    main()
