"""A full N-step sampling loop: our step nodes through the executor against diffusers'
scheduler loop, both fed the same precomputed model outputs (diffusers' loop from a list, ours
from one node that outputs them all), timed side by side.

The ratio includes all executor overhead (validation, signatures, caching): every run starts
from an empty cache, in a new executor. Target: <= 1.5 at N = 50. Each row is measured in a fresh process,
both sides alternately, as a user's process runs one sampler (in one process for all rows, the
earlier solvers' heap leaves later rows about 10 % slower on our side, which keeps every output).

Every solver of the solver table with a diffusers oracle has a row; a two-evaluation solver
(Heun) reads two precomputed outputs per step but the last, as diffusers' loop reads one per
`step()` call.

    python bench/schedulers.py [--steps 50] [--repeat 25] [--shape 1 4 64 64] [--solvers ddim euler]
"""

from __future__ import annotations

import argparse
import inspect
import statistics
import subprocess
import sys
import time

import torch
from diffusers.schedulers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
    HeunDiscreteScheduler,
)
from diffusers.utils import logging as diffusers_logging
from diffusers.utils.torch_utils import randn_tensor
from latentgraph.executor import Executor, Inputs, Node, NodeRegistry, Outputs
from latentgraph.executor.graph_builder import GraphBuilder
from latentgraph.executor.run import settle_heap
from latentgraph.executor.types import Latent
from latentgraph.nodes import default_registry
from latentgraph.nodes.diffusion.solvers import SOLVERS
from pydantic import create_model

SD15 = {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
        "steps_offset": 1, "clip_sample": False, "set_alpha_to_one": False, "timestep_spacing": "leading"}
ORACLES = {
    "ddpm": (DDPMScheduler, SD15), "ddim": (DDIMScheduler, SD15), "euler": (EulerDiscreteScheduler, SD15),
    "euler_ancestral": (EulerAncestralDiscreteScheduler, SD15), "heun": (HeunDiscreteScheduler, SD15),
    "dpmpp_2m": (DPMSolverMultistepScheduler, SD15),
    "dpmpp_2m_sde": (DPMSolverMultistepScheduler, {**SD15, "algorithm_type": "sde-dpmsolver++"}),
    "flow_euler": (FlowMatchEulerDiscreteScheduler, {"shift": 3.0}),
    "flow_dpmpp_2m": (DPMSolverMultistepScheduler,
                      {"use_flow_sigmas": True, "prediction_type": "flow_prediction", "flow_shift": 3.0}),
    "flow_dpmpp_2m_sde": (DPMSolverMultistepScheduler,
                          {"use_flow_sigmas": True, "prediction_type": "flow_prediction", "flow_shift": 3.0,
                           "algorithm_type": "sde-dpmsolver++"}),
}
MODEL_OUTPUTS: list[torch.Tensor] = []
diffusers_logging.set_verbosity_error()  # it warns that scale_model_input was skipped: on purpose


def model_calls(solver: str, steps: int) -> int:
    """Model evaluations of an N-step run: one per step, or two but on the last (Heun)."""
    calls = SOLVERS[solver].model_calls
    return steps * calls - (calls - 1)


def precomputed_outputs_node(calls: int) -> type[Node]:
    """The benchmark's stand-in for the network: one node whose output i is the precomputed
    model output of call i, as diffusers' loop reads them from one list. (Until this version a
    node per step fed them, which charged our side a second executor node per update that the
    loop under test does not have.)"""
    out = create_model("Out", __base__=Outputs, **{f"call_{i}": (Latent, ...) for i in range(calls)})

    class In(Inputs):
        pass

    def run(self: Node, x: In) -> tuple[Latent, ...]:
        return tuple({"samples": t} for t in MODEL_OUTPUTS)

    return type("PrecomputedOutputs", (Node,), {
        "__doc__": "The precomputed model outputs, one output per step.",
        "class_type": "LG_BenchModelOutputs", "In": In, "Out": out, "run": run,
    })


