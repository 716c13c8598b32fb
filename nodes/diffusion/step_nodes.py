"""One solver update per node: x_t -> x_{t-1}, plus the predicted x_0 for previews.

Every step is a pure function of its inputs. Randomness comes from a seed, or from the RNG
state a previous node handed on (so a chain of steps draws the same stream as a pipeline's one
generator). DPM-Solver++'s multistep history is an explicit SOLVER_STATE input and output.

Each step node names the pure step function it runs (`step_function`) and accepts exactly the
plans whose solver lists that function (`SamplingPlan.steppers`, from the solver table in
``solvers/``, which also says which node steps each solver). The input and output models here
are the building blocks a solver's own file reuses.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Optional

import torch

from ...executor.node import Input, InputError, Inputs, Node, Outputs
from ...executor.types import Latent
from .math import (
    ddim_step,
    ddpm_step,
    dpmpp_2m_step,
    euler_ancestral_step,
    euler_step,
    flow_euler_step,
    scale_model_input,
)
from .noise_nodes import SEED_MAX, generator, samples_of
from .preview import latent_preview
from .sockets import PlanSocket, RngSocket, SolverStateSocket

CATEGORY = "latentgraph/sampling/steps"


class StepInputs(Inputs):
    sample: Latent = Input(tooltip="x_t, the current noisy sample")
    model_output: Latent = Input(tooltip="the network's (guided) prediction at this step")
    plan: PlanSocket
    step: int = Input(0, ge=0, tooltip="index into the plan")


class StochasticStepInputs(StepInputs):
    seed: int = Input(0, ge=0, le=SEED_MAX)
    rng: Optional[RngSocket] = Input(None, tooltip="continue this random stream instead of seeding")  # noqa: UP045


class StepOutputs(Outputs):
    sample: Latent
    denoised: Latent


class StochasticStepOutputs(StepOutputs):
    rng: RngSocket


class StepNode(Node):
    """Base of the nodes that advance a plan: they name the step function they run."""

    step_function: ClassVar[Callable[..., Any]]


def checked_tensors(node: StepNode, x: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """The sample and model output, after checking plan, step index and shapes."""
    sample, output = samples_of(x.sample, "sample"), samples_of(x.model_output, "model_output")
    if type(node).step_function not in x.plan.steppers:
        raise InputError("plan", f"the plan was made for solver '{x.plan.solver}', which "
                                 f"{node.spec.class_type} does not step")
    if not 0 <= x.step < x.plan.num_steps:
        raise InputError("step", f"step {x.step} is outside the plan's {len(x.plan)} steps (0..{len(x.plan) - 1})")
    if sample.shape != output.shape:
        raise InputError("model_output", f"shape {tuple(output.shape)} differs from the sample's {tuple(sample.shape)}")
    return sample, output


def report(node: Node, x: Any, denoised: torch.Tensor) -> None:
    node.ctx.progress(x.step + 1, len(x.plan), preview=lambda: latent_preview(denoised))


def step_outputs(x: Any, prev: torch.Tensor, denoised: torch.Tensor) -> dict[str, Any]:
    """The sample and denoised outputs: the input LATENT's other keys travel on with the sample."""
    return {"sample": {**x.sample, "samples": prev}, "denoised": {"samples": denoised}}


