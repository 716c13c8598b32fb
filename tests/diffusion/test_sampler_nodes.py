"""The diffusion nodes through the executor against diffusers' scheduler loop.

The oracle is a pipeline-style loop: one CPU generator draws the initial latents and then every
step's noise; the model is called on cat([x, x]) with [negative, positive] embeddings and
guided as uncond + cfg (cond - uncond). Our LG_Sampler expansion must give the same latents
(bitwise where the arithmetic is the same: it is, for every solver here).
"""

from __future__ import annotations

import inspect

import pytest
import torch
from denoiser_for_tests import SHAPE, TextEmbeds, make_denoiser, registry
from diffusers.utils.torch_utils import randn_tensor
from graph_helpers import Graph, NodeRef
from latentgraph.executor import Executor, NodeFailed
from latentgraph.nodes.diffusion.math import SANA_SCHEDULE, SD15_SCHEDULE, Schedule

REG = registry()
SOLVER_SCHEDULE = {
    "ddpm": SD15_SCHEDULE, "ddim": SD15_SCHEDULE, "euler": SD15_SCHEDULE, "euler_ancestral": SD15_SCHEDULE,
    "heun": SD15_SCHEDULE, "dpmpp_2m": SD15_SCHEDULE, "dpmpp_2m_sde": SD15_SCHEDULE,
    "flow_euler": SANA_SCHEDULE, "flow_dpmpp_2m": SANA_SCHEDULE, "flow_dpmpp_2m_sde": SANA_SCHEDULE,
}
POS, NEG = 1.0, -0.5


@pytest.fixture(scope="module")
def executor():
    return Executor(device="cpu", registry=REG)


def step_kwargs(scheduler, gen):
    """What a pipeline passes to step(): the generator where the scheduler takes one (diffusers'
    prepare_extra_step_kwargs; Heun's step takes none)."""
    return {"generator": gen} if "generator" in inspect.signature(scheduler.step).parameters else {}


def oracle_loop(oracle, solver, steps, seed, cfg, batch=1, schedule=None, spacing="leading"):
    scheduler = oracle(solver, steps)
    denoiser = make_denoiser(schedule or SOLVER_SCHEDULE[solver], spacing)
    gen = torch.Generator("cpu").manual_seed(seed)
    latents = randn_tensor((batch, *SHAPE[1:]), generator=gen, dtype=torch.float32)
    latents = latents * getattr(scheduler, "init_noise_sigma", 1.0)  # flow schedulers have none
    context = TextEmbeds(torch.cat([torch.full((batch, 2, 4), NEG), torch.full((batch, 2, 4), POS)]))
    for t in scheduler.timesteps:
        model_in = torch.cat([latents] * 2)
        if hasattr(scheduler, "scale_model_input"):
            model_in = scheduler.scale_model_input(model_in, t)
        uncond, cond = denoiser.forward(model_in, t, context).chunk(2)
        guided = uncond + cfg * (cond - uncond)
        latents = scheduler.step(guided, t, latents, **step_kwargs(scheduler, gen), return_dict=False)[0]
    return latents


def sampler_graph(solver, steps, seed, cfg, batch=1):
    g = Graph()
    kind = "flow" if solver.startswith("flow") else "scaled_linear"
    prediction = "flow_prediction" if kind == "flow" else "epsilon"
    schedule = g.node("LG_NoiseSchedule", id="schedule", kind=kind, prediction_type=prediction,
                      shift=3.0 if kind == "flow" else 1.0)
    denoiser = g.node("LG_TestDenoiser", id="denoiser", schedule=schedule)
    latent = g.node("LG_ImageToPixels", id="latent", image=g.node("LG_EmptyImage", id="empty", width=8, height=8,
                                                                   batch_size=batch))
    g.node("LG_Sampler", id="sampler", denoiser=denoiser, positive=g.node("LG_TestEmbeds", id="pos", value=POS),
           negative=g.node("LG_TestEmbeds", id="neg", value=NEG), latent=latent, seed=seed, steps=steps,
           cfg=cfg, solver=solver)
    return g.build()


@pytest.mark.parametrize("solver", list(SOLVER_SCHEDULE))
@pytest.mark.parametrize("steps", [1, 2, 5, 10])
def test_sampler_equals_diffusers_loop(executor, oracle, solver, steps):
    graph = sampler_graph(solver, steps, seed=11, cfg=3.0)
    ours = executor.run(graph, targets=["sampler"]).outputs["sampler"][0]["samples"]
    expected = oracle_loop(oracle, solver, steps, seed=11, cfg=3.0)
    assert torch.equal(ours, expected), (ours - expected).abs().max()


