"""Train latentgraph's tiny SANA-family model on the synthetic shapes dataset.

The result is an ordinary diffusers SanaPipeline folder (model_index.json, tokenizer/,
text_encoder/, vae/, transformer/, scheduler/; safetensors) built from the real architectures
(Gemma2Model + a Gemma-format tokenizer, AutoencoderDC, SanaTransformer2DModel,
DPMSolverMultistepScheduler with flow sigmas), only very small, so the same loaders and nodes that
run full-size SANA checkpoints run it. Generate with SanaPipeline at height=width=32 and
use_resolution_binning=False (its aspect-ratio bins are for 512..4096 px models).

Stages:
  a) DC-AE: L1 reconstruction (plus a tiny L2 pull on the latents, which DC-AE, unlike a KL VAE,
     does not have otherwise) on a fixed pool of rendered images; 32x32x3 <-> 8x8x4 (f4c4).
  b) SANA DiT + Gemma-2 text encoder, trained jointly (so the words get embeddings made for this
     task), with rectified flow on the DC-AE's latents: x_t = (1 - s) x0 + s noise, target
     v = noise - x0, s from a logit-normal shifted by the flow_shift (3.0) that the exported scheduler samples
     with, DiT timestep 1000 s (SanaPipeline passes the scheduler's timesteps, floor(1000 s); an
     oracle test in tests/training checks the convention). The text conditioning is SanaPipeline's
     own: prompts lower-cased and stripped, by default with the complex human instruction prepended
     (half the captions; the other half without, as LG_TextEncode's instruction=false and
     SanaPipeline's complex_human_instruction=None encode them), BOS + the last 299 positions with
     the attention mask. 10 % of the samples get the empty prompt encoded as the pipeline encodes
     its negative prompt (no instruction), for classifier-free guidance. EMA weights are exported.

The text encoder runs once per step on the 49 distinct prompts (24 captions with and without the
instruction, and ""), and each sample gathers its row: a few hundred tokens per step whatever the
batch, and still trained. Gemma is causal and the prompts are right-padded, so it runs only up to
the longest real token and the DiT gets only the positions the mask keeps (BOS and the caption): the
pipeline's 300-position input differs only by masked keys, which its -10000 attention bias zeroes.

Everything random comes from seeded generators whose state is checkpointed, so a killed run
restarted with the same command resumes where it stopped (on CPU, bit-for-bit).

CPU smoke:  python -m latentgraph.training.train_sana --out /tmp/shapes_sana --vae-steps 3 \
                --steps 3 --batch 8 --pool 48 --eval-samples 2 --eval-steps 2
Shipped:    python -m latentgraph.training.train_sana --out models/shapes_sana --batch 64 \
                --pool 20000 --workers 2 --steps 8000
            (2 CPU cores, about an hour: the DC-AE reconstructs its renders to L1 0.013, and the
            checker already reads 98 % of the DiT's samples right after 1,000 steps)
GPU:        python -m latentgraph.training.train_sana --out /tmp/shapes_sana --device cuda \
                --workers 8   (= --vae-steps 2000 --steps 6000 --batch 512 --pool 50000)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import (
    AutoencoderDC,
    DPMSolverMultistepScheduler,
    SanaPipeline,
    SanaTransformer2DModel,
)
from transformers import Gemma2Config, Gemma2Model, GemmaTokenizer

from ..executor.pixels import pixels_to_image
from ..nodes.sana.models import COMPLEX_HUMAN_INSTRUCTION, MAX_SEQUENCE_LENGTH, gemma_tokens
from ..nodes.shapes.dataset import CAPTIONS, EVAL_SEED_BASE, NUM_CLASSES, class_names
from .checker import check
from .common import autocast, parse_config, save_grid, train
from .latent_trainer import COMMON_HELP, EVAL_STEPS, LatentTrainConfig, LatentTrainer, score
from .sana_tokenizer import build_tokenizer

EVAL_GUIDANCE = 4.5  # SanaPipeline's default, and graphs/sana_txt2img.json's
HEAD_DIM = 32  # SANA's DiT (self and cross attention) and DC-AE attention head width
# Rows of the conditioning table: the captions with the instruction, the captions without, "".
PLAIN = NUM_CLASSES
EMPTY = 2 * NUM_CLASSES


@dataclass(frozen=True)
class ModelConfig:
    """Architecture and schedule. Stored in the checkpoint; a resume must use the same one."""

    size: int = 32
    # 3 DC-AE stages = 2 downsamplings: 32x32x3 images <-> 8x8x4 latents. ResBlocks, then
    # EfficientViT (linear attention) blocks in the last stage, as in SANA's DC-AE.
    vae_channels: tuple[int, ...] = (32, 64, 64)
    latent_channels: int = 4
    # DiT: width = heads x 32; patch size 1 on the 8x8 latent = 64 tokens.
    dit_width: int = 128
    dit_layers: int = 6
    mlp_ratio: float = 2.5
    text_hidden: int = 64
    text_layers: int = 2
    text_heads: int = 4
    text_kv_heads: int = 2  # grouped-query attention, as Gemma-2
    flow_shift: float = 3.0
    timesteps: str = "logit_normal"  # or "uniform" (before the shift)

    @property
    def latent_size(self) -> int:
        return self.size // 2 ** (len(self.vae_channels) - 1)


@dataclass
class TrainConfig(LatentTrainConfig):
    out: str = "models/shapes_sana"
    steps: int = 6000
    lr: float = 5e-4
    latent_weight: float = 1e-4  # L2 pull of the DC-AE latents towards 0
    instruction_frac: float = 0.5  # captions encoded with the complex human instruction
    model: ModelConfig = field(default_factory=ModelConfig)


# --------------------------------------------------------------------------- models


def build_models(
    cfg: ModelConfig, tokenizer: GemmaTokenizer
) -> tuple[AutoencoderDC, Gemma2Model, SanaTransformer2DModel]:
    stages = len(cfg.vae_channels)
    blocks = ("ResBlock",) * (stages - 1) + ("EfficientViTBlock",)
    scales = ((),) * (stages - 1) + ((5,),)
    vae = AutoencoderDC(
        in_channels=3,
        latent_channels=cfg.latent_channels,
        attention_head_dim=HEAD_DIM,
        encoder_block_types=blocks,
        decoder_block_types=blocks,
        encoder_block_out_channels=cfg.vae_channels,
        decoder_block_out_channels=cfg.vae_channels,
        encoder_layers_per_block=(1,) * stages,
        decoder_layers_per_block=(1,) * stages,
        encoder_qkv_multiscales=scales,
        decoder_qkv_multiscales=scales,
        upsample_block_type="interpolate",  # SANA's DC-AE f32c32 layout
        downsample_block_type="conv",
    )
    head_dim = cfg.text_hidden // cfg.text_heads
    text_encoder = Gemma2Model(
        Gemma2Config(
            vocab_size=len(tokenizer),
            hidden_size=cfg.text_hidden,
            intermediate_size=cfg.text_hidden * 4,
            num_hidden_layers=cfg.text_layers,
            num_attention_heads=cfg.text_heads,
            num_key_value_heads=cfg.text_kv_heads,
            head_dim=head_dim,
            query_pre_attn_scalar=head_dim,
            max_position_embeddings=1024,  # the instruction (~160 tokens) + 298
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            bos_token_id=tokenizer.bos_token_id,
        )
    )
    heads = cfg.dit_width // HEAD_DIM
    transformer = SanaTransformer2DModel(
        in_channels=cfg.latent_channels,
        out_channels=cfg.latent_channels,
        num_attention_heads=heads,
        attention_head_dim=HEAD_DIM,
        num_layers=cfg.dit_layers,
        num_cross_attention_heads=heads,
        cross_attention_head_dim=HEAD_DIM,
        cross_attention_dim=cfg.dit_width,
        caption_channels=cfg.text_hidden,
        mlp_ratio=cfg.mlp_ratio,
        sample_size=cfg.latent_size,
        patch_size=1,
    )
    # PixArt/SANA initialisation: cross-attention outputs and the final layer start at zero, so
    # the DiT starts by predicting 0 and every block starts as self-attention + MLP only.
    for block in transformer.transformer_blocks:
        torch.nn.init.zeros_(block.attn2.to_out[0].weight)
        torch.nn.init.zeros_(block.attn2.to_out[0].bias)
    torch.nn.init.zeros_(transformer.proj_out.weight)
    torch.nn.init.zeros_(transformer.proj_out.bias)
    return vae, text_encoder, transformer


def build_scheduler(cfg: ModelConfig) -> DPMSolverMultistepScheduler:
    """SANA's sampler config: DPM-Solver++(2M) on flow sigmas with the resolution shift."""
    return DPMSolverMultistepScheduler(
        num_train_timesteps=1000,
        algorithm_type="dpmsolver++",
        solver_order=2,
        prediction_type="flow_prediction",
        use_flow_sigmas=True,
        flow_shift=cfg.flow_shift,
    )


