"""Train latentgraph's tiny FLUX.1-architecture model on the synthetic shapes dataset.

The result is an ordinary diffusers FluxPipeline folder (model_index.json, tokenizer/ +
text_encoder/ (CLIP-L's role), tokenizer_2/ + text_encoder_2/ (T5's), vae/, transformer/,
scheduler/; safetensors) built from the real architectures (CLIPTextModel, T5EncoderModel,
AutoencoderKL without quant convs and with FLUX's latent shift/scale, FluxTransformer2DModel,
FlowMatchEulerDiscreteScheduler with FLUX's dynamic shift), only very small, so the loaders and
nodes that run FLUX.1 run it (graphs/flux_txt2img.json with a negative prompt and cfg > 1).

Stages:
  a) VAE: L1 reconstruction plus a small KL term on a fixed pool of rendered images;
     32x32x3 <-> 8x8x4 (f4), the latent shift 0 (FluxPipeline needs one; the latents are centred
     enough) and the scale set once to give the training latents unit variance.
  b) transformer + both text encoders, trained jointly, with rectified flow on the VAE's latents
     packed into 2x2 patches as FluxPipeline packs them: x_t = (1 - s) x0 + s noise, target
     v = noise - x0, s logit-normal and then shifted by FLUX's resolution-dependent mu (the
     exported scheduler's calculate_shift for 16 image tokens), the transformer's timestep s
     (FluxPipeline passes t / 1000 = sigma). The conditioning is FluxPipeline's own: CLIP's pooled
     output over 77 tokens, T5's last hidden state over ``t5_tokens``
     (FluxPipeline's max_sequence_length). Like schnell there is no guidance
     embedding; 10 % of the samples get the empty prompt, for FluxPipeline's true CFG (a negative
     prompt with true_cfg_scale, our LG_Sampler's negative with cfg). EMA weights are exported.

Both text encoders run once per step on the 25 distinct prompts (24 captions and ""), and each
sample gathers its row. Everything random comes from seeded generators whose state is
checkpointed, so a killed run restarted with the same command resumes where it stopped.

CPU smoke:  python -m latentgraph.training.train_flux --out /tmp/shapes_flux --vae-steps 3 \
                --steps 3 --batch 8 --pool 48 --eval-samples 2 --eval-steps 2
GPU:        python -m latentgraph.training.train_flux --out /tmp/shapes_flux --device cuda \
                --workers 8   (= --vae-steps 2000 --steps 4000 --batch 512 --pool 50000)
Shipped:    python -m latentgraph.training.train_flux --out models/shapes_flux --batch 64 \
                --pool 20000 --workers 2 --steps 8000
            (one CPU core each for this and another run: the VAE's 2,000 steps at 1.6 it/s, L1
            0.016, the checker right on all its reconstructions; then 8,000 transformer steps at
            2.2 it/s, the checker right on 48 of 48 samples from step 2,000 on; about 80 minutes)
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import (
    AutoencoderKL,
    FlowMatchEulerDiscreteScheduler,
    FluxPipeline,
    FluxTransformer2DModel,
)
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTokenizer,
    T5Config,
    T5EncoderModel,
    T5Tokenizer,
)

from ..executor.pixels import pixels_to_image
from ..nodes.diffusion.schedule_nodes import flux_mu
from ..nodes.flux.models import image_ids, pack, unpack
from ..nodes.shapes.dataset import CAPTIONS, EVAL_SEED_BASE, NUM_CLASSES, class_names
from .checker import check
from .common import autocast, parse_config, save_grid, train
from .latent_trainer import COMMON_HELP, EVAL_STEPS, LatentTrainConfig, LatentTrainer, score
from .tokenizer import build_tokenizer, caption_words

EVAL_GUIDANCE = 4.0  # FluxPipeline's true_cfg_scale for the samples
CLIP_TOKENS = 77  # FluxPipeline pads CLIP to its tokenizer's model_max_length, as CLIP-L's 77
HEAD_DIM = 32  # RoPE axes 4, 14, 14: FLUX's 1 : 3.5 : 3.5 split of the head width
BASE_SEQ, MAX_SEQ, BASE_SHIFT, MAX_SHIFT = 256, 4096, 0.5, 1.15  # FLUX.1-dev's scheduler


@dataclass(frozen=True)
class ModelConfig:
    """Architecture and schedule. Stored in the checkpoint; a resume must use the same one."""

    size: int = 32
    # 3 VAE levels = 2 downsamplings: 32x32x3 images <-> 8x8x4 latents, 4x4 = 16 packed tokens.
    vae_channels: tuple[int, ...] = (32, 32, 64)
    latent_channels: int = 4
    width: int = 128  # transformer: heads x 32
    double_layers: int = 2
    single_layers: int = 4
    text_hidden: int = 64
    text_layers: int = 2
    text_heads: int = 4
    # T5's max_sequence_length, in training and in every pipeline call and graph that samples the
    # model (FLUX.1-dev uses 512, schnell 256): a shapes caption is under 10 tokens, and the
    # joint attention's cost grows with the padded length, 32 + 16 tokens here instead of 528.
    t5_tokens: int = 32

    @property
    def latent_size(self) -> int:
        return self.size // 2 ** (len(self.vae_channels) - 1)

    @property
    def tokens(self) -> int:
        return (self.latent_size // 2) ** 2


@dataclass
class TrainConfig(LatentTrainConfig):
    out: str = "models/shapes_flux"
    lr: float = 5e-4
    kl_weight: float = 1e-4
    model: ModelConfig = field(default_factory=ModelConfig)


class Tokenizers(NamedTuple):
    clip: CLIPTokenizer
    t5: T5Tokenizer


class TextEncoders(torch.nn.Module):
    """CLIP-L's and T5's roles, trained (and checkpointed, EMA'd) as one module."""

    def __init__(self, clip: CLIPTextModel, t5: T5EncoderModel) -> None:
        super().__init__()
        self.clip, self.t5 = clip, t5


def t5_tokenizer() -> T5Tokenizer:
    """A unigram T5 tokenizer of the caption words (whole words score above their letters, as a
    trained SentencePiece model's do): T5's specials <pad> 0, </s> 1, <unk> 2."""
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    pieces += [(c, -5.0) for c in "abcdefghijklmnopqrstuvwxyz"]
    pieces += [("\u2581" + c, -4.0) for c in "abcdefghijklmnopqrstuvwxyz"]
    pieces += [("\u2581" + w, -1.0) for w in caption_words()]
    return T5Tokenizer(vocab=pieces, extra_ids=0)


def make_tokenizers(out: str) -> Tokenizers:
    return Tokenizers(build_tokenizer(Path(out) / "tokenizer", CLIP_TOKENS), t5_tokenizer())


# --------------------------------------------------------------------------- models


def build_models(
    cfg: ModelConfig, tokenizers: Tokenizers
) -> tuple[AutoencoderKL, TextEncoders, FluxTransformer2DModel]:
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
        mid_block_add_attention=False,
        force_upcast=False,
        use_quant_conv=False,  # FLUX's VAE layout
        use_post_quant_conv=False,
        shift_factor=0.0,
    )
    clip = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizers.clip),
            hidden_size=cfg.text_hidden,
            intermediate_size=cfg.text_hidden * 4,
            num_hidden_layers=cfg.text_layers,
            num_attention_heads=cfg.text_heads,
            max_position_embeddings=CLIP_TOKENS,
            bos_token_id=tokenizers.clip.bos_token_id,
            eos_token_id=tokenizers.clip.eos_token_id,
            pad_token_id=tokenizers.clip.pad_token_id,
        )
    )
    t5 = T5EncoderModel(
        T5Config(
            vocab_size=len(tokenizers.t5),
            d_model=cfg.text_hidden,
            d_kv=cfg.text_hidden // cfg.text_heads,
            num_heads=cfg.text_heads,
            d_ff=cfg.text_hidden * 2,
            num_layers=cfg.text_layers,
            feed_forward_proj="gated-gelu",  # T5 v1.1, as FLUX's
            # No dropout: it would draw from torch's global generator, which no checkpoint holds
            # (a resumed run must see the same stream), and the shapes data need none.
            dropout_rate=0.0,
            relative_attention_num_buckets=32,
            relative_attention_max_distance=128,
            is_encoder_decoder=False,
            use_cache=False,
        )
    )
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=cfg.latent_channels * 4,
        num_layers=cfg.double_layers,
        num_single_layers=cfg.single_layers,
        attention_head_dim=HEAD_DIM,
        num_attention_heads=cfg.width // HEAD_DIM,
        joint_attention_dim=cfg.text_hidden,
        pooled_projection_dim=cfg.text_hidden,
        guidance_embeds=False,
        axes_dims_rope=(4, 14, 14),
    )
    # Start by predicting 0 (loss ~2 on unit-variance data and noise) instead of random outputs.
    torch.nn.init.zeros_(transformer.proj_out.weight)
    torch.nn.init.zeros_(transformer.proj_out.bias)
    return vae, TextEncoders(clip, t5), transformer