def test_without_guidance_only_the_conditional_branch_runs(executor, oracle):
    graph = sampler_graph("euler", 5, seed=3, cfg=1.0)
    ours = executor.run(graph, targets=["sampler"]).outputs["sampler"][0]["samples"]
    scheduler = oracle("euler", 5)
    denoiser = make_denoiser(SD15_SCHEDULE)
    gen = torch.Generator().manual_seed(3)
    latents = randn_tensor(SHAPE, generator=gen) * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        out = denoiser.forward(scheduler.scale_model_input(latents, t), t, TextEmbeds(torch.full((1, 2, 4), POS)))
        latents = scheduler.step(out, t, latents, generator=gen, return_dict=False)[0]
    assert torch.equal(ours, latents)
    assert not any(k.startswith("sampler.cfg") for k in executor.run(graph, targets=["sampler"]).cached)


@pytest.mark.parametrize("solver", ["ddim", "euler", "heun", "dpmpp_2m", "dpmpp_2m_sde", "flow_euler"])
def test_img2img_equals_diffusers(executor, oracle, solver):
    steps, strength = 10, 0.6
    graph = sampler_graph(solver, steps, seed=5, cfg=2.0)
    graph["empty"]["inputs"]["color"] = 0x8040C0  # a non-trivial start image
    graph["sampler"]["inputs"]["denoise"] = strength
    ours = executor.run(graph, targets=["sampler"]).outputs["sampler"][0]["samples"]

    scheduler = oracle(solver, steps)
    denoiser = make_denoiser(SOLVER_SCHEDULE[solver])
    image = torch.tensor([0x80, 0x40, 0xC0]).div(255.0).view(1, 3, 1, 1).expand(SHAPE) * 2 - 1
    if solver.startswith("flow"):  # SD3 img2img's rounding
        t_start = int(max(steps - int(steps * strength), 0))
    else:
        t_start = max(steps - min(int(steps * strength), steps), 0)
    timesteps = scheduler.timesteps[t_start * scheduler.order:]
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(t_start * scheduler.order)
    gen = torch.Generator().manual_seed(5)
    noise = randn_tensor(SHAPE, generator=gen)
    if solver.startswith("flow"):
        latents = scheduler.scale_noise(image, timesteps[:1], noise)
    else:
        latents = scheduler.add_noise(image, noise, timesteps[:1])
    context = TextEmbeds(torch.cat([torch.full((1, 2, 4), NEG), torch.full((1, 2, 4), POS)]))
    for t in timesteps:
        model_in = torch.cat([latents] * 2)
        if hasattr(scheduler, "scale_model_input"):
            model_in = scheduler.scale_model_input(model_in, t)
        uncond, cond = denoiser.forward(model_in, t, context).chunk(2)
        guided = uncond + 2.0 * (cond - uncond)
        latents = scheduler.step(guided, t, latents, **step_kwargs(scheduler, gen), return_dict=False)[0]
    assert torch.equal(ours, latents), (ours - latents).abs().max()


def unrolled_start(g, steps, solver):
    """What each hand-unrolled sampler graph starts from: the model, the plan, the noise, the
    first sample and both prompts (the node ids LG_Sampler's expansion uses)."""
    schedule = g.node("LG_NoiseSchedule", id="schedule", kind="scaled_linear")
    denoiser = g.node("LG_TestDenoiser", id="denoiser", schedule=schedule)
    latent = g.node("LG_ImageToPixels", id="latent", image=g.node("LG_EmptyImage", id="empty", width=8, height=8))
    plan = g.node("LG_SamplingPlan", id="plan", schedule=schedule, steps=steps, solver=solver)
    noise = g.node("LG_Noise", id="noise", like=latent, seed=11)
    sample = g.node("LG_InitialNoise", id="start", noise=noise, plan=plan)
    pos, neg = g.node("LG_TestEmbeds", id="pos", value=POS), g.node("LG_TestEmbeds", id="neg", value=NEG)
    return denoiser, plan, noise, sample, pos, neg


