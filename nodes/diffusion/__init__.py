"""Diffusion math as nodes: schedules, plans, noise, solver steps, guidance, samplers."""

from . import (
         cuda_graphs,
         guidance,
         ideal_denoiser,
         noise_nodes,
         sampler,
         schedule_nodes,
         step_nodes,
)

NODES = [*schedule_nodes.NODES, *noise_nodes.NODES, *step_nodes.NODES, *guidance.NODES,
         *sampler.NODES, *ideal_denoiser.NODES, *cuda_graphs.NODES]
