"""ADM nodes: loading guided-diffusion files (safetensors and weights-only .pt), configuration
read off the weights, the sampler expansion, and the bad-input messages (node, input, what was
expected)."""

from __future__ import annotations

import pytest
import torch
from graph_helpers import Graph
from latentgraph.executor.run import NodeFailed
from latentgraph.nodes.adm.model import ADMConfig, EncoderUNetModel, UNetModel, build, infer_config
from safetensors.torch import save_file

HEADS = {"num_head_channels": 16}
UNCOND = ADMConfig(in_channels=3, model_channels=32, out_channels=6, num_res_blocks=1, channel_mult=(1, 1),
                   attention_ds=frozenset({2}), num_head_channels=16)


def randomized(net: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * (0.3 if p.ndim == 1 else 1.0 / p[0].numel() ** 0.5))
    return net


@pytest.fixture
def models_dir(folders, unet_state, classifier_state):
    """The golden U-Net (class-conditional) as safetensors, the classifier as a torch.save .pt,
    and an unconditional U-Net of ours."""
    save_file({k: v.contiguous() for k, v in unet_state.items()}, str(folders.models / "unet.safetensors"))
    torch.save(classifier_state, folders.models / "classifier.pt")
    uncond = randomized(UNetModel(UNCOND))
    save_file({k: v.contiguous() for k, v in uncond.state_dict().items()}, str(folders.models / "uncond.safetensors"))
    return folders.models


def loaders(g: Graph, unet: str = "unet.safetensors", classifier: str = "classifier.pt"):
    model = g.node("LG_LoadADM", id="model", path=unet, **HEADS)
    clf = g.node("LG_LoadADMClassifier", id="classifier", path=classifier, **HEADS)
    return model, clf


def sampler(g: Graph, **settings):
    model, clf = loaders(g)
    inputs = {"denoiser": model, "classifier": clf, "labels": "1, 4", "scale": 3.0, "width": 8, "height": 8,
              "batch": 2, "seed": 5, "respacing": "4", "solver": "ddpm", **settings}
    return g.node("LG_ADMSampler", id="sampler", **inputs)


def failure(make_executor, graph, target: str) -> NodeFailed:
    with pytest.raises(NodeFailed) as info:
        make_executor().run(graph, targets=[target])
    return info.value


# --- loading and configuration ------------------------------------------------------------------


def test_pt_file_loads_weights_only_and_matches(make_executor, models_dir, adm_models, golden):
    g = Graph()
    loaders(g)
    result = make_executor().run(g.build(), targets=["model", "classifier"])
    (denoiser,), (classifier,) = result.outputs["model"], result.outputs["classifier"]
    _, reference = adm_models
    with torch.no_grad():
        logits = classifier.net(golden["x"], golden["t"])
        unet_out = denoiser.full(golden["x"], golden["t"], golden["y"])
    # the golden data's 1e-5 (fp32): bitwise where the CPU picks the kernels it was made with
    assert (logits - golden["logits"]).abs().max().item() <= 1e-5
    assert (unet_out - golden["unet_out"]).abs().max().item() <= 1e-5


@pytest.mark.parametrize("config", [
    UNCOND,
    # additive embeddings, conv resampling, a head count, three levels, a 0.5 multiplier
    ADMConfig(in_channels=3, model_channels=64, out_channels=3, num_res_blocks=2, channel_mult=(0.5, 1, 1.5),
              attention_ds=frozenset({4}), num_head_channels=0, num_heads=2, use_scale_shift_norm=False,
              resblock_updown=False, num_classes=7),
])
def test_unet_configuration_is_read_off_the_weights(config):
    state = UNetModel(config).state_dict()
    kind, inferred = infer_config(state, config.num_head_channels, config.num_heads)
    assert kind == "unet" and inferred == config