def unrolled_dpm_graph(steps, stop=None):
    """LG_Sampler's DPM-Solver++ expansion written out by hand, every step visible."""
    g = Graph()
    denoiser, plan, _, sample, pos, neg = unrolled_start(g, steps, "dpmpp_2m")
    state = None
    for i in range(steps if stop is None else stop):
        model = g.node("LG_Denoise", id=f"model{i}", denoiser=denoiser, sample=sample, plan=plan, step=i,
                       positive=pos, negative=neg)
        guided = g.node("LG_CFGCombine", id=f"cfg{i}", uncond=model.out(1), cond=model.out(0), scale=3.0)
        extra = {"state": state} if state is not None else {}
        sample = g.node("LG_DPMSolverStep", id=f"step{i}", sample=sample, model_output=guided, plan=plan,
                        step=i, **extra)
        state = sample.out(2)
    return g.build(), sample.id


def test_unrolled_graph_equals_sampler_and_shares_its_cache(oracle):
    executor = Executor(device="cpu", registry=REG)
    graph, last = unrolled_dpm_graph(5)
    unrolled = executor.run(graph, targets=[last])
    sampler = sampler_graph("dpmpp_2m", 5, seed=11, cfg=3.0)
    sampler["sampler"]["inputs"]["schedule"] = ["schedule", 0]
    rolled = executor.run(sampler, targets=["sampler"])
    assert torch.equal(unrolled.outputs[last][0]["samples"], rolled.outputs["sampler"][0]["samples"])
    # Every expanded step came from the unrolled run's cache entries.
    assert [n for n in rolled.executed if ".step" in n or ".model" in n] == []


def test_dpm_solver_resumes_exactly_from_a_cached_middle_step():
    executor = Executor(device="cpu", registry=REG)
    half, half_last = unrolled_dpm_graph(6, stop=3)
    executor.run(half, targets=[half_last])
    full, last = unrolled_dpm_graph(6)
    resumed = executor.run(full, targets=[last])
    assert resumed.executed == [f"{kind}{i}" for i in range(3, 6) for kind in ("model", "cfg", "step")]
    fresh = Executor(device="cpu", registry=REG).run(full, targets=[last])
    assert torch.equal(resumed.outputs[last][0]["samples"], fresh.outputs[last][0]["samples"])


def test_one_prompt_spreads_over_a_batch(executor, oracle):
    graph = sampler_graph("ddim", 4, seed=2, cfg=2.0, batch=2)
    ours = executor.run(graph, targets=["sampler"]).outputs["sampler"][0]["samples"]
    assert torch.equal(ours, oracle_loop(oracle, "ddim", 4, seed=2, cfg=2.0, batch=2))


@pytest.mark.parametrize("mutate, node, input_name", [
    (lambda g: g["step3"]["inputs"].update(step=9), "step3", "step"),
    (lambda g: g["plan"]["inputs"].update(solver="euler"), "step0", "plan"),
    (lambda g: g["step2"]["inputs"].pop("state"), "step2", "state"),
    (lambda g: g["step2"]["inputs"].update(state=["step0", 2]), "step2", "state"),
])
def test_bad_step_inputs_name_node_and_input(mutate, node, input_name):
    graph, last = unrolled_dpm_graph(5)
    mutate(graph)
    with pytest.raises(NodeFailed) as info:
        Executor(device="cpu", registry=REG).run(graph, targets=[last])
    assert info.value.node_id == node and f"input '{input_name}'" in str(info.value)


def test_shape_mismatch_names_model_output():
    graph, last = unrolled_dpm_graph(2)
    g = Graph.extend(graph)
    big = g.node("LG_ImageToPixels", id="big", image=g.node("LG_EmptyImage", id="bigimg", width=16, height=8))
    g.set("step0", model_output=big)
    graph = g.build()
    with pytest.raises(NodeFailed) as info:
        Executor(device="cpu", registry=REG).run(graph, targets=[last])
    assert info.value.node_id == "step0" and "input 'model_output'" in str(info.value)


@pytest.mark.parametrize("solver", ["euler", "flow_euler"])  # flow_euler makes x0 only for previews
def test_sampler_reports_progress_with_previews(solver):
    events = []
    Executor(device="cpu", registry=REG, previews=True).run(
        sampler_graph(solver, 3, seed=1, cfg=2.0), targets=["sampler"], on_event=events.append)
    previews = [e.data for e in events if e.type == "progress" and "preview" in e.data]
    assert [p["value"] for p in previews] == [1, 2, 3] and previews[0]["preview"].shape == (1, 8, 8, 3)
    assert any(e.type == "progress" and e.data["node"] == "sampler" for e in events)


