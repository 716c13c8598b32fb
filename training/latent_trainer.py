"""What the two latent-diffusion shapes trainers (SD, SANA) share: the recipe's settings, the
models on the device, one CPU generator for every data and noise draw, EMA copies, the two
optimisers, the rendered pool, stage a (the autoencoder alone) and the run of both stages.

A subclass builds its models, says how its autoencoder's loss is made (`vae_loss`) and trains
stage b, the denoiser together with the text encoder (`train_denoiser`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..executor.pixels import uint8_to_pixels
from ..nodes.shapes.dataset import TRAIN_SEED_BASE, class_names, make_pool
from .checker import check
from .common import EMA, ResumableTrainer, StopTraining, lr_at, param_count

EVAL_STEPS = 20


@dataclass
class LatentTrainConfig:
    """The settings both recipes have; a family's config adds its own and its defaults."""

    out: str = ""
    ckpt_dir: str = ""  # default: "<out>.ckpt" beside the export, so it is never shipped with it
    device: str = "cpu"
    seed: int = 0
    vae_steps: int = 2000
    steps: int = 4000
    batch: int = 0  # 0: 512 on cuda, 64 on cpu
    vae_lr: float = 1e-3
    lr: float = 1e-3
    warmup: int = 200
    cfg_drop: float = 0.1
    ema_decay: float = 0.999
    pool: int = 50000  # distinct training images, rendered once (cheaper than PIL every step)
    workers: int = 0
    log_every: int = 50
    ckpt_every: int = 500
    eval_every: int = 1000
    eval_samples: int = 48
    eval_steps: int = EVAL_STEPS
    stop_after: int = 0  # >0: leave a checkpoint and stop after this many steps in this process

    def __post_init__(self) -> None:
        if self.batch <= 0:
            self.batch = 512 if self.device == "cuda" else 64

    @property
    def ckpt_path(self) -> Path:
        return Path(self.ckpt_dir or f"{self.out.rstrip('/')}.ckpt") / "state.pt"


def score(images: Any, ids: list[int]) -> dict[str, float]:
    """The checker's accuracy on generated images of classes ``ids``: colour, shape, both."""
    colour = shape = both = 0
    for img, cid in zip(images, ids, strict=True):
        want_shape, want_colour = class_names(cid)
        got = check(img)
        colour += got.colour == want_colour
        shape += got.shape == want_shape
        both += got == (want_colour, want_shape)
    n = len(ids)
    return {"colour": colour / n, "shape": shape / n, "both": both / n}


# --help texts of the shared settings; a family adds its own.
COMMON_HELP = {"ckpt_dir": "checkpoints (default <out>.ckpt)", "batch": "0: 512 on cuda, 64 on cpu",
               "pool": "distinct training images", "workers": "processes rendering the pool",
               "stop_after": "stop (resumably) after N steps"}


