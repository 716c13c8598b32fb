"""The solver table: one row per solver, checked against its nodes, read by everything else."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest
from denoiser_for_tests import make_denoiser
from latentgraph.nodes import default_registry
from latentgraph.nodes.diffusion.math import SANA_SCHEDULE, SD15_SCHEDULE
from latentgraph.nodes.diffusion.math.plan import euler_plan
from latentgraph.nodes.diffusion.sampler import sampling_graph
from latentgraph.nodes.diffusion.solvers import (
    SOLVER_NAMES,
    SOLVER_TABLE,
    SOLVERS,
    SolverSpec,
    make_plan,
)
from latentgraph.nodes.diffusion.solvers.heun import (
    HeunCorrection,
    HeunStep,
    heun_correction,
    heun_step,
)
from latentgraph.nodes.diffusion.step_nodes import DPMSolverStep, EulerAncestralStep, EulerStep

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def schedule_for(spec: SolverSpec):
    return SANA_SCHEDULE if spec.flow else SD15_SCHEDULE


def test_every_row_names_registered_nodes_and_fills_the_solver_enums():
    registry = default_registry()
    for spec in SOLVER_TABLE:
        for node in spec.nodes:
            assert registry[node.class_type] is node
    for class_type in ("LG_SamplingPlan", "LG_Sampler"):
        assert registry[class_type].spec.inputs["solver"].socket.choices == SOLVER_NAMES


@pytest.mark.parametrize("spec", SOLVER_TABLE, ids=lambda spec: spec.name)
def test_a_plan_carries_its_rows_facts(spec):
    plan = make_plan(schedule_for(spec), 6, spec.name, steps_offset=1)
    assert plan.solver == spec.name and plan.parameterization == spec.parameterization
    assert plan.steppers == spec.steppers


@pytest.mark.parametrize("steps", [1, 4])
@pytest.mark.parametrize("spec", SOLVER_TABLE, ids=lambda spec: spec.name)
def test_the_sampler_expansion_follows_the_row(spec, steps):
    x = SimpleNamespace(
        solver=spec.name,
        steps=steps,
        denoise=1.0,
        cfg=3.0,
        negative=object(),
        rng=None,
        schedule=None,
        guidance=None,
        denoiser=make_denoiser(schedule_for(spec)),
    )
    nodes, ((last, _),) = sampling_graph(x)
    kinds = [node["class_type"] for node in nodes.values()]
    calls = steps * spec.model_calls - (spec.model_calls - 1)  # the last step makes one call
    assert kinds.count("LG_Denoise") == kinds.count("LG_CFGCombine") == calls
    assert kinds.count("LG_ScaleModelInput") == (calls if spec.scales_model_input else 0)
    assert kinds.count(spec.step_node.class_type) == steps
    if spec.correction_node is not None:
        assert kinds.count(spec.correction_node.class_type) == steps - 1
    steps_in = [nodes[f"step{i}"]["inputs"] for i in range(steps)]
    assert all(("rng" in inputs) == spec.stochastic for inputs in steps_in)
    assert all(
        ("state" in inputs) == (spec.stateful and i > 0) for i, inputs in enumerate(steps_in)
    )
    assert last == (f"step{steps - 1}")


def row(**changes):
    heun = SOLVERS["heun"]
    return dataclasses.replace(heun, **changes)


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"step_node": EulerStep}, "runs euler_step, not heun_step"),
        (
            {"model_calls": 1},
            "correction and correction_node are given exactly when model_calls is 2",
        ),
        ({"correction_node": HeunStep}, "runs heun_step, not heun_correction"),
        ({"stochastic": True}, "stochastic=True, but step_node lacks an rng input"),
        ({"stateful": True}, "stateful=True"),
        ({"parameterization": "flow"}, "'flow' parameterization goes with flow_prediction"),
        (
            {"prediction_types": ("epsilon", "flow_prediction")},
            "a flow solver takes flow_prediction only",
        ),
        ({"plan_options": ("karras",)}, "plan_options must be some of"),
        ({"name": "heun 2"}, "name must be an identifier"),
    ],
)
def test_a_row_that_does_not_fit_its_nodes_fails_when_made(changes, problem):
    with pytest.raises(TypeError, match=problem):
        row(**changes)


def test_rows_built_from_existing_pieces_are_valid():
    """What the README's "Adding a solver" asks for: a row of a plan builder, a step function and
    its node. (A new solver adds its row to SOLVER_TABLE, where LG_Sampler's enum picks it up.)"""
    spec = SolverSpec(
        name="heun_again",
        build_plan=euler_plan,
        parameterization="ve",
        step=heun_step,
        step_node=HeunStep,
        model_calls=2,
        correction=heun_correction,
        correction_node=HeunCorrection,
    )
    assert spec.steppers == (heun_step, heun_correction) and spec.scales_model_input
    with pytest.raises(TypeError, match="stochastic=False, but step_node has an rng input"):
        SolverSpec(
            name="x",
            build_plan=euler_plan,
            parameterization="ve",
            step=EulerAncestralStep.step_function,
            step_node=EulerAncestralStep,
        )
    with pytest.raises(TypeError, match="stateful=False"):
        SolverSpec(
            name="x",
            build_plan=euler_plan,
            parameterization="vp",
            step=DPMSolverStep.step_function,
            step_node=DPMSolverStep,
        )


@pytest.mark.parametrize(
    ("solver", "message"),
    [
        (
            "heun",
            "final_sigma='sigma_min' only applies to the 'euler', 'dpmpp_2m' and 'dpmpp_2m_sde' solvers",
        ),
        ("flow_dpmpp_2m_sde", "solver 'flow_dpmpp_2m_sde' needs a 'flow' schedule"),
    ],
)
def test_make_plan_reads_options_and_schedule_family_from_the_row(solver, message):
    with pytest.raises(ValueError, match=message):
        make_plan(SD15_SCHEDULE, 10, solver, final_sigma="sigma_min")