# diffusers' Heun has no rescale_betas_zero_snr: it is compared on v-prediction alone below.
@pytest.mark.parametrize("solver", ["ddpm", "ddim", "euler", "euler_ancestral", "dpmpp_2m", "dpmpp_2m_sde"])
@pytest.mark.parametrize("steps", [1, 4, 10])
def test_zero_terminal_snr_v_prediction_equals_diffusers(executor, oracle, solver, steps):
    """Lin et al. 2024's recipe (zero terminal SNR, v-prediction, trailing spacing), as the
    shipped shapes model is trained."""
    graph = sampler_graph(solver, steps, seed=4, cfg=3.0)
    graph["schedule"]["inputs"].update(prediction_type="v_prediction", zero_terminal_snr=True)
    graph["denoiser"]["inputs"]["spacing"] = "trailing"
    ours = executor.run(graph, targets=["sampler"]).outputs["sampler"][0]["samples"]

    def zsnr_oracle(name, n):
        return oracle(name, n, rescale_betas_zero_snr=True, prediction_type="v_prediction",
                      timestep_spacing="trailing")

    expected = oracle_loop(zsnr_oracle, solver, steps, seed=4, cfg=3.0,
                           schedule=Schedule("scaled_linear", 1000, 0.00085, 0.012, "v_prediction",
                                             zero_terminal_snr=True), spacing="trailing")
    assert torch.equal(ours, expected), (ours - expected).abs().max()


def test_flow_euler_denoised_is_made_when_read():
    """Unread, the step skips x0 (the update does not need it); read, it is the rectified-flow
    x0, and the cache runs the step again for it."""
    from latentgraph.nodes.diffusion.math import flow_euler_step

    g = Graph()
    schedule = g.node("LG_NoiseSchedule", id="schedule", kind="flow", prediction_type="flow_prediction", shift=3.0)
    plan = g.node("LG_SamplingPlan", id="plan", schedule=schedule, steps=3, solver="flow_euler")
    latent = g.node("LG_ImageToPixels", id="latent", image=g.node("LG_EmptyImage", id="empty", width=8, height=8))
    noise = g.node("LG_Noise", id="noise", like=latent, seed=3)
    sample = g.node("LG_InitialNoise", id="init", noise=noise, plan=plan)
    for i in range(3):
        sample = g.node("LG_FlowEulerStep", id=f"step{i}", sample=sample, model_output=noise, plan=plan, step=i)
    graph = g.build()
    executor = Executor(device="cpu", registry=REG)
    executor.run(graph, targets=["step2"])
    first = executor.run(graph, targets=["step0", "init", "noise", "plan"])  # step0 as a target: all outputs
    assert first.executed == ["step0"]
    values = {n: first.outputs[n][0] for n in ("init", "noise", "plan")}
    expected = flow_euler_step(values["init"]["samples"], values["noise"]["samples"], values["plan"], 0)
    assert torch.equal(first.outputs["step0"][0]["samples"], expected[0])
    assert torch.equal(first.outputs["step0"][1]["samples"], expected[1])


@pytest.mark.parametrize("steps", [1, 4, 9])
@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("solver", ["heun", "dpmpp_2m_sde"])
def test_new_solvers_equal_diffusers_for_each_prediction_and_spacing(executor, oracle, solver, prediction_type,
                                                                      spacing, steps):
    graph = sampler_graph(solver, steps, seed=6, cfg=2.5)
    graph["schedule"]["inputs"]["prediction_type"] = prediction_type
    graph["denoiser"]["inputs"]["spacing"] = spacing
    ours = executor.run(graph, targets=["sampler"]).outputs["sampler"][0]["samples"]

    def configured(name, n):
        return oracle(name, n, prediction_type=prediction_type, timestep_spacing=spacing)

    schedule = Schedule("scaled_linear", 1000, 0.00085, 0.012, prediction_type)
    expected = oracle_loop(configured, solver, steps, seed=6, cfg=2.5, schedule=schedule, spacing=spacing)
    assert torch.equal(ours, expected), (ours - expected).abs().max()


def unrolled_heun_graph(steps, stop=None):
    """LG_Sampler's Heun expansion written out by hand: per step a model call, the predictor, a
    second model call at the level the predictor reached (step + 1) and the corrector."""
    g = Graph()
    denoiser, plan, _, sample, pos, neg = unrolled_start(g, steps, "heun")

    def guided(x, level, name):
        scaled = g.node("LG_ScaleModelInput", id=f"input{name}", sample=x, plan=plan, step=level)
        model = g.node("LG_Denoise", id=f"model{name}", denoiser=denoiser, sample=scaled, plan=plan, step=level,
                       positive=pos, negative=neg)
        return g.node("LG_CFGCombine", id=f"cfg{name}", uncond=model.out(1), cond=model.out(0), scale=3.0)

    for i in range(steps if stop is None else stop):
        predictor = g.node("LG_HeunStep", id=f"step{i}", sample=sample, model_output=guided(sample, i, str(i)),
                           plan=plan, step=i)
        sample = predictor
        if i + 1 < steps:
            sample = g.node("LG_HeunCorrection", id=f"correct{i}", sample=predictor.out(0),
                            model_output=guided(predictor.out(0), i + 1, f"{i}b"), plan=plan, step=i,
                            stage=predictor.out(2))
    return g.build(), sample.id


