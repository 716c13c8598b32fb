"""The tiny MM-DiTs (SD3-medium, SD3.5-large and SD3.5-medium architectures) load strictly from
Stability's single files, ComfyUI's wrapped keys and fp8 copies, and equal the diffusers folder;
their configs are read off the shapes; wrong weights are refused naming the file."""

from __future__ import annotations

import pytest
import tiny_text
import tiny_transformers
import torch
from graph_helpers import one_node
from latentgraph.executor import InputError, NodeFailed
from latentgraph.nodes.diffusion.denoiser import TextEmbeds
from latentgraph.nodes.sd3.single_file import infer_config
from safetensors.torch import save_file


def load(executor, path: str):
    return executor.run(one_node("LG_LoadDenoiser", path=path), ["1"]).outputs["1"][0]


def probe(denoiser, skip=None) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    sample = torch.randn(2, 16, 8, 8, generator=gen)
    context = TextEmbeds(torch.randn(2, 11, 32, generator=gen), pooled=torch.randn(2, 64, generator=gen))
    if skip is not None:
        return denoiser.forward_skipping(sample, torch.tensor(700.0), context, skip)
    return denoiser.forward(sample, torch.tensor(700.0), context)


def reference(model) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    sample = torch.randn(2, 16, 8, 8, generator=gen)
    embeds, pooled = torch.randn(2, 11, 32, generator=gen), torch.randn(2, 64, generator=gen)
    with torch.no_grad():
        return model(sample, embeds, pooled, torch.tensor([700.0, 700.0]), return_dict=False)[0]


@pytest.mark.parametrize("variant", tiny_transformers.SD3_VARIANTS)
@pytest.mark.parametrize("layout", ["{v}/transformer", "{v}.safetensors", "{v}_comfy.safetensors"])
def test_layouts_equal_the_diffusers_model(variant, layout, sd3_executor, sd3_models):
    denoiser = load(sd3_executor, "sd3/" + layout.format(v=variant))
    assert torch.equal(probe(denoiser), reference(sd3_models[variant]))  # the same arithmetic: bitwise
    assert denoiser.schedule.is_flow and denoiser.schedule.shift == 3.0


@pytest.mark.parametrize("variant", tiny_transformers.SD3_VARIANTS)
def test_config_is_read_off_the_weights(variant, sd3_models):
    model = sd3_models[variant]
    inferred = infer_config(tiny_transformers.sd3_to_original(model), "test")
    assert {k: model.config[k] for k in inferred if k != "sample_size"} == {
        k: v for k, v in inferred.items() if k != "sample_size"
    }


def test_fp8_weights_are_cast_to_the_compute_dtype(sd3_executor, sd3_models):
    denoiser = load(sd3_executor, "sd3/sd35_medium_fp8.safetensors")
    assert denoiser.placement[1] == torch.float32
    rounded = tiny_transformers.sd3(seed=2, variant="sd35_medium")
    rounded.load_state_dict({k: v.to(torch.float8_e4m3fn).float() for k, v in rounded.state_dict().items()})
    assert torch.equal(probe(denoiser), reference(rounded))


@pytest.mark.parametrize("style", ["legacy", "comfy_quant"])
def test_scaled_fp8_files_load_as_fp8_times_scale(style, sd3_executor, sd3_root, sd3_models):
    """ComfyUI's scaled fp8 checkpoints (sd3.5_large_fp8_scaled: each linear weight fp8 /
    per-tensor scale, under model.diffusion_model.) equal an fp32 file of fp8 x scale: bitwise."""
    original = tiny_transformers.sd3_to_original(sd3_models["sd35_medium"])
    scaled, fp32 = tiny_text.save_scaled_fp8_pair(original, sd3_root.models / "sd3", style)
    assert torch.equal(probe(load(sd3_executor, f"sd3/{scaled}")), probe(load(sd3_executor, f"sd3/{fp32}")))