def build_scheduler() -> FlowMatchEulerDiscreteScheduler:
    """FLUX.1-dev's scheduler config: dynamic (resolution-dependent) exponential shifting."""
    return FlowMatchEulerDiscreteScheduler(
        shift=3.0, use_dynamic_shifting=True, base_shift=BASE_SHIFT, max_shift=MAX_SHIFT,
        base_image_seq_len=BASE_SEQ, max_image_seq_len=MAX_SEQ,
    )


def make_pipeline(vae: AutoencoderKL, text: TextEncoders, tokenizers: Tokenizers,
                  transformer: FluxTransformer2DModel) -> FluxPipeline:
    pipe = FluxPipeline(
        scheduler=build_scheduler(), vae=vae, text_encoder=text.clip, tokenizer=tokenizers.clip,
        text_encoder_2=text.t5, tokenizer_2=tokenizers.t5, transformer=transformer,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def training_sigmas(u: torch.Tensor, tokens: int) -> torch.Tensor:
    """FLUX's exponential time shift by the mu of ``tokens`` image tokens, e^mu / (e^mu + 1/u - 1)."""
    scale = math.exp(flux_mu(tokens, BASE_SEQ, MAX_SEQ, BASE_SHIFT, MAX_SHIFT))
    return scale / (scale + (1 / u - 1))


def prompt_ids(tokenizers: Tokenizers, t5_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """CLIP and T5 token ids of the conditioning rows (the captions, then "" at NUM_CLASSES),
    padded as FluxPipeline pads them."""
    texts = [*CAPTIONS, ""]
    clip = tokenizers.clip(texts, padding="max_length", max_length=CLIP_TOKENS, truncation=True,
                           return_tensors="pt").input_ids
    t5 = tokenizers.t5(texts, padding="max_length", max_length=t5_tokens, truncation=True,
                       add_special_tokens=True, return_tensors="pt").input_ids
    return clip, t5


@torch.no_grad()
def evaluate(pipe: FluxPipeline, samples: int, cfg: ModelConfig, steps: int = EVAL_STEPS
             ) -> tuple[dict[str, float], np.ndarray]:
    """One image per class (cycling) with FluxPipeline's true CFG, scored by the checker."""
    ids = [i % NUM_CLASSES for i in range(samples)]
    images = pipe(
        [CAPTIONS[i] for i in ids], negative_prompt=[""] * samples, true_cfg_scale=EVAL_GUIDANCE,
        height=cfg.size, width=cfg.size, num_inference_steps=steps, max_sequence_length=cfg.t5_tokens,
        generator=torch.Generator("cpu").manual_seed(EVAL_SEED_BASE), output_type="np",
    ).images
    return score(images, ids), images


# --------------------------------------------------------------------------- training


class Trainer(LatentTrainer):
    final_stage, denoiser_key, ema_key, vae_loss_name = "flux", "transformer", "ema_transformer", "loss"

    def __init__(self, cfg: TrainConfig) -> None:
        super().__init__(cfg, lambda: make_tokenizers(cfg.out), build_models)
        clip, t5 = prompt_ids(self.tokenizer, self.mcfg.t5_tokens)
        self.clip_ids, self.t5_ids = clip.to(self.device), t5.to(self.device)
        side = self.mcfg.latent_size // 2
        self.txt_ids = torch.zeros(self.mcfg.t5_tokens, 3, device=self.device)
        self.img_ids = image_ids(side, side, self.device, torch.float32)
        self.load_pool()
        self.resume()

    # -- stage a: VAE

    def vae_loss(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        m = self.mcfg
        eps = torch.randn(x.shape[0], m.latent_channels, m.latent_size, m.latent_size, generator=self.gen)
        with autocast(self.device):
            post = self.vae.encode(x).latent_dist
            z = post.mean + post.std * eps.to(self.device)
            recon = self.vae.decode(z).sample
        kl = post.kl().mean() / x[0].numel()  # per image element: kl_weight is resolution-free
        loss = F.l1_loss(recon.float(), x) + self.cfg.kl_weight * kl.float()
        return loss, loss, {"kl": kl}

    @torch.no_grad()
    def encode_pool(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean/std of every pool image: stage b never runs the VAE encoder."""
        means, stds = [], []
        for lo in range(0, len(self.pool), 1024):
            post = self.vae.encode(self.images(torch.arange(lo, min(lo + 1024, len(self.pool))))).latent_dist
            means.append(post.mean)
            stds.append(post.std)
        return torch.cat(means), torch.cat(stds)

    def latent_scale(self, latents: tuple[torch.Tensor, torch.Tensor]) -> float:
        mean, std = latents  # unit variance of the sampled latents (mean + std * eps)
        return float(1.0 / torch.sqrt(mean.var() + std.pow(2).mean()))

    @torch.no_grad()
    def vae_report(self, latents: tuple[torch.Tensor, torch.Tensor]) -> None:
        mean, _ = latents
        n = min(240, len(self.pool))
        recon = self.vae.decode(mean[:n]).sample
        right = sum(
            check(image) == class_names(int(c))[::-1]
            for image, c in zip(pixels_to_image(recon).cpu(), self.pool_ids[:n], strict=True)
        )
        print(f"vae  recon L1 {F.l1_loss(recon, self.images(torch.arange(n))).item():.4f}  checker on recon "
              f"{right / n:.1%}  latent mean {mean.mean().item():.3f} -> scaling_factor {self.scaling_factor:.4f}",
              flush=True)

    # -- stage b: transformer + text encoders

    def conditions(self, text: TextEncoders) -> tuple[torch.Tensor, torch.Tensor]:
        """(T5 states (rows, t5_tokens, D), CLIP pooled (rows, D)) of every conditioning row."""
        pooled = text.clip(self.clip_ids).pooler_output
        return text.t5(self.t5_ids).last_hidden_state, pooled

    def denoiser_loss(self, idx: torch.Tensor, latents: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        mean, std = latents
        b = idx.shape[0]
        noise = torch.randn(b, *mean.shape[1:], generator=self.gen).to(self.device)
        eps = torch.randn(b, *mean.shape[1:], generator=self.gen).to(self.device)
        u = torch.sigmoid(torch.randn(b, generator=self.gen))  # logit-normal (Esser et al. 2024)
        sigma = training_sigmas(u, self.mcfg.tokens).to(self.device)
        drop = (torch.rand(b, generator=self.gen) < self.cfg.cfg_drop).to(self.device)
        idx = idx.to(self.device)
        x0 = (mean[idx] + std[idx] * eps) * self.scaling_factor  # shift_factor 0
        s = sigma.view(b, 1, 1, 1)
        noisy = (1 - s) * x0 + s * noise
        rows = torch.where(drop, NUM_CLASSES, self.pool_ids[idx])
        with autocast(self.device):
            tokens, pooled = self.conditions(self.text_encoder)
            pred = self.denoiser(
                hidden_states=pack(noisy), timestep=sigma, guidance=None, pooled_projections=pooled[rows],
                encoder_hidden_states=tokens[rows], txt_ids=self.txt_ids, img_ids=self.img_ids,
            ).sample
        return F.mse_loss(unpack(pred.float(), *noisy.shape[-2:]), noise - x0)

    def pipeline(self) -> FluxPipeline:
        return make_pipeline(self.vae, self.ema_text.module, self.tokenizer, self.ema_denoiser.module)

    def eval_and_log(self, step: int) -> dict[str, float]:
        cfg = self.cfg
        acc, images = evaluate(self.pipeline(), cfg.eval_samples, self.mcfg, cfg.eval_steps)
        print(f"eval step {step:6d}  checker on {cfg.eval_samples} samples (Euler {cfg.eval_steps}, true cfg "
              f"{EVAL_GUIDANCE}): colour {acc['colour']:.1%}  shape {acc['shape']:.1%}  both {acc['both']:.1%}",
              flush=True)
        save_grid(images, cfg.ckpt_path.parent / f"samples_{step:06d}.png")
        return acc

    def export(self) -> None:
        """Save the EMA pipeline as a FluxPipeline folder, fp16 safetensors (half the size of
        fp32, which the shipped models' 40 MB together could not hold; the loaders cast to the
        compute dtype)."""
        self.vae.register_to_config(shift_factor=0.0)
        copy.deepcopy(self.pipeline()).to(dtype=torch.float16).save_pretrained(self.cfg.out, safe_serialization=True)
        build_tokenizer(Path(self.cfg.out) / "tokenizer", CLIP_TOKENS)  # CLIP's vocab.json/merges.txt too


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    return parse_config(
        TrainConfig, argv, "Train the tiny FLUX.1-architecture shapes model.",
        help={**COMMON_HELP, "out": "exported FluxPipeline folder", "vae_steps": "VAE steps",
              "steps": "transformer/text-encoder steps", "eval_steps": "Euler steps of samples",
              "width": "a multiple of 32"},
    )  # fmt: skip


def main(argv: list[str] | None = None) -> Path | None:
    return train(Trainer, parse_args(argv))


if __name__ == "__main__":
    main()