def graph_for(solver: str, steps: int, shape: tuple[int, ...]) -> tuple[dict, str]:
    """Our loop as the solver's row unrolls it (LG_Sampler's expansion without the network)."""
    spec = SOLVERS[solver]
    g = GraphBuilder()
    schedule = g.node("LG_NoiseSchedule", kind="flow" if spec.flow else "scaled_linear",
                      prediction_type="flow_prediction" if spec.flow else "epsilon", shift=3.0 if spec.flow else 1.0)
    plan = g.node("LG_SamplingPlan", schedule=schedule, steps=steps, solver=solver)
    outputs = g.node("LG_BenchModelOutputs")
    noise = g.node("LG_Noise", like=outputs.out(0), seed=0)  # any tensor of the shape
    sample = g.node("LG_InitialNoise", noise=noise, plan=plan)
    names = spec.step_node.spec.output_names
    rng, state, call = noise.out(1), None, 0
    for i in range(steps):
        inputs = {"sample": sample, "model_output": outputs.out(call), "plan": plan, "step": i}
        call += 1
        if spec.stochastic:
            inputs["rng"] = rng
        if state is not None:
            inputs["state"] = state
        step = sample = g.node(spec.step_node.class_type, **inputs)
        if spec.stochastic:
            rng = step.out(names.index("rng"))
        if spec.stateful:
            state = step.out(names.index("state"))
        if spec.correction_node is not None and i + 1 < steps:
            sample = g.node(spec.correction_node.class_type, sample=step, model_output=outputs.out(call), plan=plan,
                            step=i, stage=step.out(names.index("stage")))
            call += 1
    return g.build(), sample.id


def oracle_loop(solver: str, steps: int, shape: tuple[int, ...]) -> torch.Tensor:
    cls, config = ORACLES[solver]
    scheduler = cls.from_config(config)
    scheduler.set_timesteps(steps)
    gen = torch.Generator().manual_seed(0)
    x = randn_tensor(shape, generator=gen) * getattr(scheduler, "init_noise_sigma", 1.0)
    takes_generator = "generator" in inspect.signature(scheduler.step).parameters  # Heun's does not
    extra = {"generator": gen} if takes_generator else {}
    for i, t in enumerate(scheduler.timesteps):
        x = scheduler.step(MODEL_OUTPUTS[i], t, x, **extra, return_dict=False)[0]
    return x


def paired_medians_ms(fn_a, fn_b, repeat: int) -> tuple[float, float]:
    """Median wall times of two functions called alternately, so drift in the machine's load
    (other processes, frequency scaling) falls on both sides alike."""
    times_a, times_b = [], []
    for _ in range(repeat):
        for fn, times in ((fn_a, times_a), (fn_b, times_b)):
            start = time.perf_counter()
            fn()
            times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times_a), statistics.median(times_b)


def measure(solver: str, steps: int, shape: tuple[int, ...], repeat: int) -> None:
    """Print one row: ``solver`` at N = ``steps``, ours and diffusers alternately."""
    calls = model_calls(solver, steps)
    registry = NodeRegistry([*default_registry(), precomputed_outputs_node(calls)])
    MODEL_OUTPUTS[:] = [torch.randn(shape, generator=torch.Generator().manual_seed(100 + i)) * 0.5
                        for i in range(calls)]
    graph, last = graph_for(solver, steps, shape)

    def ours() -> torch.Tensor:
        ex = Executor(device="cpu", registry=registry)  # cold: nothing cached
        return ex.run(graph, targets=[last]).outputs[last][0]["samples"]

    def theirs() -> torch.Tensor:
        return oracle_loop(solver, steps, shape)

    diff = (ours() - theirs()).abs().max().item()
    t_ours, t_ref = paired_medians_ms(ours, theirs, repeat)
    print(f"{solver:<16}{steps:>4}{t_ours:>10.2f}{t_ref:>14.2f}{t_ours / t_ref:>8.2f}{diff:>12.1e}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, nargs="+", default=[10, 50])
    parser.add_argument("--repeat", type=int, default=25)
    parser.add_argument("--shape", type=int, nargs=4, default=[1, 4, 64, 64], help="default: SD at 512 px")
    parser.add_argument("--solvers", nargs="+", choices=list(ORACLES), default=list(ORACLES))
    parser.add_argument("--in-process", action="store_true",
                        help="measure every row in this process (default: a fresh process per row, so "
                             "one solver's heap does not shape the timings of the next)")
    parser.add_argument("--row", action="store_true", help=argparse.SUPPRESS)  # a child: one row, no header
    args = parser.parse_args(argv)
    shape = tuple(args.shape)
    settle_heap()  # as `latentgraph run` and `latentgraph serve` do at start-up
    if not args.row:
        print(f"torch threads: {torch.get_num_threads()}, latent {shape}")
        print(f"{'solver':<16}{'N':>4}{'ours ms':>10}{'diffusers ms':>14}{'ratio':>8}{'max |diff|':>12}", flush=True)
    for steps in args.steps:
        for solver in args.solvers:
            if args.in_process or args.row:
                measure(solver, steps, shape, args.repeat)
                continue
            subprocess.run([sys.executable, __file__, "--row", "--solvers", solver, "--steps", str(steps),
                            "--repeat", str(args.repeat), "--shape", *map(str, shape)], check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
