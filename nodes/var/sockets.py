"""Socket types of the VAR nodes: our own objects, named so they never meet a ComfyUI object.

VQVAE and VAR_MODEL are the model-layer modules themselves (``nn.Module``, so the executor keeps
them in its model tier). TOKEN_MAPS is a :class:`~.model.TokenMaps`: per-scale token ids and the
cumulative latent after each scale. VAR_STATE is an immutable :class:`~.model.GenerationState`,
which is what lets every scale of a generation be its own cached node.
"""

from __future__ import annotations

from typing import Annotated

from ...executor.types import Socket
from .model import VAR, VQVAE, GenerationState, TokenMaps

VQVAESocket = Annotated[VQVAE, Socket("VQVAE")]
VARModelSocket = Annotated[VAR, Socket("VAR_MODEL")]
TokenMapsSocket = Annotated[TokenMaps, Socket("TOKEN_MAPS")]
VARStateSocket = Annotated[GenerationState, Socket("VAR_STATE")]
