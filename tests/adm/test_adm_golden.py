"""Parity with openai/guided-diffusion on seeded random weights (golden data of make_golden.py).

Tolerance 1e-5 (fp32): the networks are the same operations in the same order; the steps take
their coefficients from float64 tables rounded to float32, as the official code does, so what
remains is float32 rounding (measured max-abs errors are printed with -s).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import torch
from latentgraph.nodes.adm import diffusion
from latentgraph.nodes.adm.loaders import adm_schedule
from latentgraph.nodes.adm.model import EncoderUNetModel, UNetModel, infer_config

TOL = 1e-5
# "10" from 1000 keeps 0, 111, ..., 999; the official respaced index 5 is timestep 555, the
# 5th step of our descending plan; index 0 (timestep 0) is its last.
STEPS = {"mid": 4, "last": 9}


def check(name: str, ours: torch.Tensor, theirs: torch.Tensor, tol: float = TOL) -> None:
    err = (ours - theirs).abs().max().item()
    print(f"{name}: max abs error {err:.2e}")
    assert err <= tol, f"{name}: {err}"


def test_unet_and_classifier_outputs(adm_models, golden):
    unet, classifier = adm_models
    assert unet.config.learn_sigma and unet.config.num_classes == 5
    assert classifier.config.image_size == 8 and classifier.config.pool == "attention"
    with torch.no_grad():
        check("unet", unet(golden["x"], golden["t"], golden["y"]), golden["unet_out"])
        check("logits", classifier(golden["x"], golden["t"]), golden["logits"])


def test_classifier_gradient_is_cond_fn(adm_models, golden):
    _, classifier = adm_models
    with torch.no_grad():  # nodes may run without autograd: the gradient turns it on itself
        grad = diffusion.classifier_gradient(classifier, golden["x"], golden["t"][0], golden["y"], 3.0)
    check("gradient", grad, golden["gradient"])
    with torch.inference_mode():
        x = golden["x"].clone()  # an inference tensor, as a host running nodes in inference mode makes
        assert torch.equal(diffusion.classifier_gradient(classifier, x, golden["t"][0], golden["y"], 3.0), grad)


def test_respacing_matches_space_timesteps(respacings):
    for text, kept in respacings.items():
        assert diffusion.space_timesteps(1000, text) == kept, text


@pytest.mark.parametrize("label", ["mid", "last"])
def test_guided_steps(adm_models, golden, label):
    unet, classifier = adm_models
    x, y = golden["x"], golden["y"]
    plans = {solver: diffusion.respaced_plan(adm_schedule("linear", 1000), "10", solver) for solver in ("ddpm", "ddim")}
    index = STEPS[label]
    t = plans["ddpm"].timesteps[index]
    with torch.no_grad():
        out = unet(x, t.expand(2), y)
    grad = diffusion.classifier_gradient(classifier, x, t, y, 3.0)
    mv = diffusion.p_mean_variance(x, out, plans["ddpm"], index)
    check(f"log variance {label}", mv.log_variance, golden[f"log_variance_{label}"])
    cases = {
        "ddpm": lambda noise: diffusion.ddpm_step(x, out, plans["ddpm"], index, noise, grad),
        "ddpm_unguided": lambda noise: diffusion.ddpm_step(x, out, plans["ddpm"], index, noise),
        "ddpm_unclipped": lambda noise: diffusion.ddpm_step(x, out, plans["ddpm"], index, noise, grad, False),
        "ddim_unclipped": lambda noise: diffusion.ddim_step(x, out, plans["ddim"], index, 0.0, None, grad, False),
        "ddim": lambda noise: diffusion.ddim_step(x, out, plans["ddim"], index, 0.0, None, grad),
        "ddim_eta": lambda noise: diffusion.ddim_step(x, out, plans["ddim"], index, 0.5, noise, grad),
    }
    for name, step in cases.items():
        sample, x0 = step(golden[f"noise_{name}_{label}"])
        check(f"{name} {label} sample", sample, golden[f"{name}_{label}_sample"])
        check(f"{name} {label} x0", x0, golden[f"{name}_{label}_x0"])


EXPECTED = {  # what guided-diffusion's README flags say of each released network
    "64x64_diffusion": ((1, 2, 3, 4), 3, {2, 4, 8}, 1000, None),
    "128x128_diffusion": ((1, 1, 2, 3, 4), 2, {4, 8, 16}, 1000, None),
    "256x256_diffusion": ((1, 1, 2, 2, 4, 4), 2, {8, 16, 32}, 1000, None),
    "256x256_diffusion_uncond": ((1, 1, 2, 2, 4, 4), 2, {8, 16, 32}, None, None),
    "512x512_diffusion": ((0.5, 1, 1, 2, 2, 4, 4), 2, {16, 32, 64}, 1000, None),
    "64x64_classifier": ((1, 2, 3, 4), 4, {2, 4, 8}, None, 64),
    "128x128_classifier": ((1, 1, 2, 3, 4), 2, {4, 8, 16}, None, 128),
    "256x256_classifier": ((1, 1, 2, 2, 4, 4), 2, {8, 16, 32}, None, 256),
    "512x512_classifier": ((0.5, 1, 1, 2, 2, 4, 4), 2, {16, 32, 64}, None, 512),
}


def test_released_layouts_are_read_right():
    """The released checkpoints' key names and shapes (from the official code, on the meta device)
    give the configuration their flags say, and our networks of it have exactly those keys."""
    with gzip.open(Path(__file__).parent / "golden" / "released_layouts.json.gz", "rt") as f:
        layouts = json.load(f)
    assert set(layouts) == set(EXPECTED)
    for name, layout in layouts.items():
        state = {k: torch.empty(shape, device="meta") for k, shape in layout["shapes"].items()}
        kind, config = infer_config(state, layout["num_head_channels"], layout["num_heads"])
        mult, blocks, attention, classes, side = EXPECTED[name]
        assert (config.channel_mult, config.num_res_blocks, set(config.attention_ds), config.num_classes,
                config.image_size) == (mult, blocks, attention, classes, side), name
        assert config.use_scale_shift_norm and config.resblock_updown, name
        assert kind == "classifier" or config.learn_sigma, name
        with torch.device("meta"):
            ours = (UNetModel if kind == "unet" else EncoderUNetModel)(config)
        assert {k: list(v.shape) for k, v in ours.state_dict().items()} == layout["shapes"], name
