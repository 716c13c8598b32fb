"""SANA's parts as graph objects: the linear-attention DiT as a DENOISER, Gemma-2 as a
TEXT_ENCODER and DC-AE as an AUTOENCODER, each driven exactly as SanaPipeline drives it."""

from __future__ import annotations

from typing import Any

import torch

from ..common.models import Autoencoder, HoldsModules, TextEncoder
from ..common.schedules import TrainingSchedule
from ..diffusion.denoiser import Denoiser, TextEmbeds

# SanaPipeline's default `complex_human_instruction` (NVlabs' Sana_1600M_app.yaml): prepended to
# the prompt, never to the negative prompt.
COMPLEX_HUMAN_INSTRUCTION = (
    "Given a user prompt, generate an 'Enhanced prompt' that provides detailed visual descriptions suitable for image generation. Evaluate the level of detail in the user prompt:",
    "- If the prompt is simple, focus on adding specifics about colors, shapes, sizes, textures, and spatial relationships to create vivid and concrete scenes.",
    "- If the prompt is already detailed, refine and enhance the existing details slightly without overcomplicating.",
    "Here are examples of how to transform or refine prompts:",
    "- User Prompt: A cat sleeping -> Enhanced: A small, fluffy white cat curled up in a round shape, sleeping peacefully on a warm sunny windowsill, surrounded by pots of blooming red flowers.",
    "- User Prompt: A busy city street -> Enhanced: A bustling city street scene at dusk, featuring glowing street lamps, a diverse crowd of people in colorful clothing, and a double-decker bus passing by towering glass skyscrapers.",
    "Please generate only the enhanced description for the prompt below and avoid including any additional commentary or evaluations:",
    "User Prompt: ",
)
MAX_SEQUENCE_LENGTH = 300


def gemma_tokens(tokenizer: Any, texts: list[str], instruction: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(input ids, attention mask) as SanaPipeline._get_gemma_prompt_embeds makes them: prompts
    lower-cased and stripped, the complex human instruction prepended when asked, right-padded to
    300 tokens plus the instruction's length."""
    tokenizer.padding_side = "right"
    texts = [t.lower().strip() for t in texts]
    max_length = MAX_SEQUENCE_LENGTH
    if instruction:
        chi = "\n".join(COMPLEX_HUMAN_INSTRUCTION)
        texts = [chi + t for t in texts]
        max_length += len(tokenizer.encode(chi)) - 2
    tokens = tokenizer(
        texts,
        padding="max_length",
        max_length=max_length,
        truncation=True,
        add_special_tokens=True,
        return_tensors="pt",
    )
    return tokens.input_ids, tokens.attention_mask


class GemmaTextEncoder(TextEncoder):
    """Gemma-2 as SanaPipeline.encode_prompt uses it (SANA paper, section 3.1): the tokens of
    `gemma_tokens`, the last hidden state, then the BOS token and the last 299 positions kept,
    with the attention mask for the DiT's cross-attention."""

    family = "sana"
    _modules = ("model",)

    def __init__(self, model: torch.nn.Module, tokenizer: Any) -> None:
        self.model = model
        self.tokenizer = tokenizer

    def encode(self, texts: list[str], instruction: bool = True) -> TextEmbeds:
        input_ids, attention_mask = gemma_tokens(self.tokenizer, texts, instruction)
        device, dtype = self.placement
        mask = attention_mask.to(device)
        with torch.no_grad():
            hidden = self.model(input_ids.to(device), attention_mask=mask)[0].to(dtype)
        keep = [0, *range(-MAX_SEQUENCE_LENGTH + 1, 0)]
        return TextEmbeds(hidden[:, keep], mask[:, keep])


class SanaDenoiser(Denoiser, HoldsModules):
    """SanaTransformer2DModel predicting the flow velocity. As in SanaPipeline: the timestep is
    broadcast over the batch and multiplied by ``timestep_scale``, inputs are cast to the DiT's
    dtype, and the prediction comes back as float32 (guidance then runs in float32)."""

    _modules = ("transformer",)

    def __init__(self, transformer: Any, training: TrainingSchedule) -> None:
        self.transformer = transformer
        self.schedule = training.schedule
        self.spacing = training.spacing
        self.steps_offset = training.steps_offset
        config = transformer.config
        self.timestep_scale = config.timestep_scale
        # Models trained with a learned variance output twice the channels; the pipeline keeps the
        # first half.
        self.learned_sigma = config.out_channels // 2 == config.in_channels

    def forward(
        self, sample: torch.Tensor, timestep: torch.Tensor, context: TextEmbeds | None
    ) -> torch.Tensor:
        if context is None:
            raise ValueError("the SANA DiT is conditioned on text: connect a positive prompt")
        device, dtype = self.placement
        t = timestep.to(device).expand(sample.shape[0]) * self.timestep_scale
        mask = context.mask.to(device) if context.mask is not None else None
        with torch.no_grad():
            out = self.transformer(
                sample.to(device, dtype),
                encoder_hidden_states=context.embeddings.to(device, dtype),
                encoder_attention_mask=mask,
                timestep=t,
                return_dict=False,
            )[0]
        out = out.float()
        return out.chunk(2, dim=1)[0] if self.learned_sigma else out


class DCAutoencoder(Autoencoder):
    """AutoencoderDC (deep compression autoencoder): deterministic encoding; SANA keeps its
    latents in float32 whatever the autoencoder's dtype."""

    kind = "dc-ae"
    _modules = ("vae",)
    stochastic = False

    def __init__(self, vae: Any) -> None:
        self.vae = vae
        config = vae.config
        self.latent_channels = int(config.latent_channels)
        self.scaling_factor = float(config.scaling_factor)
        self.downsample = int(vae.spatial_compression_ratio)
        self.latent_dtype = torch.float32

    def encode(
        self, pixels: torch.Tensor, generator: torch.Generator | None, sample: bool = True
    ) -> torch.Tensor:
        with torch.no_grad():
            z = self.vae.encode(pixels.to(*self.placement), return_dict=False)[0]
        return (z * self.scaling_factor).to(self.latent_dtype)

    def decode(self, latents: torch.Tensor, tiled: bool = False) -> torch.Tensor:
        # SanaPipeline casts to the autoencoder's dtype first, then divides.
        z = latents.to(*self.placement) / self.scaling_factor
        with torch.no_grad():
            if tiled:
                return self.vae.tiled_decode(z, return_dict=False)[0]
            return self.vae.decode(z, return_dict=False)[0]
