"""Diffusion math as nodes: schedules, plans, noise, solver steps, guidance, samplers."""

from . import (
         cuda_graphs,
         guidance,
         ideal_denoiser,
         noise_nodes,
         sampler,
         schedule_nodes,
         solvers,
         step_nodes,
         training_nodes,
)

# The step nodes come from the solver table (solvers/), which names the node of every solver.
NODES = [*schedule_nodes.NODES, *noise_nodes.NODES, *solvers.NODES, *step_nodes.NODES, *guidance.NODES,
         *sampler.NODES, *ideal_denoiser.NODES, *cuda_graphs.NODES, *training_nodes.NODES]
