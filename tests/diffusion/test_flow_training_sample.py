"""LG_FlowTrainingSample against diffusers' SD3 training recipe, bit for bit: u from
compute_density_for_timestep_sampling with the same CPU generator, the timestep at index
floor(u * N) of FlowMatchEulerDiscreteScheduler's training grid, its sigma, the noisy input
(1 - sigma) x0 + sigma noise and the flow-matching target noise - x0."""

from __future__ import annotations

import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler
from diffusers.training_utils import compute_density_for_timestep_sampling
from graph_helpers import Graph
from latentgraph import Executor
from latentgraph.executor import InputError, NodeFailed

EXECUTOR = Executor(device="cpu")


def _graph(*, kind="flow", shift=3.0, seed=11, **inputs):
    g = Graph()
    image = g.node("LG_EmptyImage", id="empty", width=16, height=8, batch_size=6)
    latent = g.node("LG_ImageToPixels", id="latent", image=image)
    x0 = g.node("LG_Noise", id="x0", like=latent, seed=1)
    noise = g.node("LG_Noise", id="noise", like=latent, seed=2)
    prediction = "flow_prediction" if kind == "flow" else "epsilon"
    schedule = g.node("LG_NoiseSchedule", id="schedule", kind=kind, prediction_type=prediction,
                      **({"shift": shift} if kind == "flow" else {}))
    g.node("LG_FlowTrainingSample", id="train", sample=x0, noise=noise, schedule=schedule, seed=seed,
           **inputs)
    return g.build()


@pytest.mark.parametrize(("weighting", "options", "shift"), [
    ("logit_normal", {"logit_mean": 0.0, "logit_std": 1.0}, 3.0),
    ("logit_normal", {"logit_mean": 0.5, "logit_std": 0.7}, 1.0),
    ("mode", {"mode_scale": 1.29}, 3.0),
    ("uniform", {}, 1.0),
])
def test_training_sample_equals_the_sd3_training_recipe(weighting, options, shift):
    result = EXECUTOR.run(_graph(shift=shift, weighting=weighting, **options),
                          targets=["x0", "noise", "train"])
    x0 = result.outputs["x0"][0]["samples"]
    noise = result.outputs["noise"][0]["samples"]
    noisy, target, timesteps, _ = result.outputs["train"]

    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=shift)
    u = compute_density_for_timestep_sampling(
        weighting, x0.shape[0], logit_mean=options.get("logit_mean"), logit_std=options.get("logit_std"),
        mode_scale=options.get("mode_scale"), generator=torch.Generator().manual_seed(11))
    indices = (u * scheduler.config.num_train_timesteps).long()
    expected_t = scheduler.timesteps[indices]
    # the scripts' get_sigmas: the sigma at each timestep's place in the grid
    places = [(scheduler.timesteps == t).nonzero().item() for t in expected_t]
    sigma = scheduler.sigmas[places].flatten().view(-1, 1, 1, 1)

    assert torch.equal(timesteps, expected_t)
    assert torch.equal(noisy["samples"], (1.0 - sigma) * x0 + sigma * noise)
    assert torch.equal(target["samples"], noise - x0)


def test_training_sample_continues_a_random_stream():
    first = EXECUTOR.run(_graph(seed=5), targets=["train"]).outputs["train"]
    again = EXECUTOR.run(_graph(seed=6), targets=["train"]).outputs["train"]
    assert not torch.equal(first[2], again[2])
    gen = torch.Generator().manual_seed(5)
    torch.normal(0.0, 1.0, size=(6,), generator=gen)
    assert torch.equal(first[3], gen.get_state())


def test_training_sample_refuses_a_beta_schedule():
    with pytest.raises(NodeFailed) as info:
        EXECUTOR.run(_graph(kind="scaled_linear"), targets=["train"])
    assert isinstance(info.value.error, InputError) and info.value.input == "schedule"
    assert "'flow' schedule" in str(info.value)
