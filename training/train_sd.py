"""Train latentgraph's tiny Stable-Diffusion-family model on the synthetic shapes dataset.

The result is an ordinary diffusers StableDiffusionPipeline folder (model_index.json, tokenizer/,
text_encoder/, vae/, unet/, scheduler/; safetensors) built from the real architectures
(CLIPTextModel, AutoencoderKL, UNet2DConditionModel, DDIMScheduler), only very small, so the
same loaders and nodes that run full-size SD checkpoints run it.

Stages:
  a) VAE: L1 reconstruction + a small KL term on a fixed pool of rendered images.
  b) UNet + text encoder (trained jointly, so the caption words get embeddings made for this
     task instead of random ones) on the VAE's latents of that pool, v-prediction on a zero-terminal-SNR
     schedule (the last step is pure noise, so the prompt alone must decide colour and
     layout), 10 % empty captions for classifier-free guidance, EMA weights are exported.

Everything random comes from seeded generators whose state is checkpointed, so a killed run
restarted with the same command resumes where it stopped (on CPU, bit-for-bit).

CPU smoke:  python -m latentgraph.training.train_sd --out /tmp/shapes_sd --vae-steps 3 --steps 3 \
                --batch 8 --pool 256 --eval-samples 4
GPU full:   python -m latentgraph.training.train_sd --out models/shapes_sd --device cuda --workers 8
            (= --vae-steps 2000 --steps 4000 --batch 512 --pool 50000: about 5 minutes on one H200)
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    DDPMScheduler,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from .checker import check
from .common import (
    EMA,
    ResumableTrainer,
    StopTraining,
    autocast,
    lr_at,
    param_count,
    parse_config,
    save_grid,
    train,
)
from .shapes import CAPTIONS, EVAL_SEED_BASE, NUM_CLASSES, TRAIN_SEED_BASE, class_names, make_pool
from .tokenizer import DEFAULT_MAX_LENGTH, build_tokenizer

EVAL_GUIDANCE = 4.0
EVAL_STEPS = 20


@dataclass(frozen=True)
class ModelConfig:
    """Architecture and schedule. Stored in the checkpoint; a resume must use the same one."""

    size: int = 32
    # 3 VAE levels = 2 downsamplings: 32x32x3 images <-> 8x8x4 latents (f=4, like LDM's f4).
    vae_channels: tuple[int, ...] = (32, 32, 64)
    latent_channels: int = 4
    # Two cross-attention levels (8x8 and 4x4): every level sees the prompt.
    unet_channels: tuple[int, ...] = (64, 64)
    unet_layers: int = 1
    unet_heads: int = 4
    text_hidden: int = 64
    text_layers: int = 2
    text_heads: int = 4
    max_length: int = DEFAULT_MAX_LENGTH
    prediction_type: str = "v_prediction"
    zero_snr: bool = True

    @property
    def latent_size(self) -> int:
        return self.size // 2 ** (len(self.vae_channels) - 1)


@dataclass
class TrainConfig:
    out: str = "models/shapes_sd"
    ckpt_dir: str = ""  # default: "<out>.ckpt" beside the export, so it is never shipped with it
    device: str = "cpu"
    seed: int = 0
    # Defaults = the GPU recipe. On one H200 (batch 512): VAE ~45 it/s, UNet ~16 it/s, and the
    # checker already scored 96/96 generated samples after 1000 UNet steps.
    vae_steps: int = 2000
    steps: int = 4000
    batch: int = 0  # 0: 512 on cuda, 64 on cpu
    vae_lr: float = 1e-3
    lr: float = 1e-3
    warmup: int = 200
    kl_weight: float = 1e-4
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
    model: ModelConfig = field(default_factory=ModelConfig)

    def __post_init__(self) -> None:
        if self.batch <= 0:
            self.batch = 512 if self.device == "cuda" else 64

    @property
    def ckpt_path(self) -> Path:
        return Path(self.ckpt_dir or f"{self.out.rstrip('/')}.ckpt") / "state.pt"


# --------------------------------------------------------------------------- models


def build_models(
    cfg: ModelConfig, tokenizer: CLIPTokenizer
) -> tuple[AutoencoderKL, CLIPTextModel, UNet2DConditionModel]:
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * len(cfg.vae_channels),
        up_block_types=("UpDecoderBlock2D",) * len(cfg.vae_channels),
        block_out_channels=cfg.vae_channels,
        layers_per_block=1,
        latent_channels=cfg.latent_channels,
        norm_num_groups=16,
        sample_size=cfg.size,
        # A flat shape on an 8x8 latent needs no global attention in the VAE.
        mid_block_add_attention=False,
        force_upcast=False,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=cfg.text_hidden,
            intermediate_size=cfg.text_hidden * 4,
            num_hidden_layers=cfg.text_layers,
            num_attention_heads=cfg.text_heads,
            max_position_embeddings=cfg.max_length,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    levels = len(cfg.unet_channels)
    unet = UNet2DConditionModel(
        sample_size=cfg.latent_size,
        in_channels=cfg.latent_channels,
        out_channels=cfg.latent_channels,
        down_block_types=("CrossAttnDownBlock2D",) * levels,
        up_block_types=("CrossAttnUpBlock2D",) * levels,
        block_out_channels=cfg.unet_channels,
        layers_per_block=cfg.unet_layers,
        cross_attention_dim=cfg.text_hidden,
        attention_head_dim=cfg.unet_heads,  # diffusers' legacy name: this is the head count
        norm_num_groups=32,
    )
    # Start by predicting 0 (loss ~1 on unit-variance targets) instead of random large outputs.
    torch.nn.init.zeros_(unet.conv_out.weight)
    torch.nn.init.zeros_(unet.conv_out.bias)
    return vae, text_encoder, unet


def build_scheduler(cfg: ModelConfig) -> DDIMScheduler:
    """SD's scaled-linear betas; rescaled to zero terminal SNR with trailing steps by default."""
    return DDIMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        prediction_type=cfg.prediction_type,
        rescale_betas_zero_snr=cfg.zero_snr,
        timestep_spacing="trailing" if cfg.zero_snr else "leading",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,  # ignored by "trailing" spacing; 1 keeps diffusers from warning
    )