class LatentTrainer(ResumableTrainer):
    """Stage "vae" trains the autoencoder; stage ``final_stage`` the denoiser and text encoder."""

    denoiser_key: str  # checkpoint names of the denoiser and of its EMA copy
    ema_key: str
    vae_loss_name: str  # what the stage-a log reports as the loss

    def __init__(self, cfg: Any, make_tokenizer: Callable[[], Any],
                 build_models: Callable[[Any, Any], tuple[torch.nn.Module, ...]]) -> None:
        self.cfg, self.mcfg = cfg, cfg.model
        self.device = torch.device(cfg.device)
        torch.manual_seed(cfg.seed)  # model initialisation
        self.tokenizer = make_tokenizer()
        self.vae, self.text_encoder, self.denoiser = build_models(self.mcfg, self.tokenizer)
        for m in (self.vae, self.text_encoder, self.denoiser):
            m.to(self.device)
        # All data/noise randomness comes from this CPU generator: checkpointable, device-agnostic.
        self.gen = torch.Generator("cpu").manual_seed(cfg.seed)
        self.stage, self.step = "vae", 0
        self.steps_left = cfg.stop_after or math.inf
        self.ema_text = EMA(self.text_encoder)
        self.ema_denoiser = EMA(self.denoiser)
        self.vae_opt = torch.optim.AdamW(self.vae.parameters(), lr=cfg.vae_lr, weight_decay=0.0)
        self.opt = torch.optim.AdamW(
            list(self.denoiser.parameters()) + list(self.text_encoder.parameters()),
            lr=cfg.lr,
            weight_decay=0.01,
        )
        self.scaling_factor = 1.0

    def load_pool(self) -> None:
        """Render (or read back) the training images and their class ids, on the device."""
        pool, pool_ids = make_pool(self.cfg.pool, self.mcfg.size, TRAIN_SEED_BASE, self.cfg.workers)
        self.pool, self.pool_ids = pool.to(self.device), pool_ids.to(self.device)

    # -- checkpoints

    def saved_modules(self) -> dict[str, torch.nn.Module]:
        return {"vae": self.vae, "text_encoder": self.text_encoder, self.denoiser_key: self.denoiser,
                "ema_text": self.ema_text.module, self.ema_key: self.ema_denoiser.module}

    def saved_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"vae_opt": self.vae_opt, "opt": self.opt}

    # -- stage a: the autoencoder

    def images(self, idx: torch.Tensor) -> torch.Tensor:
        """Pool items as float images in -1..1 (both autoencoders' convention)."""
        return uint8_to_pixels(self.pool[idx.to(self.device)])

    def vae_loss(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """(loss to minimise, the value the log averages, last-step figures for the log) of a
        batch of images; the autoencoder runs under ``autocast``; may draw from ``self.gen``."""
        raise NotImplementedError

    def train_vae(self) -> None:
        cfg = self.cfg
        self.vae.train()
        t0, tracked = time.perf_counter(), []
        # Draw nothing from self.gen past the last step: a resumed run must see the same stream.
        while self.step < cfg.vae_steps:
            idx = torch.randint(len(self.pool), (cfg.batch,), generator=self.gen)
            for g in self.vae_opt.param_groups:
                g["lr"] = lr_at(self.step, cfg.vae_steps, cfg.vae_lr, cfg.warmup)
            loss, value, figures = self.vae_loss(self.images(idx))
            self.vae_opt.zero_grad(set_to_none=True)
            loss.backward()
            self.vae_opt.step()
            tracked.append(value.detach())  # no .item() per step: it would sync the GPU
            if (self.step + 1) % cfg.log_every == 0 or self.step + 1 == cfg.vae_steps:
                rate = len(tracked) / (time.perf_counter() - t0)
                details = "".join(f"  {name} {v.item():.4f}" for name, v in figures.items())
                print(f"vae  step {self.step + 1:6d}  {self.vae_loss_name} "
                      f"{torch.stack(tracked).mean().item():.4f}{details}  {rate:.1f} it/s", flush=True)
                t0, tracked = time.perf_counter(), []
            self.count_step()

    # -- stage b: the denoiser and the text encoder

    def encode_pool(self) -> Any:
        """The autoencoder's latents of every pool image (stage b never runs the encoder)."""
        raise NotImplementedError

    def latent_scale(self, latents: Any) -> float:
        """The scaling factor that gives the training latents unit variance."""
        raise NotImplementedError

    def vae_report(self, latents: Any) -> None:
        """Printed once, when stage a ends: how well the autoencoder reconstructs."""
        raise NotImplementedError

    def denoiser_loss(self, idx: torch.Tensor, latents: Any) -> torch.Tensor:
        """The stage-b loss on pool items ``idx``; draws its noise from ``self.gen``."""
        raise NotImplementedError

    def eval_and_log(self, step: int) -> dict[str, float]:
        raise NotImplementedError

    def train_denoiser(self) -> None:
        cfg = self.cfg
        latents = self.encode_pool()
        if self.stage == "vae":  # first entry: fix the latent scale once, then it is checkpointed
            self.scaling_factor = self.latent_scale(latents)
            self.vae.register_to_config(scaling_factor=self.scaling_factor)
            self.stage, self.step = self.final_stage, 0
            self.vae_report(latents)
            self.checkpoint()
        self.vae.register_to_config(scaling_factor=self.scaling_factor)
        params = list(self.denoiser.parameters()) + list(self.text_encoder.parameters())
        self.denoiser.train()
        self.text_encoder.train()
        t0, losses = time.perf_counter(), []
        while self.step < cfg.steps:
            idx = torch.randint(len(self.pool), (cfg.batch,), generator=self.gen)
            for g in self.opt.param_groups:
                g["lr"] = lr_at(self.step, cfg.steps, cfg.lr, cfg.warmup)
            loss = self.denoiser_loss(idx, latents)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            self.opt.step()
            self.ema_denoiser.update(self.denoiser, self.step, cfg.ema_decay)
            self.ema_text.update(self.text_encoder, self.step, cfg.ema_decay)
            losses.append(loss.detach())
            done = self.step + 1
            if done % cfg.log_every == 0 or done == cfg.steps:
                rate = len(losses) / (time.perf_counter() - t0)
                print(f"{self.final_stage:<4} step {done:6d}  loss {torch.stack(losses).mean().item():.4f}  "
                      f"{rate:.1f} it/s", flush=True)
                t0, losses = time.perf_counter(), []
            if done % cfg.eval_every == 0 or done == cfg.steps:
                self.eval_and_log(done)
            self.count_step()

    # -- the run

    def run(self) -> Path | None:
        """Train both stages and export; None if --stop-after stopped it early."""
        parts = {"vae": self.vae, "text": self.text_encoder, self.final_stage: self.denoiser}
        sizes = "  ".join(f"{name} {param_count(m) / 1e6:.2f}M" for name, m in parts.items())
        print(f"params: {sizes}  (fp32 total {param_count(*parts.values()) * 4 / 2**20:.1f} MiB)", flush=True)
        try:
            if self.stage == "vae":
                self.train_vae()
            self.vae.eval().requires_grad_(False)
            self.train_denoiser()
        except StopTraining:
            print(f"stopped after {self.cfg.stop_after} steps at stage {self.stage} step {self.step}; "
                  "rerun to resume", flush=True)
            return None
        self.checkpoint()
        self.export()
        print(f"saved {self.cfg.out}", flush=True)
        return Path(self.cfg.out)
