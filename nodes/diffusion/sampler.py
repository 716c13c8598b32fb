"""LG_Sampler: one node in the editor, a chain of cached step nodes at run time.

It expands into  noise -> (scale input -> model call -> CFG combine -> solver step) x N,
so every step is an ordinary node: cached by signature, reported with progress and a preview,
and shared with a hand-unrolled graph of the same steps. What the chain holds comes from the
solver's row in the solver table: the step node, whether the model input is rescaled, the
random stream and multistep state threaded from step to step, and for a two-evaluation solver
(Heun) a second  scale input -> model call -> CFG combine -> correction  per step.
"""

from __future__ import annotations

from typing import Annotated, Any, Optional

from ...executor.graph_builder import GraphBuilder, NodeRef
from ...executor.node import Expand, Input, InputError, Inputs, Node, Outputs, ParentInput
from ...executor.types import Latent, Socket
from .math import ArgumentError
from .noise_nodes import SEED_MAX, samples_of
from .schedule_nodes import checked_plan
from .sockets import DenoiserSocket, RngSocket, ScheduleSocket, TextEmbedsSocket
from .solvers import SOLVERS, Solver, SolverSpec

CATEGORY = "latentgraph/sampling"
# A guidance term added after CFG (STEP_GUIDANCE): an object whose ``step_node`` is the class_type
# of the node that adds it, which takes guidance, denoiser, sample, plan, step, positive, guided
# (the CFG output) and cond, and outputs the guided prediction.
StepGuidanceSocket = Annotated[Any, Socket("STEP_GUIDANCE")]


class DenoiserSchedule(Node):
    """The noise schedule a denoiser was trained with (from its checkpoint's scheduler config)."""

    class_type = "LG_DenoiserSchedule"
    category = "latentgraph/sampling/schedules"

    class In(Inputs):
        denoiser: DenoiserSocket

    class Out(Outputs):
        schedule: ScheduleSocket

    def run(self, x: In) -> Out:
        return self.Out(schedule=x.denoiser.schedule)


class Sampler(Node):
    """Sample a latent with a denoiser: text-to-image (denoise 1) or image-to-image (denoise < 1)
    with classifier-free guidance, any solver. Expands into visible, cached step nodes."""

    class_type = "LG_Sampler"
    category = CATEGORY

    class In(Inputs):
        denoiser: DenoiserSocket
        positive: Optional[TextEmbedsSocket] = Input(None, tooltip="unconditional models take none")  # noqa: UP045
        negative: Optional[TextEmbedsSocket] = Input(None, tooltip="without it, guidance is off")  # noqa: UP045
        latent: Latent = Input(tooltip="an empty latent for text-to-image, an encoded image for img2img")
        seed: int = Input(0, ge=0, le=SEED_MAX, control_after_generate=True)
        steps: int = Input(20, ge=1, le=1000)
        cfg: float = Input(7.5, ge=0.0, le=100.0, step=0.1, tooltip="guidance scale; <= 1 turns guidance off")
        solver: Solver = Input("euler")
        schedule: Optional[ScheduleSocket] = Input(None, tooltip="default: the denoiser's own")  # noqa: UP045
        denoise: float = Input(1.0, ge=0.0, le=1.0, step=0.01)
        rng: Optional[RngSocket] = Input(None, tooltip="continue this random stream (e.g. the one LG_AutoencoderEncode drew from) instead of seeding the noise")  # noqa: UP045
        guidance: Optional[StepGuidanceSocket] = Input(None, tooltip="a guidance term added after CFG at every guided step, e.g. SD3.5's skip-layer guidance (LG_SkipLayerGuidance)")  # noqa: UP045

    class Out(Outputs):
        latent: Latent

    def run(self, x: In) -> Expand:
        return Expand(*sampling_graph(x))


