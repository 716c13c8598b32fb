"""Flow-matching plans of SD3 and FLUX against FlowMatchEulerDiscreteScheduler, bit for bit.

SD3 shifts statically (the schedule's shift); FLUX shifts dynamically by a resolution-dependent
mu (`use_dynamic_shifting`, `set_timesteps(mu=...)`) of exponential or linear type, and a plan
may be stretched so its last sigma is `shift_terminal`. LG_FlowShift computes FLUX's mu from a
latent, as its pipeline's `calculate_shift` does from the packed 2x2 patches.
"""

from __future__ import annotations

import itertools

import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler
from diffusers.pipelines.flux.pipeline_flux import calculate_shift
from graph_helpers import Graph
from latentgraph import Executor
from latentgraph.executor import InputError, NodeFailed
from latentgraph.nodes.diffusion.math import ArgumentError, Schedule
from latentgraph.nodes.diffusion.schedule_nodes import flux_mu
from latentgraph.nodes.diffusion.solvers import make_plan
from test_dmath_steps import assert_records_equal, diffusers_loop, initial_noise, our_loop

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

STEP_COUNTS = (1, 2, 4, 13, 28, 50)
MUS = (-0.4, 0.5, 0.8, 1.15, 2.7)
TERMINALS = (None, 0.05, 0.3)
EXECUTOR = Executor(device="cpu")


def flow_schedule(shift: float = 1.0) -> Schedule:
    return Schedule(beta_schedule="flow", prediction_type="flow_prediction", shift=shift)


def scheduler_for(steps, *, shift=1.0, time_shift="static", mu=None, shift_terminal=None):
    dynamic = time_shift != "static"
    scheduler = FlowMatchEulerDiscreteScheduler(
        # FLUX's config keeps shift=3.0 beside the dynamic shift, which then ignores it.
        shift=3.0 if dynamic else shift,
        use_dynamic_shifting=dynamic,
        time_shift_type=time_shift if dynamic else "exponential",
        shift_terminal=shift_terminal,
    )
    scheduler.set_timesteps(steps, mu=mu)
    return scheduler


def assert_plan_matches(plan, scheduler):
    for ours, theirs in ((plan.sigmas, scheduler.sigmas), (plan.timesteps, scheduler.timesteps)):
        assert ours.dtype == theirs.dtype
        assert torch.equal(ours, theirs), (ours - theirs).abs().max().item()


def _terminal_cases(steps):
    return [t for t in TERMINALS if t is None or steps > 1]  # one step has sigma 1 only


@pytest.mark.parametrize(
    ("steps", "shift", "shift_terminal"),
    [
        (steps, shift, terminal)
        for steps, shift in itertools.product(STEP_COUNTS, (1.0, 3.0, 6.0))
        for terminal in _terminal_cases(steps)
    ],
)
def test_static_shift_plan_equals_set_timesteps(steps, shift, shift_terminal):
    plan = make_plan(flow_schedule(shift), steps, "flow_euler", shift_terminal=shift_terminal)
    assert_plan_matches(plan, scheduler_for(steps, shift=shift, shift_terminal=shift_terminal))


@pytest.mark.parametrize(
    ("steps", "time_shift", "mu", "shift_terminal"),
    [
        (steps, kind, mu, terminal)
        for steps, kind, mu in itertools.product(STEP_COUNTS, ("exponential", "linear"), MUS)
        if kind == "exponential" or mu > 0
        for terminal in _terminal_cases(steps)
    ],
)
def test_dynamic_shift_plan_equals_set_timesteps(steps, time_shift, mu, shift_terminal):
    plan = make_plan(
        flow_schedule(), steps, "flow_euler", time_shift=time_shift, mu=mu, shift_terminal=shift_terminal
    )
    reference = scheduler_for(steps, time_shift=time_shift, mu=mu, shift_terminal=shift_terminal)
    assert_plan_matches(plan, reference)
    if shift_terminal is not None:
        assert plan.sigmas[-2] == torch.tensor(shift_terminal, dtype=torch.float32)


@pytest.mark.parametrize("steps", (1, 4, 28))
@pytest.mark.parametrize(("time_shift", "mu", "shift_terminal"), [
    ("exponential", 1.15, None),
    ("exponential", 0.5, 0.1),
    ("linear", 0.8, None),
])
def test_dynamic_shift_loop_is_bitwise_equal(model, steps, time_shift, mu, shift_terminal):
    if shift_terminal is not None and steps == 1:  # diffusers divides by zero here (NaN sigmas)
        with pytest.raises(ArgumentError, match="one step") as refused:
            make_plan(flow_schedule(), steps, "flow_euler", time_shift=time_shift, mu=mu,
                      shift_terminal=shift_terminal)
        assert refused.value.argument == "shift_terminal"
        return
    plan = make_plan(
        flow_schedule(), steps, "flow_euler", time_shift=time_shift, mu=mu, shift_terminal=shift_terminal
    )
    scheduler = scheduler_for(steps, time_shift=time_shift, mu=mu, shift_terminal=shift_terminal)
    x = initial_noise(plan, scheduler)
    assert_records_equal(our_loop(plan, x, model), diffusers_loop(scheduler, "flow_euler", x, model))


