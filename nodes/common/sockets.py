"""Socket types of the model nodes (our own objects; DENOISER and TEXT_EMBEDS are diffusion's)."""

from __future__ import annotations

from typing import Annotated, Any

from ...executor.types import Socket

TextEncoderSocket = Annotated[Any, Socket("TEXT_ENCODER")]
AutoencoderSocket = Annotated[Any, Socket("AUTOENCODER")]
