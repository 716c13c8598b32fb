"""Train latentgraph's tiny ADM pair on the shapes dataset: an unconditional pixel-space U-Net
with learned variances and a noisy classifier of the 24 classes (6 x shape + colour), so that
classifier guidance (Dhariwal & Nichol 2021) turns unconditional samples into a requested class.

Both are instances of ``latentgraph.nodes.adm.model`` saved in guided-diffusion's key layout,
so the shipped graph loads them through LG_LoadADM / LG_LoadADMClassifier as it would load a
released checkpoint.

- U-Net: the hybrid objective of Nichol & Dhariwal 2021 (sec. 3.1): L_simple on eps plus the
  variational term of the sampled timestep with the mean held fixed (stop-gradient), which
  teaches the variance channels v; at t = 0 that term is the discretised Gaussian decoder NLL.
- Classifier: cross-entropy on x_t at uniformly drawn timesteps (guided-diffusion's
  classifier_train.py), so its gradient is meaningful along the whole sampling path.

    python -m latentgraph.training.train_adm --out models/shapes_adm
    python -m latentgraph.training.train_adm --out runs/adm_smoke --unet-steps 2 --classifier-steps 2 --eval-images 0

The defaults are the shipped models' recipe: 12,000 U-Net steps and 4,000 classifier steps of
64 images, about an hour on one CPU core (a U-Net step of 64 images takes about 0.25 s there).
Resumes from ``<out>.ckpt/checkpoint.pt`` (beside the export, so it is never shipped with it;
tensors only, read with ``weights_only=True``); stops and saves after ``--max-seconds``.
Deterministic for a given seed and device.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from ..executor.pixels import uint8_to_pixels, unit_to_image
from ..nodes.adm import diffusion
from ..nodes.adm.loaders import adm_schedule
from ..nodes.adm.model import ADMConfig, EncoderUNetModel, UNetModel
from ..nodes.diffusion.math import randn_like_diffusers
from ..nodes.shapes import dataset as shapes
from . import checker
from .common import EMA, autocast, lr_at

SIZE = 16
NOISE_SCHEDULE = "cosine"  # better than linear for small images (Nichol & Dhariwal 2021, sec. 3.2)
HEAD_CHANNELS = 32
UNET_CONFIG = ADMConfig(in_channels=3, model_channels=32, out_channels=6, num_res_blocks=1, channel_mult=(1, 1, 2),
                        attention_ds=frozenset({4}), num_head_channels=HEAD_CHANNELS)
CLASSIFIER_CONFIG = ADMConfig(in_channels=3, model_channels=32, out_channels=shapes.NUM_CLASSES, num_res_blocks=1,
                              channel_mult=(1, 1, 2), attention_ds=frozenset({4}), num_head_channels=HEAD_CHANNELS,
                              pool="attention", image_size=SIZE)
GUIDE_SCALE = 100.0  # the scale the shipped graph and the adherence figure use (92.5 % of 200)
EVAL_RESPACING = "50"


class Tables:
    """The training schedule's per-timestep coefficients, float64 computed, float32 on the device."""

    def __init__(self, device: torch.device) -> None:
        betas = diffusion.adm_betas(adm_schedule(NOISE_SCHEDULE, 1000))
        ab = np.cumprod(1 - betas)
        ab_prev = np.append(1.0, ab[:-1])
        post_var = betas * (1 - ab_prev) / (1 - ab)

        def t(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(a).float().to(device)

        self.sqrt_ab, self.sqrt_1m_ab = t(np.sqrt(ab)), t(np.sqrt(1 - ab))
        self.recip, self.recipm1 = t(np.sqrt(1 / ab)), t(np.sqrt(1 / ab - 1))
        self.coef1 = t(betas * np.sqrt(ab_prev) / (1 - ab))
        self.coef2 = t((1 - ab_prev) * np.sqrt(1 - betas) / (1 - ab))
        self.min_log = t(np.log(np.append(post_var[1], post_var[1:])))
        self.max_log = t(np.log(betas))
        self.steps = len(betas)


def _at(table: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return table[t][:, None, None, None]


def normal_kl(mean1: torch.Tensor, logvar1: torch.Tensor, mean2: torch.Tensor, logvar2: torch.Tensor) -> torch.Tensor:
    """KL(N(mean1, e^logvar1) || N(mean2, e^logvar2)), elementwise, in nats."""
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def discretized_gaussian_nll(x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """-log of the probability a Gaussian gives the 8-bit bin of x in [-1, 1] (DDPM's decoder,
    Ho et al. 2020 eq. 13), with the tanh approximation of the normal CDF; the end bins take
    the tails."""
    def cdf(v: torch.Tensor) -> torch.Tensor:
        return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (v + 0.044715 * v**3)))

    centred, inv_std = x - mean, torch.exp(-log_scale)
    cdf_plus, cdf_min = cdf(inv_std * (centred + 1 / 255)), cdf(inv_std * (centred - 1 / 255))
    log_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_min = torch.log((1 - cdf_min).clamp(min=1e-12))
    log_delta = torch.log((cdf_plus - cdf_min).clamp(min=1e-12))
    return -torch.where(x < -0.999, log_plus, torch.where(x > 0.999, log_one_minus_min, log_delta))


def unet_loss(unet: UNetModel, tab: Tables, x0: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """L_simple + L_vlb of one timestep per image (Nichol & Dhariwal 2021's hybrid loss; the
    variational term in bits per dimension, as guided-diffusion weighs it)."""
    b = x0.shape[0]
    t = torch.randint(0, tab.steps, (b,), generator=gen).to(x0.device)
    eps = torch.randn(x0.shape, generator=gen).to(x0.device)
    x_t = _at(tab.sqrt_ab, t) * x0 + _at(tab.sqrt_1m_ab, t) * eps
    with autocast(x0.device):
        out = unet(x_t, t)
    eps_pred, v = out.float().split(3, dim=1)
    mse = F.mse_loss(eps_pred, eps)
    # The mean is held fixed: the variational term trains the variance only.
    x0_pred = _at(tab.recip, t) * x_t - _at(tab.recipm1, t) * eps_pred.detach()
    mean_model = _at(tab.coef1, t) * x0_pred + _at(tab.coef2, t) * x_t
    mean_true = _at(tab.coef1, t) * x0 + _at(tab.coef2, t) * x_t
    frac = (v + 1) / 2
    log_var = frac * _at(tab.max_log, t) + (1 - frac) * _at(tab.min_log, t)
    kl = normal_kl(mean_true, _at(tab.min_log, t), mean_model, log_var).mean(dim=(1, 2, 3))
    nll = discretized_gaussian_nll(x0, mean_model, 0.5 * log_var).mean(dim=(1, 2, 3))
    vlb = torch.where(t == 0, nll, kl) / math.log(2.0)
    return mse + vlb.mean()


def classifier_loss(classifier: EncoderUNetModel, tab: Tables, x0: torch.Tensor, labels: torch.Tensor,
                    gen: torch.Generator) -> torch.Tensor:
    t = torch.randint(0, tab.steps, (x0.shape[0],), generator=gen).to(x0.device)
    eps = torch.randn(x0.shape, generator=gen).to(x0.device)
    x_t = _at(tab.sqrt_ab, t) * x0 + _at(tab.sqrt_1m_ab, t) * eps
    with autocast(x0.device):
        logits = classifier(x_t, t)
    return F.cross_entropy(logits.float(), labels)


def sample(unet: UNetModel, classifier: EncoderUNetModel, labels: torch.Tensor, scale: float,
           seed: int, respacing: str = EVAL_RESPACING) -> torch.Tensor:
    """Guided DDPM samples (B, 3, SIZE, SIZE) in [-1, 1], the steps LG_ADMSampler runs."""
    plan = diffusion.respaced_plan(adm_schedule(NOISE_SCHEDULE, 1000), respacing)
    device = next(unet.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    shape = (len(labels), 3, SIZE, SIZE)
    x = randn_like_diffusers(shape, gen, device=device)
    for i in range(plan.num_steps):
        t = plan.timestep_on(i, device)
        with torch.no_grad():
            out = unet(x, t.expand(len(labels)))
        grad = diffusion.classifier_gradient(classifier, x, t, labels, scale) if scale > 0 else None
        noise = randn_like_diffusers(shape, gen, device=device) if i < plan.num_steps - 1 else None
        x, _ = diffusion.ddpm_step(x, out, plan, i, noise, grad)
    return x


def adherence(unet: UNetModel, classifier: EncoderUNetModel, count: int, scale: float, seed: int) -> float:
    """Share of `count` guided samples (classes in turn) the checker reads as their class."""
    labels = torch.arange(count, device=next(unet.parameters()).device) % shapes.NUM_CLASSES
    images = unit_to_image((sample(unet, classifier, labels, scale, seed) + 1) / 2).cpu().numpy()
    return sum(checker.is_correct(img, int(c)) for img, c in zip(images, labels.tolist(), strict=True)) / count


def save_weights(module: torch.nn.Module, path: Path) -> None:
    save_file({k: v.half().contiguous().cpu() for k, v in module.state_dict().items()}, str(path))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--ckpt-dir", type=Path, default=None, help="checkpoints (default <out>.ckpt)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--images", type=int, default=24_000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--unet-steps", type=int, default=12_000)
    parser.add_argument("--classifier-steps", type=int, default=4_000)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--ema", type=float, default=0.999)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=0, help="processes drawing the dataset")
    parser.add_argument("--eval-every", type=int, default=2_000)
    parser.add_argument("--eval-images", type=int, default=48, help="guided samples per evaluation (0: none)")
    parser.add_argument("--scale", type=float, default=GUIDE_SCALE)
    parser.add_argument("--max-seconds", type=float, default=float("inf"),
                        help="stop (and save) when this much time has passed; rerun to resume")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    started = time.time()

    pool, labels = shapes.make_pool(args.images, SIZE, workers=args.workers)
    images, labels = uint8_to_pixels(pool).contiguous().to(device), labels.to(device)
    tab = Tables(device)
    unet, classifier = UNetModel(UNET_CONFIG).to(device), EncoderUNetModel(CLASSIFIER_CONFIG).to(device)
    ema = EMA(unet)
    opt_unet = torch.optim.AdamW(unet.parameters(), lr=args.lr, weight_decay=0.0)
    opt_clf = torch.optim.AdamW(classifier.parameters(), lr=args.lr, weight_decay=0.05)
    ckpt_dir = args.ckpt_dir or args.out.with_name(args.out.name + ".ckpt")
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = ckpt_dir / "checkpoint.pt"
    unet_step = clf_step = 0
    if checkpoint.is_file():
        state = torch.load(checkpoint, map_location=device, weights_only=True)
        for name, module in (("unet", unet), ("ema", ema.module), ("classifier", classifier),
                             ("opt_unet", opt_unet), ("opt_clf", opt_clf)):
            module.load_state_dict(state[name])
        unet_step, clf_step = int(state["unet_step"]), int(state["clf_step"])
        print(f"resumed at U-Net step {unet_step}, classifier step {clf_step}", flush=True)
    gen = torch.Generator().manual_seed(args.seed + 7919 * (unet_step + clf_step))

    def save_checkpoint() -> None:
        torch.save({"unet": unet.state_dict(), "ema": ema.module.state_dict(), "classifier": classifier.state_dict(),
                    "opt_unet": opt_unet.state_dict(), "opt_clf": opt_clf.state_dict(),
                    "unet_step": torch.tensor(unet_step), "clf_step": torch.tensor(clf_step)}, checkpoint)

    def export() -> None:
        save_weights(ema.module, args.out / "unet.safetensors")
        save_weights(classifier, args.out / "classifier.safetensors")

    def evaluate() -> None:
        classifier.eval()
        guided = adherence(ema.module, classifier, args.eval_images, args.scale, seed=1234)
        unguided = adherence(ema.module, classifier, args.eval_images, 0.0, seed=1234)
        classifier.train()
        print(f"U-Net step {unet_step}: checker correct {guided:.1%} at scale {args.scale}, "
              f"{unguided:.1%} unguided", flush=True)

    while (unet_step < args.unet_steps or clf_step < args.classifier_steps) \
            and time.time() - started < args.max_seconds:
        batch = torch.randint(len(images), (args.batch,), generator=gen).to(device)
        # The classifier's steps are spread over the U-Net's, so a stopped run has both.
        if clf_step * args.unet_steps <= unet_step * args.classifier_steps or unet_step >= args.unet_steps:
            for group in opt_clf.param_groups:
                group["lr"] = lr_at(clf_step, args.classifier_steps, args.lr, warmup=100)
            loss = classifier_loss(classifier, tab, images[batch], labels[batch], gen)
            opt_clf.zero_grad(set_to_none=True)
            loss.backward()
            opt_clf.step()
            clf_step += 1
            if clf_step % 100 == 0:
                print(f"classifier step {clf_step} loss {loss.item():.4f} ({time.time() - started:.0f}s)", flush=True)
            continue
        for group in opt_unet.param_groups:
            group["lr"] = lr_at(unet_step, args.unet_steps, args.lr, warmup=200)
        loss = unet_loss(unet, tab, images[batch], gen)
        opt_unet.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt_unet.step()
        ema.update(unet, unet_step, args.ema)
        unet_step += 1
        if unet_step % 100 == 0:
            print(f"U-Net step {unet_step} loss {loss.item():.4f} ({time.time() - started:.0f}s)", flush=True)
        if unet_step % 500 == 0:
            save_checkpoint()
            export()
        if args.eval_images and unet_step % args.eval_every == 0:
            evaluate()
    save_checkpoint()
    export()
    if args.eval_images:
        evaluate()
    print(f"saved {args.out}/unet.safetensors and classifier.safetensors in {time.time() - started:.0f}s", flush=True)


if __name__ == "__main__":
    main()