@pytest.mark.parametrize("pool,updown", [("attention", True), ("adaptive", False)])
def test_classifier_configuration_is_read_off_the_weights(pool, updown):
    config = ADMConfig(in_channels=3, model_channels=32, out_channels=24, num_res_blocks=2, channel_mult=(1, 2, 2),
                       attention_ds=frozenset({2, 4}), num_head_channels=32, resblock_updown=updown, pool=pool,
                       image_size=32 if pool == "attention" else None)
    kind, inferred = infer_config(EncoderUNetModel(config).state_dict(), 32)
    assert kind == "classifier" and inferred == config


def test_wrong_kind_of_file_names_the_loader_to_use(make_executor, models_dir):
    g = Graph()
    g.node("LG_LoadADMClassifier", id="c", path="unet.safetensors", **HEADS)
    err = failure(make_executor, g.build(), "c")
    assert (err.node_id, err.input) == ("c", "path")
    assert "diffusion U-Net, not an ADM noisy classifier" in str(err) and "LG_LoadADM" in str(err)
    g = Graph()
    g.node("LG_LoadADM", id="u", path="classifier.pt", **HEADS)
    err = failure(make_executor, g.build(), "u")
    assert err.input == "path" and "noisy classifier, not an ADM diffusion U-Net" in str(err)


def test_shared_loader_points_adm_files_to_their_loaders(make_executor, models_dir):
    g = Graph()
    g.node("LG_LoadDenoiser", id="d", path="unet.safetensors")
    err = failure(make_executor, g.build(), "d")
    assert "ADM" in str(err) and "LG_LoadADM" in str(err)


def test_head_channels_that_do_not_divide_say_so(make_executor, models_dir):
    g = Graph()
    g.node("LG_LoadADM", id="u", path="unet.safetensors", num_head_channels=24)
    err = failure(make_executor, g.build(), "u")
    assert err.input == "path" and "num_head_channels" in str(err)


# --- sampling -----------------------------------------------------------------------------------


@pytest.mark.parametrize("solver", ["ddpm", "ddim"])
def test_sampler_expands_into_guided_steps(make_executor, models_dir, solver):
    executor = make_executor()
    g = Graph()
    sampler(g, solver=solver)
    (guided,) = executor.run(g.build(), targets=["sampler"]).outputs["sampler"]
    g.set("sampler", scale=0.0)
    (unguided,) = executor.run(g.build(), targets=["sampler"]).outputs["sampler"]
    assert guided["samples"].shape == (2, 3, 8, 8)
    assert not torch.equal(guided["samples"], unguided["samples"])
    assert guided["samples"].abs().max() <= 1.5  # x0 clipped, the last step is its posterior mean


def test_sampler_equals_the_steps_by_hand(make_executor, models_dir, unet_state, classifier_state):
    from latentgraph.nodes.adm import diffusion
    from latentgraph.nodes.adm.loaders import adm_schedule
    from latentgraph.nodes.diffusion.math import randn_like_diffusers

    g = Graph()
    sampler(g)
    (sample,) = make_executor().run(g.build(), targets=["sampler"]).outputs["sampler"]
    unet, clf = build(unet_state, "unet", **HEADS), build(classifier_state, "classifier", **HEADS)
    plan = diffusion.respaced_plan(adm_schedule("linear", 1000), "4")
    gen = torch.Generator().manual_seed(5)
    x = randn_like_diffusers((2, 3, 8, 8), gen)
    y = torch.tensor([1, 4])
    for i in range(plan.num_steps):
        t = plan.timesteps[i]
        with torch.no_grad():
            out = unet(x, t.expand(2), y)
        grad = diffusion.classifier_gradient(clf, x, t, y, 3.0)
        noise = randn_like_diffusers((2, 3, 8, 8), gen) if i < plan.num_steps - 1 else None
        x, _ = diffusion.ddpm_step(x, out, plan, i, noise, grad)
    assert torch.allclose(sample["samples"], x, atol=1e-6)


