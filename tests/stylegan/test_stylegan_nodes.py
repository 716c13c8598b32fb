"""The StyleGAN nodes through the executor: mapping + synthesis equal the generator called
directly, truncation and mixing act on the rows they should, noise modes, BigGAN's truncated
noise, and bad input refused with the node and the input named."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import CPU, GOLDEN
from graph_helpers import Graph
from latentgraph import Executor
from latentgraph.executor import Folders, NodeFailed, WorkflowInvalid
from latentgraph.nodes.stylegan.loading import load_generator
from latentgraph.nodes.stylegan.model import truncate
from latentgraph.nodes.stylegan.noise import gaussian_z, truncated_normal

COND, UNCOND = "gan/conditional.safetensors", "gan/unconditional.safetensors"
GRAPHS = Path(__file__).resolve().parents[2] / "graphs"


@pytest.fixture
def gan_folders(folders: Folders) -> Folders:
    (folders.models / "gan").mkdir()
    for name in ("conditional", "unconditional"):
        shutil.copy(GOLDEN / f"{name}_weights.safetensors", folders.models / "gan" / f"{name}.safetensors")
    return folders


@pytest.fixture
def executor(gan_folders: Folders) -> Executor:
    return Executor(device="cpu", folders=gan_folders)


def mapping_graph(path: str = COND, **mapping) -> tuple[Graph, object, object]:
    g = Graph()
    gen = g.node("LG_LoadStyleGAN", id="load", path=path)
    settings = {"seed": 5, "batch_size": 2, "class_label": 3, "psi": 0.7, "cutoff": -1, **mapping}
    ws = g.node("LG_StyleGANMapping", id="map", generator=gen, **settings)
    return g, gen, ws


def synthesis_graph(path: str = COND, noise_mode: str = "const", seed: int = 0, **mapping) -> dict:
    g, gen, ws = mapping_graph(path, **mapping)
    g.node("LG_StyleGANSynthesis", id="synth", generator=gen, ws=ws, noise_mode=noise_mode, seed=seed)
    return g.build()


def run(executor: Executor, graph: dict, node: str = "synth"):
    return executor.run(graph, targets=[node]).outputs[node][0]


def test_mapping_and_synthesis_equal_the_generator(executor, conditional):
    image = run(executor, synthesis_graph(psi=0.5, cutoff=4))
    z = torch.from_numpy(np.stack([np.random.RandomState(s).randn(16) for s in (5, 6)])).float()
    c = torch.zeros(2, 24)
    c[:, 3] = 1
    expected = conditional(z, c, psi=0.5, cutoff=4, noise_mode="const")
    assert image.shape == (2, 32, 32, 3) and 0 <= image.min() and image.max() <= 1
    assert torch.allclose(image, (expected * 0.5 + 0.5).clamp(0, 1).permute(0, 2, 3, 1), atol=1e-6)


def test_truncation_acts_below_the_cutoff_only(executor, conditional):
    full = run(executor, mapping_graph(psi=1.0)[0].build(), "map")
    cut = run(executor, mapping_graph(psi=0.0, cutoff=3)[0].build(), "map")
    assert torch.allclose(cut[:, :3], conditional.mapping.w_avg.expand(2, 3, -1), atol=1e-6)
    assert torch.equal(cut[:, 3:], full[:, 3:])
    half = run(executor, mapping_graph(psi=0.5)[0].build(), "map")
    assert torch.allclose(half, truncate(full, conditional.mapping.w_avg, 0.5, None))


def test_style_mix_takes_the_layers_from_the_crossover(executor):
    g, gen, ws_a = mapping_graph(seed=1)
    ws_b = g.node("LG_StyleGANMapping", id="map_b", generator=gen, seed=9, batch_size=2, class_label=3)
    g.node("LG_StyleMix", id="mix", ws_a=ws_a, ws_b=ws_b, crossover=5)
    result = executor.run(g.build(), targets=["mix", "map", "map_b"]).outputs
    mixed, a, b = result["mix"][0], result["map"][0], result["map_b"][0]
    assert torch.equal(mixed[:, :5], a[:, :5]) and torch.equal(mixed[:, 5:], b[:, 5:])


def test_noise_modes(executor):
    const = run(executor, synthesis_graph(noise_mode="const", seed=1))
    assert torch.equal(const, run(executor, synthesis_graph(noise_mode="const", seed=2)))
    random_1 = run(executor, synthesis_graph(noise_mode="random", seed=1))
    assert torch.equal(random_1, run(executor, synthesis_graph(noise_mode="random", seed=1)))
    assert not torch.equal(random_1, run(executor, synthesis_graph(noise_mode="random", seed=2)))
    none = run(executor, synthesis_graph(noise_mode="none"))
    assert not torch.equal(none, const) and not torch.equal(none, random_1)


def test_unconditional_generator_and_linked_truncated_noise(executor):
    g = Graph()
    gen = g.node("LG_LoadStyleGAN", id="load", path=UNCOND)
    z = g.node("LG_TruncatedNoise", id="z", batch_size=3, dim=16, bound=1.0, scale=1.0, seed=4)
    ws = g.node("LG_StyleGANMapping", id="map", generator=gen, z=z, class_label=-1, psi=0.7)
    g.node("LG_StyleGANSynthesis", id="synth", generator=gen, ws=ws)
    result = executor.run(g.build(), targets=["synth", "z"]).outputs
    assert result["synth"][0].shape == (3, 16, 16, 3)
    assert torch.equal(result["z"][0], truncated_normal(4, 3, 16, 1.0))


def test_seeded_z_is_the_official_generate_draw():
    z = gaussian_z(85, 3, 8)
    for i, seed in enumerate((85, 86, 87)):
        assert torch.equal(z[i], torch.from_numpy(np.random.RandomState(seed).randn(1, 8)[0]).float())


def test_truncated_normal_matches_scipy_and_biggan():
    """BigGAN's truncated_noise_sample(batch, dim, truncation, seed) is truncation *
    truncnorm.rvs(-2, 2, size=(batch, dim), random_state=RandomState(seed)).astype(float32)."""
    z = truncated_normal(3, 4, 2000, 0.5)
    assert z.abs().max() <= 0.5 and z.std() < 0.35  # N(0,1) on [-.5, .5]: std 0.2841
    stats = pytest.importorskip("scipy.stats")
    for seed, bound, scale in ((0, 2.0, 0.4), (7, 0.5, 1.0), (1, 3.0, 1.0)):
        state = np.random.RandomState(seed)
        biggan = scale * stats.truncnorm.rvs(-bound, bound, size=(3, 64), random_state=state).astype(np.float32)
        assert np.abs(truncated_normal(seed, 3, 64, bound, scale).numpy() - biggan).max() <= 1e-6


def test_psi_outside_0_1_warns_and_beyond_2_is_refused(executor):
    with pytest.warns(UserWarning, match="input 'psi'.*outside 0..1"):
        run(executor, mapping_graph(psi=1.5)[0].build(), "map")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run(executor, mapping_graph(psi=0.7)[0].build(), "map")
    with pytest.raises(WorkflowInvalid) as invalid:
        executor.run(mapping_graph(psi=2.5)[0].build(), targets=["map"])
    assert {(i.node_id, i.input) for i in invalid.value.issues} == {("map", "psi")}


MAPPING_ERRORS = [
    # (graph settings, input at fault, words)
    ({"class_label": 24}, "class_label", "24 is not a class of this generator (0..23)"),
    ({"class_label": -1}, "class_label", "is not a class"),
    ({"path": UNCOND, "class_label": 2}, "class_label", "unconditional"),
    ({"cutoff": 9}, "cutoff", "beyond this generator's 8 layers"),
]


@pytest.mark.parametrize(("settings", "at_fault", "words"), MAPPING_ERRORS)
def test_mapping_errors_name_node_and_input(executor, settings, at_fault, words):
    settings = dict(settings)
    g, _, _ = mapping_graph(settings.pop("path", COND), **settings)
    with pytest.raises(NodeFailed) as failure:
        executor.run(g.build(), targets=["map"])
    assert (failure.value.node_id, failure.value.error.input_name) == ("map", at_fault)
    assert words in str(failure.value)


def test_style_mix_errors(executor):
    g, gen, ws_a = mapping_graph()
    other = g.node("LG_LoadStyleGAN", id="other", path=UNCOND)
    ws_b = g.node("LG_StyleGANMapping", id="map_b", generator=other, class_label=-1)
    g.node("LG_StyleMix", id="mix", ws_a=ws_a, ws_b=ws_a, crossover=9)
    g.node("LG_StyleMix", id="foreign", ws_a=ws_a, ws_b=ws_b, crossover=2)
    g.node("LG_StyleGANSynthesis", id="synth", generator=other, ws=ws_a)
    for node, at_fault, words in (("mix", "crossover", "beyond the 8 layers"),
                                  ("foreign", "ws_b", "does not match"),
                                  ("synth", "ws", "8 layers of ws, but the generator has 6")):
        with pytest.raises(NodeFailed) as failure:
            executor.run(g.build(), targets=[node])
        assert (failure.value.node_id, failure.value.error.input_name) == (node, at_fault)
        assert words in str(failure.value)


def test_linked_z_of_the_wrong_width(executor):
    g = Graph()
    gen = g.node("LG_LoadStyleGAN", id="load", path=COND)
    z = g.node("LG_TruncatedNoise", id="z", dim=512)
    g.node("LG_StyleGANMapping", id="map", generator=gen, z=z, class_label=0)
    with pytest.raises(NodeFailed) as failure:
        executor.run(g.build(), targets=["map"])
    assert failure.value.error.input_name == "z" and "[batch, 16]" in str(failure.value)


def test_shared_loader_points_to_the_stylegan_loader(executor):
    g = Graph()
    g.node("LG_LoadCheckpoint", id="ckpt", path=COND)
    with pytest.raises(NodeFailed) as failure:
        executor.run(g.build(), targets=["ckpt"])
    assert "StyleGAN2 generator" in str(failure.value) and "LG_LoadStyleGAN" in str(failure.value)


def test_truncation_graph_runs_on_golden_weights(executor, gan_folders):
    graph = json.loads((GRAPHS / "stylegan_truncation.json").read_text())
    for call in graph.values():
        if call["class_type"] == "LG_LoadStyleGAN":
            call["inputs"]["path"] = COND
    result = executor.run(graph)
    saved = [item for ui in result.ui.values() for item in ui["images"]]
    assert len(saved) == 3 * 8 and all((gan_folders.output / i["filename"]).is_file() for i in saved)


def test_loader_reads_fp16_storage(gan_folders, conditional):
    from safetensors.torch import load_file, save_file

    half = {k: v.half() for k, v in load_file(GOLDEN / "conditional_weights.safetensors").items()}
    save_file(half, gan_folders.models / "gan" / "half.safetensors")
    g = load_generator(gan_folders.models / "gan" / "half.safetensors", CPU, torch.float32)
    assert g.mapping.fc0.weight.dtype == torch.float32 and g.config == conditional.config