def unrolled_sde_graph(steps):
    """The DPM-Solver++(2M) SDE expansion by hand: seed, random stream and state threaded through."""
    g = Graph()
    denoiser, plan, noise, sample, pos, neg = unrolled_start(g, steps, "dpmpp_2m_sde")
    rng, state = noise.out(1), None
    for i in range(steps):
        model = g.node("LG_Denoise", id=f"model{i}", denoiser=denoiser, sample=sample, plan=plan, step=i,
                       positive=pos, negative=neg)
        guided = g.node("LG_CFGCombine", id=f"cfg{i}", uncond=model.out(1), cond=model.out(0), scale=3.0)
        extra = {"state": state} if state is not None else {}
        sample = g.node("LG_DPMSolverSDEStep", id=f"step{i}", sample=sample, model_output=guided, plan=plan,
                        step=i, seed=11, rng=rng, **extra)
        state, rng = sample.out(2), sample.out(3)
    return g.build(), sample.id


@pytest.mark.parametrize(("solver", "unrolled"), [("heun", unrolled_heun_graph), ("dpmpp_2m_sde", unrolled_sde_graph)])
def test_stepwise_graph_equals_sampler_and_diffusers_and_shares_its_cache(oracle, solver, unrolled):
    executor = Executor(device="cpu", registry=REG)
    graph, last = unrolled(5)
    stepwise = executor.run(graph, targets=[last]).outputs[last][0]["samples"]
    sampler = sampler_graph(solver, 5, seed=11, cfg=3.0)
    sampler["sampler"]["inputs"]["schedule"] = ["schedule", 0]
    rolled = executor.run(sampler, targets=["sampler"])
    assert torch.equal(stepwise, rolled.outputs["sampler"][0]["samples"])
    assert torch.equal(stepwise, oracle_loop(oracle, solver, 5, seed=11, cfg=3.0))
    # Every expanded model call, step and correction came from the stepwise run's cache entries.
    assert [n for n in rolled.executed if any(k in n for k in (".step", ".model", ".correct"))] == []


def test_heun_resumes_exactly_from_a_cached_middle_step():
    executor = Executor(device="cpu", registry=REG)
    half, half_last = unrolled_heun_graph(6, stop=3)
    executor.run(half, targets=[half_last])
    full, last = unrolled_heun_graph(6)
    resumed = executor.run(full, targets=[last])
    first_calls = {f"{kind}{i}" for i in range(3, 6) for kind in ("input", "model", "cfg", "step")}
    second_calls = {f"{kind}{i}b" for i in range(3, 5) for kind in ("input", "model", "cfg")}
    assert set(resumed.executed) == first_calls | second_calls | {f"correct{i}" for i in range(3, 5)}
    fresh = Executor(device="cpu", registry=REG).run(full, targets=[last])
    assert torch.equal(resumed.outputs[last][0]["samples"], fresh.outputs[last][0]["samples"])


@pytest.mark.parametrize("mutate, node, input_name", [
    (lambda g: g.set("correct1", stage=NodeRef("step0").out(2)), "correct1", "stage"),
    # The last step has no second evaluation: its predictor's sample is the result.
    (lambda g: g.node("LG_HeunCorrection", id="extra", sample=NodeRef("step4"), model_output=NodeRef("cfg3b"),
                      plan=NodeRef("plan"), step=4, stage=NodeRef("step4").out(2)), "extra", "step"),
    (lambda g: g.set("plan", solver="euler"), "step0", "plan"),
])
def test_bad_heun_inputs_name_node_and_input(mutate, node, input_name):
    graph, last = unrolled_heun_graph(5)
    g = Graph.extend(graph)
    mutate(g)
    graph = g.build()
    with pytest.raises(NodeFailed) as info:
        Executor(device="cpu", registry=REG).run(graph, targets=["extra" if "extra" in graph else last])
    assert info.value.node_id == node and f"input '{input_name}'" in str(info.value)