def make_pipeline(
    vae: AutoencoderKL,
    text_encoder: CLIPTextModel,
    tokenizer: CLIPTokenizer,
    unet: UNet2DConditionModel,
    cfg: ModelConfig,
) -> StableDiffusionPipeline:
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=build_scheduler(cfg),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


# --------------------------------------------------------------------------- helpers


@torch.no_grad()
def evaluate(
    pipe: StableDiffusionPipeline, samples: int, size: int, steps: int = EVAL_STEPS
) -> tuple[dict[str, float], np.ndarray]:
    """Generate one image per class (cycling) and score them with the checker."""
    ids = [i % NUM_CLASSES for i in range(samples)]
    gen = torch.Generator("cpu").manual_seed(EVAL_SEED_BASE)
    images = pipe(
        [CAPTIONS[i] for i in ids],
        height=size,
        width=size,
        num_inference_steps=steps,
        guidance_scale=EVAL_GUIDANCE,
        generator=gen,
        output_type="np",
    ).images
    colour = shape = both = 0
    for img, cid in zip(images, ids, strict=True):
        want_shape, want_colour = class_names(cid)
        got = check(img)
        colour += got.colour == want_colour
        shape += got.shape == want_shape
        both += got == (want_colour, want_shape)
    n = len(ids)
    return {"colour": colour / n, "shape": shape / n, "both": both / n}, images


# --------------------------------------------------------------------------- training


