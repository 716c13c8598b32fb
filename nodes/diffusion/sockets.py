"""Socket types of the diffusion nodes (our own objects, so they never meet ComfyUI's)."""

from __future__ import annotations

from typing import Annotated, Any

import torch

from ...executor.types import Socket
from .denoiser import DenoiserProtocol
from .math import DPMSolverState, SamplingPlan, Schedule

ScheduleSocket = Annotated[Schedule, Socket("SCHEDULE")]
PlanSocket = Annotated[SamplingPlan, Socket("SAMPLING_PLAN")]
SolverStateSocket = Annotated[DPMSolverState, Socket("SOLVER_STATE")]
# A CPU torch.Generator's state: stochastic nodes continue one random stream, as a pipeline's
# single generator does (initial noise first, then each step's noise).
RngSocket = Annotated[torch.Tensor, Socket("RNG_STATE")]
DenoiserSocket = Annotated[DenoiserProtocol, Socket("DENOISER")]
TextEmbedsSocket = Annotated[Any, Socket("TEXT_EMBEDS")]
