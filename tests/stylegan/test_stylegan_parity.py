"""Our StyleGAN2 generator against the official stylegan2-ada-pytorch code.

The golden data (``golden/``, made by ``make_golden.py`` from seeded random weights with the
official code, custom ops on their reference path) holds z, c, ws and images for psi 1, 0.7,
0.5 (all layers), psi 0.5 below layer 4, and a style mix, noise_mode 'const'. Tolerance 1e-5 in
fp32: both sides run the same float operations in the same order (measured max-abs error 0.0 on
the CPU), and 1e-5 leaves room for another BLAS's summation order on outputs of magnitude ~2.

The generator is read from the state dict (safetensors, a weights-only torch.save file) and from
a network pickle of the official structure made here (``network_pickles.py``; the official
pickle embeds the official source, so it is not committed). Set LATENTGRAPH_STYLEGAN_PICKLES to
a folder of pickles written by ``make_golden.py --pickle-out`` to check the real ones too.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from conftest import CPU, NAMES
from latentgraph.nodes.stylegan.loading import load_generator
from latentgraph.nodes.stylegan.model import Generator, truncate
from make_golden import CASES, MIX_CROSSOVER
from network_pickles import network_pickle
from safetensors.torch import load_file

TOLERANCE = 1e-5


def check_against_golden(g: Generator, cases: dict[str, torch.Tensor]) -> float:
    """The largest max-abs error over every golden output."""
    worst = 0.0
    with torch.no_grad():
        c = cases["c"] if g.c_dim else None
        ws = g.mapping(cases["z"], c)
        worst = max(worst, (ws - cases["ws"]).abs().max().item())
        for case, (psi, cutoff) in CASES.items():
            truncated = truncate(ws, g.mapping.w_avg, psi, cutoff)
            image = g.synthesis(truncated, noise_mode="const")
            worst = max(worst, (truncated - cases[f"ws_{case}"]).abs().max().item(),
                        (image - cases[f"image_{case}"]).abs().max().item())
            both = g(cases["z"], c, psi=psi, cutoff=cutoff, noise_mode="const")
            worst = max(worst, (both - cases[f"image_{case}"]).abs().max().item())
        mixed = ws.clone()
        mixed[:, MIX_CROSSOVER:] = g.mapping(cases["z_mix"], c)[:, MIX_CROSSOVER:]
        image = g.synthesis(mixed, noise_mode="const")
        worst = max(worst, (image - cases["image_mix"]).abs().max().item())
    return worst


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_matches_the_official_generator(golden, name):
    path, kwargs, cases = golden(name)
    g = load_generator(path, CPU, torch.float32)
    assert g.c_dim == kwargs["c_dim"] and g.z_dim == kwargs["z_dim"]
    assert g.img_resolution == kwargs["img_resolution"]
    assert check_against_golden(g, cases) <= TOLERANCE


@pytest.mark.parametrize("name", NAMES)
def test_torch_save_state_dict_reads_weights_only(golden, tmp_path, name):
    path, _, cases = golden(name)
    pt = tmp_path / "G_ema.pt"
    torch.save(load_file(path), pt)  # torch.save(G_ema.state_dict()), the common layout
    assert check_against_golden(load_generator(pt, CPU, torch.float32), cases) <= TOLERANCE


@pytest.mark.parametrize("name", NAMES)
def test_network_pickle_matches_the_official_generator(golden, tmp_path, name):
    path, kwargs, cases = golden(name)
    ours = load_generator(path, CPU, torch.float32)
    pkl = tmp_path / "network-snapshot.pkl"
    network_pickle(pkl, ours, kwargs)
    g = load_generator(pkl, CPU, torch.float32)
    assert g.config == ours.config
    assert check_against_golden(g, cases) <= TOLERANCE


def test_pickle_init_kwargs_give_what_the_shapes_do_not(golden, tmp_path):
    path, kwargs, _ = golden("conditional")
    ours = load_generator(path, CPU, torch.float32)
    pkl = tmp_path / "clamped.pkl"
    network_pickle(pkl, ours, {**kwargs, "synthesis_kwargs": {**kwargs["synthesis_kwargs"],
                                                              "conv_clamp": 256},
                               "mapping_kwargs": {"num_layers": 2, "lr_multiplier": 0.02}})
    g = load_generator(pkl, CPU, torch.float32)
    assert g.config.conv_clamp == 256 and g.config.lr_multiplier == 0.02
    assert g.mapping.fc0.weight_gain == pytest.approx(0.02 / (g.z_dim + g.config.embed_features) ** 0.5)


OFFICIAL_PICKLES = os.environ.get("LATENTGRAPH_STYLEGAN_PICKLES")


@pytest.mark.skipif(not OFFICIAL_PICKLES, reason="LATENTGRAPH_STYLEGAN_PICKLES is not set (a folder "
                    "of pickles from make_golden.py --pickle-out)")
@pytest.mark.parametrize("name", NAMES)
def test_real_official_pickle(golden, name):
    _, _, cases = golden(name)
    g = load_generator(Path(OFFICIAL_PICKLES) / f"{name}.pkl", CPU, torch.float32)
    assert check_against_golden(g, cases) <= TOLERANCE


def test_training_path_equals_the_fused_inference_path(conditional, golden):
    """The unfused modulation (scaling activations around one shared convolution, as training
    runs) computes what the fused per-sample weights do."""
    _, _, cases = golden("conditional")
    with torch.no_grad():
        ws = conditional.mapping(cases["z"], cases["c"])
        fused = conditional.synthesis(ws, fused=True)
        unfused = conditional.synthesis(ws, fused=False)
    assert (fused - unfused).abs().max() <= TOLERANCE