class Trainer(ResumableTrainer):
    final_stage = "unet"

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg, self.mcfg = cfg, cfg.model
        self.device = torch.device(cfg.device)
        torch.manual_seed(cfg.seed)  # model initialisation
        out = Path(cfg.out)
        self.tokenizer = build_tokenizer(out / "tokenizer", self.mcfg.max_length)
        self.vae, self.text_encoder, self.unet = build_models(self.mcfg, self.tokenizer)
        for m in (self.vae, self.text_encoder, self.unet):
            m.to(self.device)
        # All data/noise randomness comes from this CPU generator: checkpointable, device-agnostic.
        self.gen = torch.Generator("cpu").manual_seed(cfg.seed)
        self.stage, self.step = "vae", 0
        self.steps_left = cfg.stop_after or math.inf
        self.ema_text = EMA(self.text_encoder)
        self.ema_unet = EMA(self.unet)
        self.vae_opt = torch.optim.AdamW(self.vae.parameters(), lr=cfg.vae_lr, weight_decay=0.0)
        self.opt = torch.optim.AdamW(
            list(self.unet.parameters()) + list(self.text_encoder.parameters()),
            lr=cfg.lr,
            weight_decay=0.01,
        )
        self.scaling_factor = 1.0
        caption_ids = self.tokenizer(
            [*CAPTIONS, ""],
            padding="max_length",
            max_length=self.mcfg.max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids
        self.caption_ids = caption_ids.to(self.device)  # row NUM_CLASSES is the empty caption
        pool, self.pool_ids = make_pool(cfg.pool, self.mcfg.size, TRAIN_SEED_BASE, cfg.workers)
        self.pool = pool.to(self.device)
        self.pool_ids = self.pool_ids.to(self.device)
        self.noise_sched = DDPMScheduler.from_config(build_scheduler(self.mcfg).config)
        self.noise_sched.alphas_cumprod = self.noise_sched.alphas_cumprod.to(self.device)
        self.resume()

    # -- checkpoints

    def saved_modules(self) -> dict[str, torch.nn.Module]:
        return {"vae": self.vae, "text_encoder": self.text_encoder, "unet": self.unet,
                "ema_text": self.ema_text.module, "ema_unet": self.ema_unet.module}

    def saved_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"vae_opt": self.vae_opt, "opt": self.opt}

    # -- stage a: VAE

    def images(self, idx: torch.Tensor) -> torch.Tensor:
        """Pool items as float images in -1..1 (the SD VAE convention)."""
        return self.pool[idx.to(self.device)].float() / 127.5 - 1.0

    def train_vae(self) -> None:
        cfg = self.cfg
        self.vae.train()
        t0, losses = time.perf_counter(), []
        # Draw nothing from self.gen past the last step: a resumed run must see the same stream.
        while self.step < cfg.vae_steps:
            idx = torch.randint(len(self.pool), (cfg.batch,), generator=self.gen)
            for g in self.vae_opt.param_groups:
                g["lr"] = lr_at(self.step, cfg.vae_steps, cfg.vae_lr, cfg.warmup)
            x = self.images(idx)
            eps = torch.randn(
                x.shape[0],
                self.mcfg.latent_channels,
                self.mcfg.latent_size,
                self.mcfg.latent_size,
                generator=self.gen,
            )
            with autocast(self.device):
                post = self.vae.encode(x).latent_dist
                z = post.mean + post.std * eps.to(self.device)
                recon = self.vae.decode(z).sample
            # KL per image element, so kl_weight does not depend on the resolution.
            kl = post.kl().mean() / x[0].numel()
            loss = F.l1_loss(recon.float(), x) + cfg.kl_weight * kl.float()
            self.vae_opt.zero_grad(set_to_none=True)
            loss.backward()
            self.vae_opt.step()
            losses.append(loss.detach())  # no .item() per step: it would sync the GPU
            if (self.step + 1) % cfg.log_every == 0 or self.step + 1 == cfg.vae_steps:
                rate = len(losses) / (time.perf_counter() - t0)
                print(
                    f"vae  step {self.step + 1:6d}  loss {torch.stack(losses).mean().item():.4f}  kl {kl.item():.4f}  {rate:.1f} it/s",
                    flush=True,
                )
                t0, losses = time.perf_counter(), []
            self.count_step()

    @torch.no_grad()
    def encode_pool(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean/std of every pool image: stage b then never runs the VAE encoder."""
        means, stds = [], []
        for lo in range(0, len(self.pool), 1024):
            post = self.vae.encode(
                self.images(torch.arange(lo, min(lo + 1024, len(self.pool))))
            ).latent_dist
            means.append(post.mean)
            stds.append(post.std)
        return torch.cat(means), torch.cat(stds)

    @torch.no_grad()
    def vae_report(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Reconstruction error and the checker's accuracy on reconstructions (VAE sanity)."""
        n = min(240, len(self.pool))
        recon = self.vae.decode(mean[:n]).sample
        x = self.images(torch.arange(n))
        right = sum(
            check((r.permute(1, 2, 0).cpu() + 1) / 2) == class_names(int(c))[::-1]
            for r, c in zip(recon, self.pool_ids[:n], strict=True)
        )
        print(
            f"vae  recon L1 {F.l1_loss(recon, x).item():.4f}  checker on recon {right / n:.1%}  "
            f"latent mean {mean.mean().item():.3f}, std of means {mean.std().item():.3f}, "
            f"posterior std {std.mean().item():.3f} -> scaling_factor {self.scaling_factor:.4f}",
            flush=True,
        )

    # -- stage b: UNet + text encoder

    def train_unet(self) -> None:
        cfg = self.cfg
        mean, std = self.encode_pool()
        if self.stage == "vae":  # first entry: fix the latent scale once, then it is checkpointed
            # Unit variance of the *sampled* latents (mean + std * eps), as SD's factor is defined.
            self.scaling_factor = float(1.0 / torch.sqrt(mean.var() + std.pow(2).mean()))
            self.vae.register_to_config(scaling_factor=self.scaling_factor)
            self.stage, self.step = "unet", 0
            self.vae_report(mean, std)
            self.checkpoint()
        self.vae.register_to_config(scaling_factor=self.scaling_factor)
        self.unet.train()
        self.text_encoder.train()
        t0, losses = time.perf_counter(), []
        while self.step < cfg.steps:
            idx = torch.randint(len(self.pool), (cfg.batch,), generator=self.gen)
            for g in self.opt.param_groups:
                g["lr"] = lr_at(self.step, cfg.steps, cfg.lr, cfg.warmup)
            b = idx.shape[0]
            noise = torch.randn(b, *mean.shape[1:], generator=self.gen).to(self.device)
            eps = torch.randn(b, *mean.shape[1:], generator=self.gen).to(self.device)
            t = torch.randint(
                0, self.noise_sched.config.num_train_timesteps, (b,), generator=self.gen
            ).to(self.device)
            drop = (torch.rand(b, generator=self.gen) < cfg.cfg_drop).to(self.device)
            idx = idx.to(self.device)
            z = (mean[idx] + std[idx] * eps) * self.scaling_factor
            rows = torch.where(drop, NUM_CLASSES, self.pool_ids[idx])
            noisy = self.noise_sched.add_noise(z, noise, t)
            target = (
                self.noise_sched.get_velocity(z, noise, t)
                if self.mcfg.prediction_type == "v_prediction"
                else noise
            )
            with autocast(self.device):
                # last_hidden_state of all (padded) positions, exactly as the SD pipeline does.
                context = self.text_encoder(self.caption_ids[rows]).last_hidden_state
                pred = self.unet(noisy, t, context).sample
            loss = F.mse_loss(pred.float(), target)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(
                list(self.unet.parameters()) + list(self.text_encoder.parameters()), 1.0
            )
            self.opt.step()
            self.ema_unet.update(self.unet, self.step, cfg.ema_decay)
            self.ema_text.update(self.text_encoder, self.step, cfg.ema_decay)
            losses.append(loss.detach())
            done = self.step + 1
            if done % cfg.log_every == 0 or done == cfg.steps:
                rate = len(losses) / (time.perf_counter() - t0)
                print(
                    f"unet step {done:6d}  loss {torch.stack(losses).mean().item():.4f}  {rate:.1f} it/s",
                    flush=True,
                )
                t0, losses = time.perf_counter(), []
            if done % cfg.eval_every == 0 or done == cfg.steps:
                self.eval_and_log(done)
            self.count_step()

    def pipeline(self) -> StableDiffusionPipeline:
        return make_pipeline(
            self.vae, self.ema_text.module, self.tokenizer, self.ema_unet.module, self.mcfg
        )

    def eval_and_log(self, step: int) -> dict[str, float]:
        cfg = self.cfg
        acc, images = evaluate(self.pipeline(), cfg.eval_samples, self.mcfg.size, cfg.eval_steps)
        print(
            f"eval step {step:6d}  checker on {self.cfg.eval_samples} samples (DDIM {cfg.eval_steps}, cfg {EVAL_GUIDANCE}): "
            f"colour {acc['colour']:.1%}  shape {acc['shape']:.1%}  both {acc['both']:.1%}",
            flush=True,
        )
        save_grid(images, self.cfg.ckpt_path.parent / f"samples_{step:06d}.png")
        return acc

    def export(self) -> None:
        """Save the EMA pipeline (fp32 safetensors) as a StableDiffusionPipeline folder."""
        out = Path(self.cfg.out)
        self.pipeline().save_pretrained(out, safe_serialization=True)
        # Our CLIP-format vocab.json/merges.txt next to tokenizer.json, for any CLIPTokenizer.
        build_tokenizer(out / "tokenizer", self.mcfg.max_length)

    def run(self) -> Path | None:
        """Train both stages and export; None if --stop-after stopped it early."""
        print(
            f"params: vae {param_count(self.vae) / 1e6:.2f}M  text {param_count(self.text_encoder) / 1e6:.2f}M  "
            f"unet {param_count(self.unet) / 1e6:.2f}M  (fp32 total {param_count(self.vae, self.text_encoder, self.unet) * 4 / 2**20:.1f} MiB)",
            flush=True,
        )
        try:
            if self.stage == "vae":
                self.train_vae()
            self.vae.eval().requires_grad_(False)
            self.train_unet()
        except StopTraining:
            print(
                f"stopped after {self.cfg.stop_after} steps at stage {self.stage} step {self.step}; rerun to resume",
                flush=True,
            )
            return None
        self.checkpoint()
        self.export()
        print(f"saved {self.cfg.out}", flush=True)
        return Path(self.cfg.out)


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    return parse_config(
        TrainConfig, argv, "Train the tiny SD-family shapes model.",
        help={"out": "exported StableDiffusionPipeline folder", "ckpt_dir": "checkpoints (default <out>.ckpt)",
              "steps": "UNet/text-encoder steps", "batch": "0: 512 on cuda, 64 on cpu",
              "pool": "distinct training images", "workers": "processes rendering the pool",
              "eval_steps": "DDIM steps of samples", "stop_after": "stop (resumably) after N steps",
              "zero_snr": "zero-terminal-SNR schedule (--no-zero-snr: plain scaled-linear)"},
        choices={"prediction_type": ("v_prediction", "epsilon")},
    )  # fmt: skip


def main(argv: list[str] | None = None) -> Path | None:
    return train(Trainer, parse_args(argv))


if __name__ == "__main__":
    main()