def sampling_graph(x: Any) -> tuple[dict[str, dict[str, Any]], tuple[tuple[str, int], ...]]:
    """The expansion of LG_Sampler for the given inputs (literals decide the graph's shape)."""
    spec = SOLVERS[x.solver]
    g = GraphBuilder()
    P = ParentInput  # noqa: N806 - reads as "the sampler's own input"
    schedule = P("schedule") if x.schedule is not None else g.node(
        "LG_DenoiserSchedule", id="schedule", denoiser=P("denoiser")).out()
    plan = g.node("LG_SamplingPlan", id="plan", schedule=schedule, steps=P("steps"), solver=P("solver"),
                  spacing=x.denoiser.spacing, steps_offset=x.denoiser.steps_offset, denoise=P("denoise"),
                  **denoiser_plan_options(x))
    # img2img pipelines draw the VAE sample and then the noise from one generator: continue it.
    stream = {"rng": P("rng")} if x.rng is not None else {}
    noise = g.node("LG_Noise", id="noise", like=P("latent"), seed=P("seed"), **stream)
    if x.denoise >= 1.0:
        start = g.node("LG_InitialNoise", id="start", noise=noise, plan=plan)
    else:
        start = g.node("LG_AddNoise", id="start", sample=P("latent"), noise=noise, plan=plan, step=0)
    guided = x.cfg > 1.0 and x.negative is not None

    def model_output(sample: list[Any], level: int, name: str) -> list[Any]:
        """The guided model output for `sample` at plan step `level`'s noise level and timestep."""
        model_in = sample
        if spec.scales_model_input:
            model_in = g.node("LG_ScaleModelInput", id=f"input{name}", sample=sample, plan=plan, step=level).out()
        call: dict[str, Any] = {"denoiser": P("denoiser"), "sample": model_in, "plan": plan, "step": level,
                                "positive": P("positive")}
        if guided:
            call["negative"] = P("negative")
        model = g.node("LG_Denoise", id=f"model{name}", **call)
        if not guided:
            return model.out(0)
        combined = g.node("LG_CFGCombine", id=f"cfg{name}", uncond=model.out(1), cond=model.out(0),
                          scale=P("cfg")).out()
        if x.guidance is None:
            return combined
        # The guidance object names the step node that adds its term (after CFG, as the pipelines do).
        return g.node(x.guidance.step_node, id=f"guide{name}", guidance=P("guidance"), denoiser=P("denoiser"),
                      sample=model_in, plan=plan, step=level, positive=P("positive"), guided=combined,
                      cond=model.out(0)).out()

    outputs = spec.step_node.spec.output_names
    rng, state = noise.out(1), None
    sample, last = start.out(), start
    steps = _plan_length(x)
    for i in range(steps):
        inputs: dict[str, Any] = {"sample": sample, "model_output": model_output(sample, i, str(i)),
                                  "plan": plan, "step": i}
        if spec.stochastic:
            inputs.update(seed=P("seed"), rng=rng)
        if state is not None:
            inputs["state"] = state
        last = g.node(spec.step_node.class_type, id=f"step{i}", **inputs)
        sample = last.out(0)
        if spec.stochastic:
            rng = last.out(outputs.index("rng"))
        if spec.stateful:
            state = last.out(outputs.index("state"))
        if spec.correction_node is not None and i + 1 < steps:
            last = _correction(g, spec, last, sample, model_output(sample, i + 1, f"{i}b"), plan, i)
            sample = last.out(0)
    return g.build(), ((last.id, 0),)


def _correction(g: GraphBuilder, spec: SolverSpec, stage: NodeRef, predicted: list[Any], output: list[Any],
                plan: NodeRef, i: int) -> NodeRef:
    """The second stage of step i: the model was evaluated where the first stage moved the sample,
    at step i + 1's level (Heun: Karras et al. 2022, alg. 1 lines 7-8)."""
    assert spec.correction_node is not None
    stage_out = stage.out(spec.step_node.spec.output_names.index("stage"))
    return g.node(spec.correction_node.class_type, id=f"correct{i}", sample=predicted, model_output=output,
                  plan=plan, step=i, stage=stage_out)


def denoiser_plan_options(x: Any) -> dict[str, Any]:
    """The plan options the denoiser asks for on this latent (``plan_options``, if it has it):
    FLUX's resolution-dependent shift mu and its pipeline's sigmas, SD3 with dynamic shifting its
    mu. A denoiser that finds the latent unfit (FLUX's 2x2 patches) raises ArgumentError."""
    ask = getattr(x.denoiser, "plan_options", None)
    if ask is None:
        return {}
    try:
        options: dict[str, Any] = ask(samples_of(x.latent, "latent"))
    except ArgumentError as err:
        raise InputError("latent", str(err)) from None
    needed = {PLAN_OPTION_OF.get(name, name) for name in options}
    if not needed <= set(SOLVERS[x.solver].plan_options):
        takes = [spec.name for spec in SOLVERS.values() if needed <= set(spec.plan_options)]
        raise InputError("solver", f"this denoiser samples with {', '.join(sorted(options))} (as its pipeline "
                                   f"does), which solver '{x.solver}' does not take; use {' or '.join(takes)}")
    return options


# The make_plan option each plan input belongs to (mu goes with time_shift).
PLAN_OPTION_OF = {"mu": "time_shift"}


def _plan_length(x: Any) -> int:
    """Steps the plan will hold after img2img truncation (built here to size the unrolling)."""
    own = x.schedule is not None
    schedule = x.schedule if own else x.denoiser.schedule
    # The spacing and offset, and unless given the schedule, are the denoiser's.
    inputs = {"spacing": "denoiser", "steps_offset": "denoiser", **({} if own else {"schedule": "denoiser"})}
    return len(checked_plan(schedule, x.steps, x.solver, x.denoiser.spacing, x.denoiser.steps_offset,
                            x.denoise, inputs, **denoiser_plan_options(x)))


NODES = [DenoiserSchedule, Sampler]