def test_lg_sampler_drives_an_unconditional_adm(make_executor, models_dir):
    g = Graph()
    model = g.node("LG_LoadADM", id="model", path="uncond.safetensors", **HEADS)
    empty = g.node("LG_ADMEmptySample", id="empty", denoiser=model, width=8, height=8)
    g.node("LG_Sampler", id="s", denoiser=model, latent=empty, steps=3, solver="ddim", cfg=1.0)
    (latent,) = make_executor().run(g.build(), targets=["s"]).outputs["s"]
    assert latent["samples"].shape == (1, 3, 8, 8) and torch.isfinite(latent["samples"]).all()


# --- bad input ----------------------------------------------------------------------------------


def test_label_out_of_range_names_input_and_range(make_executor, models_dir):
    g = Graph()
    sampler(g, labels="9")
    err = failure(make_executor, g.build(), "sampler")
    assert (err.node_id, err.input) == ("sampler", "labels")
    assert "9 is not a class of the classifier (0..4)" in str(err)


def test_classifier_gradient_node_checks_labels(make_executor, models_dir):
    g = Graph()
    model, clf = loaders(g)
    plan = g.node("LG_ADMPlan", id="plan", denoiser=model, respacing="4")
    empty = g.node("LG_ADMEmptySample", id="empty", denoiser=model, width=8, height=8)
    g.node("LG_ClassifierGradient", id="grad", classifier=clf, sample=empty, plan=plan, labels="-1")
    err = failure(make_executor, g.build(), "grad")
    assert (err.node_id, err.input) == ("grad", "labels") and "(0..4)" in str(err)


def test_classifier_of_another_resolution(make_executor, models_dir):
    g = Graph()
    sampler(g, width=16, height=16)
    err = failure(make_executor, g.build(), "sampler")
    assert err.input == "classifier" and "trained at 8x8" in str(err) and "16x16" in str(err)
    g = Graph()
    model, clf = loaders(g)
    plan = g.node("LG_ADMPlan", id="plan", denoiser=model, respacing="4")
    empty = g.node("LG_ADMEmptySample", id="empty", denoiser=model, width=16, height=16)
    g.node("LG_ClassifierGradient", id="grad", classifier=clf, sample=empty, plan=plan, labels="1")
    err = failure(make_executor, g.build(), "grad")
    assert (err.node_id, err.input) == ("grad", "sample") and "trained at 8x8" in str(err)


def test_bad_respacing_and_label_count(make_executor, models_dir):
    g = Graph()
    sampler(g, respacing="ddim999")
    err = failure(make_executor, g.build(), "sampler")
    assert err.input == "respacing" and "stride" in str(err)
    g = Graph()
    sampler(g, labels="1,2,3")
    err = failure(make_executor, g.build(), "sampler")
    assert err.input == "labels" and "3 labels for a batch of 2" in str(err)


def test_a_non_adm_denoiser_is_refused(make_executor):
    g = Graph()
    image = g.node("LG_EmptyImage", id="image", width=8, height=8)
    denoiser = g.node("LG_IdealDenoiser", id="ideal", images=image,
                      schedule=g.node("LG_NoiseSchedule", id="schedule", kind="linear"))
    g.node("LG_ADMSampler", id="sampler", denoiser=denoiser)
    err = failure(make_executor, g.build(), "sampler")
    assert err.input == "denoiser" and "LG_LoadADM" in str(err)



def test_shipped_guidance_graph_runs_on_the_tiny_models(make_executor, models_dir, shipped_graph):
    loader = {"num_head_channels": 16}
    sampling = {"labels": "1", "width": 8, "height": 8, "batch": 1, "respacing": "3"}
    graph = shipped_graph("adm_classifier_guidance", {
        "1": {"path": "unet.safetensors", **loader}, "2": {"path": "classifier.pt", **loader},
        "3": sampling, "4": sampling})
    result = make_executor().run(graph, targets=["5", "7"])
    (scale_1,), (scale_10,) = result.outputs["5"], result.outputs["7"]
    assert scale_1.shape == scale_10.shape == (1, 8, 8, 3)
    assert not torch.equal(scale_1, scale_10)