def make_pipeline(
    vae: AutoencoderDC,
    text_encoder: Gemma2Model,
    tokenizer: GemmaTokenizer,
    transformer: SanaTransformer2DModel,
    cfg: ModelConfig,
) -> SanaPipeline:
    pipe = SanaPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=vae,
        transformer=transformer,
        scheduler=build_scheduler(cfg),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


# --------------------------------------------------------------------------- text conditioning


@dataclass(frozen=True)
class PromptGroup:
    """Tokenised prompts cut after their longest real token (Gemma is causal and they are
    right-padded, so the positions before it do not depend on what follows), and which of those
    positions SanaPipeline's BOS + last-299 selection keeps."""

    ids: torch.Tensor
    mask: torch.Tensor
    keep: tuple[int, ...]

    @classmethod
    def of(cls, ids: torch.Tensor, mask: torch.Tensor) -> PromptGroup:
        length, real = ids.shape[1], int(mask.sum(1).max())
        keep = tuple(k for k in (0, *range(length - MAX_SEQUENCE_LENGTH + 1, length)) if k < real)
        return cls(ids[:, :real], mask[:, :real], keep)

    def to(self, device: torch.device) -> PromptGroup:
        return PromptGroup(self.ids.to(device), self.mask.to(device), self.keep)


def prompt_table(tokenizer: GemmaTokenizer) -> list[PromptGroup]:
    """The conditioning rows: captions with the instruction (rows 0..23), without (PLAIN + class),
    and the empty negative prompt (EMPTY), which the pipeline encodes without the instruction."""
    return [
        PromptGroup.of(*gemma_tokens(tokenizer, list(CAPTIONS), instruction=True)),
        PromptGroup.of(*gemma_tokens(tokenizer, list(CAPTIONS), instruction=False)),
        PromptGroup.of(*gemma_tokens(tokenizer, [""], instruction=False)),
    ]


