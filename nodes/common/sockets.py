"""Socket types of the model nodes (our own objects; DENOISER and TEXT_EMBEDS are diffusion's),
typed by the interfaces their objects satisfy."""

from __future__ import annotations

from typing import Annotated

from ...executor.types import Socket
from .interfaces import AutoencoderProtocol, TextEncoderProtocol

TextEncoderSocket = Annotated[TextEncoderProtocol, Socket("TEXT_ENCODER")]
AutoencoderSocket = Annotated[AutoencoderProtocol, Socket("AUTOENCODER")]