class _DeterministicStep(StepNode):
    """Shared run() of the steps that draw no noise; subclasses name their update."""

    In = StepInputs
    Out = StepOutputs

    @staticmethod
    def update(sample: torch.Tensor, output: torch.Tensor, plan: Any, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def run(self, x: StepInputs) -> StepOutputs:
        sample, output = checked_tensors(self, x)
        prev, denoised = self.update(sample, output, x.plan, x.step)
        report(self, x, denoised)
        return StepOutputs(**step_outputs(x, prev, denoised))


class _StochasticStep(StepNode):
    """Shared run() of the steps that draw noise: from the seed, or continuing the RNG state."""

    In = StochasticStepInputs
    Out = StochasticStepOutputs

    def update(self, x: Any, sample: torch.Tensor, output: torch.Tensor,
               gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def run(self, x: StochasticStepInputs) -> StochasticStepOutputs:
        sample, output = checked_tensors(self, x)
        gen = generator(x.seed, x.rng)
        prev, denoised = self.update(x, sample, output, gen)
        report(self, x, denoised)
        return StochasticStepOutputs(**step_outputs(x, prev, denoised), rng=gen.get_state())


class DDPMStep(_StochasticStep):
    """Ancestral DDPM update: the posterior mean of q(x_{t-1} | x_t, x_0) plus its fixed-small
    variance noise (Ho et al. 2020, eqs. 6-7)."""

    class_type = "LG_DDPMStep"
    category = CATEGORY
    step_function = staticmethod(ddpm_step)

    def update(self, x, sample, output, gen):
        return ddpm_step(sample, output, x.plan, x.step, gen)


class DDIMStepInputs(StochasticStepInputs):
    eta: float = Input(0.0, ge=0.0, le=1.0, step=0.01, tooltip="0: deterministic DDIM; 1: DDPM's variance")


class DDIMStep(_StochasticStep):
    """DDIM update (Song et al. 2021, eq. 12); eta interpolates between the deterministic
    sampler (0) and DDPM's variance (1, eq. 16)."""

    class_type = "LG_DDIMStep"
    category = CATEGORY
    step_function = staticmethod(ddim_step)
    In = DDIMStepInputs

    def update(self, x, sample, output, gen):
        return ddim_step(sample, output, x.plan, x.step, x.eta, gen if x.eta > 0 else None)


class EulerStep(_DeterministicStep):
    """Euler step of the probability-flow ODE in sigma (Karras et al. 2022, algorithm 1 without
    churn); feed it the model output for LG_ScaleModelInput's sample."""

    class_type = "LG_EulerStep"
    category = CATEGORY
    step_function = update = staticmethod(euler_step)


class EulerAncestralStep(_StochasticStep):
    """Euler ancestral: a deterministic step down to sigma_down, then fresh noise up to
    sigma_up (Karras et al. 2022; k-diffusion's sample_euler_ancestral)."""

    class_type = "LG_EulerAncestralStep"
    category = CATEGORY
    step_function = staticmethod(euler_ancestral_step)

    def update(self, x, sample, output, gen):
        return euler_ancestral_step(sample, output, x.plan, x.step, gen)


class FlowEulerStep(StepNode):
    """Rectified-flow Euler step x_{t-dt} = x_t + (sigma_next - sigma) v (SD3, FlowMatchEuler)."""

    class_type = "LG_FlowEulerStep"
    category = CATEGORY
    In = StepInputs
    Out = StepOutputs
    step_function = staticmethod(flow_euler_step)
    # The update does not need x0, so it is made only when read (half of this step's arithmetic).
    lazy_outputs = ("denoised",)

    def run(self, x: StepInputs) -> tuple[Any, Any]:
        sample, output = checked_tensors(self, x)
        wanted = self.ctx.wants("denoised")
        prev, denoised = flow_euler_step(sample, output, x.plan, x.step, with_denoised=wanted)
        self.ctx.progress(x.step + 1, x.plan.num_steps, preview=lambda: latent_preview(
            denoised if denoised is not None else flow_euler_step(sample, output, x.plan, x.step)[1]))
        return {**x.sample, "samples": prev}, {"samples": denoised} if wanted else None


class DPMSolverInputs(StepInputs):
    state: Optional[SolverStateSocket] = Input(None, tooltip="the previous step's state; empty at step 0")  # noqa: UP045
    lower_order_final: bool = Input(True, tooltip="first order on the last step of short runs (stabler)")


class DPMSolverOutputs(StepOutputs):
    state: SolverStateSocket


def check_state_input(x: Any) -> None:
    """That a multistep node got the SOLVER_STATE of the step before (none at step 0)."""
    if x.step > 0 and x.state is None:
        raise InputError("state", f"step {x.step} needs the SOLVER_STATE of step {x.step - 1}")
    if x.state is not None and x.state.step_index != x.step - 1:
        raise InputError("state", f"the state comes from step {x.state.step_index}, not step {x.step - 1}")


class DPMSolverStep(StepNode):
    """DPM-Solver++(2M) (Lu et al. 2022, algorithm 2), for epsilon, v and flow predictions
    (SANA's Flow-DPM-Solver is this with flow sigmas). The multistep history travels as an
    explicit state, so a run resumed from a cached middle step is exact."""

    class_type = "LG_DPMSolverStep"
    category = CATEGORY
    In = DPMSolverInputs
    Out = DPMSolverOutputs
    step_function = staticmethod(dpmpp_2m_step)

    def run(self, x: DPMSolverInputs) -> DPMSolverOutputs:
        sample, output = checked_tensors(self, x)
        check_state_input(x)
        prev, denoised, state = dpmpp_2m_step(sample, output, x.plan, x.step, x.state, x.lower_order_final)
        report(self, x, denoised)
        return DPMSolverOutputs(**step_outputs(x, prev, denoised), state=state)


class ScaleModelInput(Node):
    """What the network sees at a step: x / sqrt(sigma^2 + 1) for the Euler family and Heun
    (their samples are variance-exploding), the sample unchanged for every other solver."""

    class_type = "LG_ScaleModelInput"
    category = CATEGORY

    class In(Inputs):
        sample: Latent
        plan: PlanSocket
        step: int = Input(0, ge=0)

    class Out(Outputs):
        sample: Latent

    def run(self, x: In) -> Out:
        sample = samples_of(x.sample, "sample")
        if not 0 <= x.step < x.plan.num_steps:
            raise InputError("step", f"step {x.step} is outside the plan's {len(x.plan)} steps")
        return self.Out(sample={**x.sample, "samples": scale_model_input(sample, x.plan, x.step)})


# The step nodes join the registry through the solver table (solvers/), which names them.
NODES = [ScaleModelInput]
