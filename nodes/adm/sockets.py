"""Socket types of the ADM nodes (the diffusion model travels as a DENOISER)."""

from __future__ import annotations

from typing import Annotated

from ...executor.types import Socket
from .models import ADMClassifier

ClassifierSocket = Annotated[ADMClassifier, Socket("ADM_CLASSIFIER")]
