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

from ..executor.pixels import pixels_to_image
from ..nodes.shapes.dataset import CAPTIONS, EVAL_SEED_BASE, NUM_CLASSES, class_names
from .checker import check
from .common import autocast, parse_config, save_grid, train
from .latent_trainer import COMMON_HELP, EVAL_STEPS, LatentTrainConfig, LatentTrainer, score
from .tokenizer import DEFAULT_MAX_LENGTH, build_tokenizer

EVAL_GUIDANCE = 4.0


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
class TrainConfig(LatentTrainConfig):
    # Defaults = the GPU recipe. On one H200 (batch 512): VAE ~45 it/s, UNet ~16 it/s, and the
    # checker already scored 96/96 generated samples after 1000 UNet steps.
    out: str = "models/shapes_sd"
    kl_weight: float = 1e-4
    model: ModelConfig = field(default_factory=ModelConfig)


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
    return score(images, ids), images


# --------------------------------------------------------------------------- training


class Trainer(LatentTrainer):
    final_stage, denoiser_key, ema_key, vae_loss_name = "unet", "unet", "ema_unet", "loss"

    def __init__(self, cfg: TrainConfig) -> None:
        super().__init__(cfg, lambda: build_tokenizer(Path(cfg.out) / "tokenizer", cfg.model.max_length),
                         build_models)
        caption_ids = self.tokenizer(
            [*CAPTIONS, ""],
            padding="max_length",
            max_length=self.mcfg.max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids
        self.caption_ids = caption_ids.to(self.device)  # row NUM_CLASSES is the empty caption
        self.load_pool()
        self.noise_sched = DDPMScheduler.from_config(build_scheduler(self.mcfg).config)
        self.noise_sched.alphas_cumprod = self.noise_sched.alphas_cumprod.to(self.device)
        self.resume()

    # -- stage a: VAE

    def vae_loss(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
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
        loss = F.l1_loss(recon.float(), x) + self.cfg.kl_weight * kl.float()
        return loss, loss, {"kl": kl}

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

    def latent_scale(self, latents: tuple[torch.Tensor, torch.Tensor]) -> float:
        # Unit variance of the *sampled* latents (mean + std * eps), as SD's factor is defined.
        mean, std = latents
        return float(1.0 / torch.sqrt(mean.var() + std.pow(2).mean()))

    @torch.no_grad()
    def vae_report(self, latents: tuple[torch.Tensor, torch.Tensor]) -> None:
        """Reconstruction error and the checker's accuracy on reconstructions (VAE sanity)."""
        mean, std = latents
        n = min(240, len(self.pool))
        recon = self.vae.decode(mean[:n]).sample
        x = self.images(torch.arange(n))
        right = sum(
            check(image) == class_names(int(c))[::-1]
            for image, c in zip(pixels_to_image(recon).cpu(), self.pool_ids[:n], strict=True)
        )
        print(
            f"vae  recon L1 {F.l1_loss(recon, x).item():.4f}  checker on recon {right / n:.1%}  "
            f"latent mean {mean.mean().item():.3f}, std of means {mean.std().item():.3f}, "
            f"posterior std {std.mean().item():.3f} -> scaling_factor {self.scaling_factor:.4f}",
            flush=True,
        )

    # -- stage b: UNet + text encoder

    def denoiser_loss(self, idx: torch.Tensor, latents: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        mean, std = latents
        b = idx.shape[0]
        noise = torch.randn(b, *mean.shape[1:], generator=self.gen).to(self.device)
        eps = torch.randn(b, *mean.shape[1:], generator=self.gen).to(self.device)
        t = torch.randint(
            0, self.noise_sched.config.num_train_timesteps, (b,), generator=self.gen
        ).to(self.device)
        drop = (torch.rand(b, generator=self.gen) < self.cfg.cfg_drop).to(self.device)
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
            pred = self.denoiser(noisy, t, context).sample
        return F.mse_loss(pred.float(), target)

    def pipeline(self) -> StableDiffusionPipeline:
        return make_pipeline(
            self.vae, self.ema_text.module, self.tokenizer, self.ema_denoiser.module, self.mcfg
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


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    return parse_config(
        TrainConfig, argv, "Train the tiny SD-family shapes model.",
        help={**COMMON_HELP, "out": "exported StableDiffusionPipeline folder",
              "steps": "UNet/text-encoder steps", "eval_steps": "DDIM steps of samples",
              "zero_snr": "zero-terminal-SNR schedule (--no-zero-snr: plain scaled-linear)"},
        choices={"prediction_type": ("v_prediction", "epsilon")},
    )  # fmt: skip


def main(argv: list[str] | None = None) -> Path | None:
    return train(Trainer, parse_args(argv))


if __name__ == "__main__":
    main()
