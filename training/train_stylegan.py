"""Train latentgraph's tiny class-conditional StyleGAN2 on the shapes dataset (24 classes).

The generator is the real architecture of ``latentgraph.nodes.stylegan.model`` (mapping with
class embedding and w_avg, modulated convolutions, skip toRGBs, noise), saved in the NVlabs key
layout with its config in the safetensors metadata, so LG_LoadStyleGAN reads it as it reads a
released one. The recipe is StyleGAN2's (Karras et al. 2020) in its small-dataset form (as
stylegan2-ada-pytorch's cifar configuration): non-saturating logistic loss, lazy R1 on the reals
every ``r1_every`` steps (section 3.1: the regulariser's weight and Adam's lr/betas corrected for
the interval), Adam betas (0, 0.99), lr 0.0025 with equalised learning rates, a 2-layer mapping
at lr multiplier 0.01, an EMA of the generator (half-life ``ema_kimg`` thousand images, ramped
up over the first images), no path-length regulariser or style mixing. The discriminator (kept
only in the checkpoint) is a small equalised-lr convnet with a minibatch-stddev layer and a
class projection (Miyato & Koyama 2018: ``D(x, y) = psi(phi(x)) + <embed(y), phi(x)>``).

    nice -n 10 python -m latentgraph.training.train_stylegan --out models/shapes_stylegan --threads 1
    python -m latentgraph.training.train_stylegan --out /tmp/sg --steps 4 --pool 96   # smoke

Deterministic for a given seed; resumes from ``OUT.ckpt/checkpoint.pt`` (tensors only, read
with ``weights_only=True``) when restarted; ``--max-seconds`` stops (and saves) early. The shipped
model is these defaults with one thread: 8,000 steps of 16 images (128k images seen), 59
minutes on 2 CPU cores shared with other work (run in two parts, 4,000 steps and a resumed
4,000); colour is learnt first (by step 3,000), the shapes by step 6,000.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F  # noqa: N812
from safetensors.torch import save_file
from torch import nn

from ..executor.pixels import pixels_to_image, uint8_to_pixels
from ..nodes.shapes import dataset as shapes
from ..nodes.stylegan.loading import CONFIG_METADATA_KEY
from ..nodes.stylegan.model import Generator, StyleGANConfig, truncate
from . import checker

CONFIG = StyleGANConfig(z_dim=64, c_dim=shapes.NUM_CLASSES, w_dim=64, img_resolution=32,
                        img_channels=3, channels={4: 128, 8: 64, 16: 32, 32: 16},
                        mapping_layers=2, embed_features=64, layer_features=64)
W_AVG_BETA = 0.995  # the moving average of w that truncation pulls towards
EVAL_PSI = 0.7


class EqualConv(nn.Module):
    """A convolution with weights N(0, 1) scaled by 1/sqrt(fan_in) at run time (equalised lr)."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, act: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(cout))
        self.gain, self.act, self.pad = 1 / math.sqrt(cin * kernel * kernel), act, kernel // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(x, self.weight * self.gain, self.bias, padding=self.pad)
        return F.leaky_relu(x, 0.2) * math.sqrt(2) if self.act else x


class EqualLinear(nn.Module):
    def __init__(self, cin: int, cout: int, act: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin))
        self.bias = nn.Parameter(torch.zeros(cout))
        self.gain, self.act = 1 / math.sqrt(cin), act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.linear(x, self.weight * self.gain, self.bias)
        return F.leaky_relu(x, 0.2) * math.sqrt(2) if self.act else x