def encode_table(
    text_encoder: Gemma2Model, groups: list[PromptGroup]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Embeddings (rows, K, hidden) and mask (rows, K) of every row: the positions of SanaPipeline's
    selection that its mask keeps (right padding: they lead), zero-padded to the longest row."""
    embeds, masks = [], []
    for g in groups:
        hidden = text_encoder(
            input_ids=g.ids, attention_mask=g.mask, use_cache=False
        ).last_hidden_state
        embeds.append(hidden[:, list(g.keep)])
        masks.append(g.mask[:, list(g.keep)])
    width = max(e.shape[1] for e in embeds)
    embeds = [F.pad(e, (0, 0, 0, width - e.shape[1])) for e in embeds]
    masks = [F.pad(m, (0, width - m.shape[1])) for m in masks]
    return torch.cat(embeds), torch.cat(masks)


# --------------------------------------------------------------------------- helpers


def shift_sigmas(u: torch.Tensor, shift: float) -> torch.Tensor:
    """The resolution shift of SANA's flow sigmas (DPMSolverMultistep's flow_shift)."""
    return shift * u / (1 + (shift - 1) * u)


@torch.no_grad()
def evaluate(
    pipe: SanaPipeline,
    samples: int,
    size: int,
    steps: int = EVAL_STEPS,
    instruction: bool = True,
) -> tuple[dict[str, float], np.ndarray]:
    """Generate one image per class (cycling) with SanaPipeline and score them with the checker."""
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
        use_resolution_binning=False,
        complex_human_instruction=list(COMPLEX_HUMAN_INSTRUCTION) if instruction else None,
    ).images
    return score(images, ids), images


# --------------------------------------------------------------------------- training


class Trainer(LatentTrainer):
    final_stage, denoiser_key, ema_key, vae_loss_name = "dit", "transformer", "ema_dit", "L1"

    def __init__(self, cfg: TrainConfig) -> None:
        super().__init__(cfg, build_tokenizer, build_models)
        self.prompts = [g.to(self.device) for g in prompt_table(self.tokenizer)]
        self.load_pool()
        self.resume()

    # -- stage a: DC-AE

    def vae_loss(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        with autocast(self.device):
            z = self.vae.encode(x).latent
            recon = self.vae.decode(z).sample
        l1 = F.l1_loss(recon.float(), x)
        square = z.float().pow(2).mean()
        return l1 + self.cfg.latent_weight * square, l1, {"latent rms": square.detach().sqrt()}

    @torch.no_grad()
    def encode_pool(self) -> torch.Tensor:
        """DC-AE latents of every pool image (deterministic): stage b never runs the encoder."""
        self.vae.eval()
        return torch.cat(
            [
                self.vae.encode(
                    self.images(torch.arange(lo, min(lo + 1024, len(self.pool))))
                ).latent
                for lo in range(0, len(self.pool), 1024)
            ]
        )

    def latent_scale(self, latents: torch.Tensor) -> float:
        return float(1.0 / latents.std())

    @torch.no_grad()
    def vae_report(self, latents: torch.Tensor) -> None:
        """Reconstruction error and the checker's accuracy on reconstructions (DC-AE sanity)."""
        n = min(240, len(self.pool))
        recon = self.vae.decode(latents[:n]).sample
        x = self.images(torch.arange(n))
        right = sum(
            check(image) == class_names(int(c))[::-1]
            for image, c in zip(pixels_to_image(recon).cpu(), self.pool_ids[:n], strict=True)
        )
        print(
            f"vae  recon L1 {F.l1_loss(recon, x).item():.4f}  checker on recon {right / n:.1%}  "
            f"latent mean {latents.mean().item():.3f}, std {latents.std().item():.3f} "
            f"-> scaling_factor {self.scaling_factor:.4f}",
            flush=True,
        )

    # -- stage b: DiT + text encoder

    def conditions(self, text_encoder: Gemma2Model) -> tuple[torch.Tensor, torch.Tensor]:
        """Embeddings and masks of all conditioning rows (see encode_table)."""
        return encode_table(text_encoder, self.prompts)

    def denoiser_loss(self, idx: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        b = idx.shape[0]
        noise = torch.randn(b, *latents.shape[1:], generator=self.gen).to(self.device)
        if self.mcfg.timesteps == "logit_normal":
            u = torch.sigmoid(torch.randn(b, generator=self.gen))
        else:
            u = torch.rand(b, generator=self.gen)
        sigma = shift_sigmas(u, self.mcfg.flow_shift).to(self.device)
        drop = (torch.rand(b, generator=self.gen) < self.cfg.cfg_drop).to(self.device)
        plain = (torch.rand(b, generator=self.gen) >= self.cfg.instruction_frac).to(self.device)
        idx = idx.to(self.device)
        x0 = latents[idx] * self.scaling_factor
        s = sigma.view(b, 1, 1, 1)
        noisy = (1 - s) * x0 + s * noise
        target = noise - x0
        rows = torch.where(drop, EMPTY, self.pool_ids[idx] + PLAIN * plain.long())
        with autocast(self.device):
            context, mask = self.conditions(self.text_encoder)
            pred = self.denoiser(
                noisy,
                encoder_hidden_states=context[rows],
                encoder_attention_mask=mask[rows],
                timestep=sigma * 1000,  # SanaPipeline: the scheduler's timesteps = 1000 sigma
            ).sample
        return F.mse_loss(pred.float(), target)

    def pipeline(self) -> SanaPipeline:
        return make_pipeline(
            self.vae, self.ema_text.module, self.tokenizer, self.ema_denoiser.module, self.mcfg
        )

    def eval_and_log(self, step: int) -> dict[str, float]:
        cfg = self.cfg
        pipe = self.pipeline()
        acc, images = evaluate(pipe, cfg.eval_samples, self.mcfg.size, cfg.eval_steps)
        plain, _ = evaluate(pipe, cfg.eval_samples, self.mcfg.size, cfg.eval_steps, False)
        print(
            f"eval step {step:6d}  checker on {cfg.eval_samples} samples (DPM++ {cfg.eval_steps}, "
            f"cfg {EVAL_GUIDANCE}): colour {acc['colour']:.1%}  shape {acc['shape']:.1%}  "
            f"both {acc['both']:.1%}  (without the instruction: both {plain['both']:.1%})",
            flush=True,
        )
        save_grid(images, self.cfg.ckpt_path.parent / f"samples_{step:06d}.png")
        return acc

    def export(self) -> None:
        """Save the EMA pipeline (fp32 safetensors) as a SanaPipeline folder."""
        self.pipeline().save_pretrained(self.cfg.out, safe_serialization=True)


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    return parse_config(
        TrainConfig, argv, "Train the tiny SANA-family shapes model.",
        help={**COMMON_HELP, "out": "exported SanaPipeline folder", "vae_steps": "DC-AE steps",
              "steps": "DiT/text-encoder steps",
              "instruction_frac": "share of captions encoded with the complex human instruction",
              "eval_steps": "DPM-Solver steps of samples", "dit_width": "a multiple of 32"},
        choices={"timesteps": ("logit_normal", "uniform")},
    )  # fmt: skip


def main(argv: list[str] | None = None) -> Path | None:
    return train(Trainer, parse_args(argv))


if __name__ == "__main__":
    main()