@pytest.mark.parametrize(("options", "schedule", "solver", "argument"), [
    ({"time_shift": "exponential"}, flow_schedule(), "flow_euler", "mu"),
    ({"time_shift": "exponential", "mu": float("nan")}, flow_schedule(), "flow_euler", "mu"),
    ({"time_shift": "linear", "mu": 0.0}, flow_schedule(), "flow_euler", "mu"),
    ({"mu": 1.0}, flow_schedule(), "flow_euler", "mu"),
    ({"time_shift": "exponential", "mu": 1.0}, flow_schedule(3.0), "flow_euler", "time_shift"),
    ({"time_shift": "cubic", "mu": 1.0}, flow_schedule(), "flow_euler", "time_shift"),
    ({"shift_terminal": 1.0}, flow_schedule(), "flow_euler", "shift_terminal"),
    ({"shift_terminal": 0.0}, flow_schedule(), "flow_euler", "shift_terminal"),
    ({"time_shift": "exponential", "mu": 1.0}, flow_schedule(), "flow_dpmpp_2m", "time_shift"),
    ({"shift_terminal": 0.1}, flow_schedule(), "flow_dpmpp_2m", "shift_terminal"),
    ({"mu": 1.0}, flow_schedule(), "flow_dpmpp_2m", "mu"),
])
def test_flow_options_are_checked(options, schedule, solver, argument):
    with pytest.raises(ArgumentError) as info:
        make_plan(schedule, 10, solver, **options)
    assert info.value.argument == argument


def test_one_step_cannot_be_stretched():
    with pytest.raises(ArgumentError) as info:
        make_plan(flow_schedule(), 1, "flow_euler", shift_terminal=0.1)
    assert info.value.argument == "shift_terminal"


@pytest.mark.parametrize("image_seq_len", (16, 256, 1024, 4096, 16384))
def test_flux_mu_equals_calculate_shift(image_seq_len):
    assert flux_mu(image_seq_len) == calculate_shift(image_seq_len)
    assert flux_mu(image_seq_len, 256, 8192, 0.3, 1.2) == calculate_shift(image_seq_len, 256, 8192, 0.3, 1.2)


def _flow_plan_graph(height, width, steps=8, **shift_inputs):
    g = Graph()
    image = g.node("LG_EmptyImage", id="empty", width=width, height=height)
    latent = g.node("LG_ImageToPixels", id="latent", image=image)
    schedule = g.node("LG_NoiseSchedule", id="schedule", kind="flow", prediction_type="flow_prediction")
    mu = g.node("LG_FlowShift", id="mu", latent=latent, **shift_inputs)
    g.node("LG_SamplingPlan", id="plan", schedule=schedule, steps=steps, solver="flow_euler",
           time_shift="exponential", mu=mu)
    return g.build()


@pytest.mark.parametrize(("height", "width"), [(64, 64), (128, 96), (32, 256)])
def test_flow_shift_node_feeds_the_plan_as_flux_does(height, width):
    result = EXECUTOR.run(_flow_plan_graph(height, width), targets=["mu", "plan"])
    mu = result.outputs["mu"][0]
    # FluxPipeline: image_seq_len is the number of packed 2x2 latent patches.
    assert mu == calculate_shift((height // 2) * (width // 2))
    plan = result.outputs["plan"][0]
    assert_plan_matches(plan, scheduler_for(8, time_shift="exponential", mu=mu))


def test_flow_shift_refuses_a_latent_of_partial_patches():
    with pytest.raises(NodeFailed) as info:
        EXECUTOR.run(_flow_plan_graph(64, 64, patch_size=3), targets=["mu"])
    assert isinstance(info.value.error, InputError) and info.value.input == "patch_size"


def test_plan_node_names_a_missing_dynamic_shift_input():
    g = Graph()
    schedule = g.node("LG_NoiseSchedule", id="schedule", kind="flow", prediction_type="flow_prediction",
                      shift=3.0)
    g.node("LG_SamplingPlan", id="plan", schedule=schedule, solver="flow_euler", time_shift="linear", mu=1.0)
    with pytest.raises(NodeFailed) as info:
        EXECUTOR.run(g.build(), targets=["plan"])
    assert info.value.input == "time_shift"