def test_skip_layer_forward_equals_diffusers(sd3_executor, sd3_models):
    denoiser = load(sd3_executor, "sd3/sd35_medium/transformer")
    gen = torch.Generator().manual_seed(0)
    sample = torch.randn(2, 16, 8, 8, generator=gen)
    embeds, pooled = torch.randn(2, 11, 32, generator=gen), torch.randn(2, 64, generator=gen)
    with torch.no_grad():
        ref = sd3_models["sd35_medium"](sample, embeds, pooled, torch.tensor([700.0] * 2), return_dict=False,
                                        skip_layers=[1])[0]
    assert torch.equal(probe(denoiser, skip=[1]), ref)
    assert not torch.equal(ref, reference(sd3_models["sd35_medium"]))


def failure(executor, path: str) -> InputError:
    with pytest.raises(NodeFailed) as info:
        load(executor, path)
    assert isinstance(info.value.error, InputError) and info.value.error.input_name == "path"
    return info.value.error


def test_incomplete_and_extended_files_are_refused(sd3_executor, sd3_root, sd3_models):
    original = tiny_transformers.sd3_to_original(sd3_models["sd3"])
    root = sd3_root.models / "sd3"
    save_file({k: v for k, v in original.items() if "final_layer.linear" not in k}, str(root / "cut.safetensors"))
    save_file({**original, "joint_blocks.0.x_block.extra.weight": torch.zeros(2)}, str(root / "extra.safetensors"))
    assert "cut.safetensors" in str(failure(sd3_executor, "sd3/cut.safetensors"))
    message = str(failure(sd3_executor, "sd3/extra.safetensors"))
    assert "extra.safetensors" in message and "joint_blocks.0.x_block.extra.weight" in message


def test_embeddings_of_another_family_are_refused_by_name(sd3_executor):
    from latentgraph.nodes.diffusion.math import ArgumentError

    denoiser = load(sd3_executor, "sd3/sd3/transformer")
    flux_like = TextEmbeds(torch.zeros(1, 512, 32), pooled=torch.zeros(1, 32))
    with pytest.raises(ArgumentError, match="encoded for another model family") as info:
        denoiser.forward(torch.zeros(1, 16, 8, 8), torch.tensor(500.0), flux_like)
    assert info.value.argument == "positive"


@pytest.mark.parametrize("config", [{}, {"max_shift": 1.2, "time_shift_type": "linear", "shift_terminal": 0.1}])
def test_dynamic_shift_config_plans_as_the_pipeline(config, sd3_models):
    """An SD3 scheduler config with use_dynamic_shifting: mu from the latent's 2x2 patches
    (StableDiffusion3Pipeline's calculate_shift over the config's values), equal plans."""
    import numpy as np
    from diffusers import FlowMatchEulerDiscreteScheduler
    from diffusers.pipelines.stable_diffusion_3.pipeline_stable_diffusion_3 import calculate_shift
    from latentgraph.nodes.diffusion.solvers import make_plan
    from latentgraph.nodes.sd3.models import SD3Denoiser
    from latentgraph.nodes.sd3.scheduling import flow_match

    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, **config)
    denoiser = SD3Denoiser(sd3_models["sd3"], flow_match(dict(scheduler.config), "test", 1.16))
    options = denoiser.plan_options(torch.zeros(1, 16, 96, 64))
    c = scheduler.config  # the pipeline reads these (its own defaults only for keys left out)
    mu = calculate_shift(48 * 32, c.base_image_seq_len, c.max_image_seq_len, c.base_shift, c.max_shift)
    assert options.pop("mu") == pytest.approx(mu, abs=1e-12)
    scheduler.set_timesteps(7, mu=mu)
    plan = make_plan(denoiser.schedule, 7, "flow_euler", mu=mu, **options)
    assert torch.equal(plan.sigmas, scheduler.sigmas) and torch.equal(plan.timesteps, scheduler.timesteps)
    assert np.isclose(denoiser.schedule.shift, 1.0)


def test_an_mmdit_file_is_not_a_whole_model(sd3_executor):
    with pytest.raises(NodeFailed) as info:
        sd3_executor.run(one_node("LG_LoadCheckpoint", path="sd3/sd35_large.safetensors"), ["1"])
    assert info.value.error.input_name == "path"
    assert "sd35_large.safetensors holds an SD3 / SD3.5 MM-DiT, not a whole model" in str(info.value)