class Discriminator(nn.Module):
    """32 px -> 4 x 4 by conv + 2x average pooling, minibatch stddev, then a class projection."""

    def __init__(self, num_classes: int, channels: tuple[int, ...] = (16, 32, 64, 128)) -> None:
        super().__init__()
        self.from_rgb = EqualConv(3, channels[0], kernel=1)
        self.blocks = nn.ModuleList(
            nn.Sequential(EqualConv(cin, cin), EqualConv(cin, cout))
            for cin, cout in zip(channels[:-1], channels[1:], strict=True)
        )
        top = channels[-1]
        self.conv = EqualConv(top + 1, top)
        self.fc = EqualLinear(top * 16, top)
        self.out = EqualLinear(top, 1, act=False)
        self.embed = EqualLinear(num_classes, top, act=False)

    def forward(self, img: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        x = self.from_rgb(img)
        for block in self.blocks:
            x = F.avg_pool2d(block(x), 2)
        group = min(4, x.shape[0])
        std = x.reshape(group, -1, *x.shape[1:]).std(dim=0, unbiased=False).add(1e-8)
        std = std.mean(dim=[1, 2, 3]).reshape(-1, 1, 1, 1).repeat(group, 1, *x.shape[2:])
        h = self.fc(self.conv(torch.cat([x, std], dim=1)).flatten(1))
        projection = (self.embed(c) * h).sum(dim=1, keepdim=True) / math.sqrt(h.shape[1])
        return self.out(h) + projection


def one_hot(labels: torch.Tensor) -> torch.Tensor:
    return F.one_hot(labels, shapes.NUM_CLASSES).float()


def generate(G: Generator, z: torch.Tensor, labels: torch.Tensor, psi: float = 1.0,  # noqa: N803
             gen: torch.Generator | None = None, track_w_avg: bool = False) -> torch.Tensor:
    """Images of G; in training with random noise from ``gen``, else the stored noise maps."""
    ws = G.mapping(z, one_hot(labels))
    if track_w_avg:
        G.mapping.update_w_avg(ws[:, 0], W_AVG_BETA)
    if psi != 1:
        ws = truncate(ws, G.mapping.w_avg, psi, None)
    return G.synthesis(ws, noise_mode="random" if G.training else "const", generator=gen)


@torch.no_grad()
def adherence(G: Generator, per_class: int, psi: float, seed: int) -> float:  # noqa: N803
    """Checker accuracy (colour and shape right) over ``per_class`` images of every class."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(shapes.NUM_CLASSES).repeat_interleave(per_class)
    correct = 0
    for chunk in labels.split(96):
        z = torch.randn(len(chunk), G.z_dim, generator=gen)
        images = pixels_to_image(generate(G, z, chunk, psi)).numpy()
        correct += sum(checker.is_correct(img, int(c)) for img, c in zip(images, chunk, strict=True))
    return correct / len(labels)


def save_generator(G: Generator, path: Path) -> None:  # noqa: N803
    """fp16 storage, NVlabs key names, the config as safetensors metadata."""
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in G.state_dict().items()}
    save_file(state, str(path), metadata={CONFIG_METADATA_KEY: json.dumps(G.config.to_json())})


def main(argv: list[str] | None = None) -> Path | None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=8000)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--pool", type=int, default=12_000, help="training images, rendered once")
    parser.add_argument("--lr", type=float, default=0.0025)
    parser.add_argument("--gamma", type=float, default=1.0, help="R1 weight")
    parser.add_argument("--r1-every", type=int, default=16)
    parser.add_argument("--map-lr-mul", type=float, default=CONFIG.lr_multiplier,
                        help="the mapping's learning-rate multiplier (StyleGAN2: 0.01)")
    parser.add_argument("--ema-kimg", type=float, default=10.0)
    parser.add_argument("--ema-rampup", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--eval-every", type=int, default=1000)
    parser.add_argument("--eval-per-class", type=int, default=4, help="0: no evaluation")
    parser.add_argument("--ckpt-every", type=int, default=250)
    parser.add_argument("--max-seconds", type=float, default=float("inf"),
                        help="stop (and save) when this much time has passed; rerun to resume")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    torch.manual_seed(args.seed)
    pool, labels = shapes.make_pool(args.pool)
    reals = uint8_to_pixels(pool).contiguous()
    print(f"dataset: {len(reals)} images in {time.time() - started:.1f}s", flush=True)

    config = replace(CONFIG, lr_multiplier=args.map_lr_mul)
    G = Generator(config).train()  # noqa: N806 - the paper's names
    D = Discriminator(shapes.NUM_CLASSES).train()  # noqa: N806
    G_ema = Generator(config).eval().requires_grad_(False)  # noqa: N806
    G_ema.load_state_dict(G.state_dict())
    # Lazy regularisation (StyleGAN2 appendix B): D's R1 phase runs every r1_every steps, so
    # its Adam is tuned for the combined (main + regulariser) update rate.
    ratio = args.r1_every / (args.r1_every + 1)
    opt_g = torch.optim.Adam(G.parameters(), lr=args.lr, betas=(0.0, 0.99), eps=1e-8)
    opt_d = torch.optim.Adam(D.parameters(), lr=args.lr * ratio, betas=(0.0, 0.99**ratio), eps=1e-8)
    checkpoint = Path(f"{args.out}.ckpt") / "checkpoint.pt"  # beside the export, never in it
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    step = 0
    gen = torch.Generator().manual_seed(args.seed)
    if checkpoint.is_file():
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        if state["config"] != json.dumps(config.to_json()):
            raise SystemExit(f"{checkpoint} was trained with another generator config")
        for name, part in (("G", G), ("D", D), ("G_ema", G_ema), ("opt_g", opt_g), ("opt_d", opt_d)):
            part.load_state_dict(state[name])
        step = int(state["step"])
        gen.set_state(state["gen"])
        print(f"resumed at step {step}", flush=True)

    def save_checkpoint() -> None:
        tmp = checkpoint.with_suffix(".tmp")
        torch.save({"G": G.state_dict(), "D": D.state_dict(), "G_ema": G_ema.state_dict(),
                    "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(), "step": step,
                    "gen": gen.get_state(), "config": json.dumps(config.to_json())}, tmp)
        tmp.replace(checkpoint)  # atomic: a kill mid-save keeps the previous checkpoint
        save_generator(G_ema, args.out / "generator.safetensors")

    def fakes(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(shapes.NUM_CLASSES, (n,), generator=gen)
        z = torch.randn(n, config.z_dim, generator=gen)
        return generate(G, z, y, gen=gen, track_w_avg=True), y

    batch = args.batch
    while step < args.steps and time.time() - started < args.max_seconds:
        # G: non-saturating logistic loss, softplus(-D(G(z))).
        G.requires_grad_(True)
        D.requires_grad_(False)
        img, y = fakes(batch)
        loss_g = F.softplus(-D(img, one_hot(y))).mean()
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        # D: softplus(D(fake)) + softplus(-D(real)).
        G.requires_grad_(False)
        D.requires_grad_(True)
        with torch.no_grad():
            img, y = fakes(batch)
        index = torch.randint(len(reals), (batch,), generator=gen)
        real, real_c = reals[index], one_hot(labels[index])
        loss_d = F.softplus(D(img, one_hot(y))).mean() + F.softplus(-D(real, real_c)).mean()
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        if step % args.r1_every == 0:  # R1: gamma/2 E|grad_x D(x)|^2 on reals, times the interval
            real = real.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(D(real, real_c).sum(), real, create_graph=True)
            r1 = grad.square().sum(dim=[1, 2, 3]).mean()
            opt_d.zero_grad(set_to_none=True)
            (r1 * (args.gamma / 2) * args.r1_every).backward()
            opt_d.step()
        # G_ema: half-life ema_kimg thousand images, shorter while few images were seen.
        ema_images = min(args.ema_kimg * 1000, (step + 1) * batch * args.ema_rampup)
        beta = 0.5 ** (batch / max(ema_images, 1e-8))
        with torch.no_grad():
            for p_ema, p in zip(G_ema.parameters(), G.parameters(), strict=True):
                p_ema.copy_(p.lerp(p_ema, beta))
            for b_ema, b in zip(G_ema.buffers(), G.buffers(), strict=True):
                b_ema.copy_(b)
        step += 1
        if step % 50 == 0 or step == args.steps:
            print(f"step {step}/{args.steps} loss G {loss_g.item():.3f} D {loss_d.item():.3f} "
                  f"({time.time() - started:.0f}s)", flush=True)
        if step % args.ckpt_every == 0 or step == args.steps:
            save_checkpoint()
        if args.eval_per_class and (step % args.eval_every == 0 or step == args.steps):
            score = adherence(G_ema, args.eval_per_class, EVAL_PSI, seed=1234)
            print(f"step {step}: checker correct {score:.1%} at psi {EVAL_PSI}", flush=True)
    save_checkpoint()
    done = step >= args.steps
    print(f"{'finished' if done else 'stopped'} at step {step}; wrote {args.out}/generator.safetensors "
          f"in {time.time() - started:.0f}s", flush=True)
    return args.out if done else None


if __name__ == "__main__":
    main()
