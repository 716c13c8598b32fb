"""The StyleGAN2 trainer on the CPU, a few steps: the export loads through LG_LoadStyleGAN's
loader with its config, and a run stopped and resumed ends bit for bit where a straight one does."""

from __future__ import annotations

import pytest
import torch
from latentgraph.nodes.stylegan.loading import load_generator
from latentgraph.training import train_stylegan

SMOKE = ["--batch", "4", "--pool", "48", "--ckpt-every", "1", "--r1-every", "2"]
QUIET = ["--eval-per-class", "0"]


def checkpoint(out):
    return torch.load(f"{out}.ckpt/checkpoint.pt", map_location="cpu", weights_only=True)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_trainer_exports_a_loadable_generator_and_resumes_bit_exact(tmp_path, capsys):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert train_stylegan.main(["--out", str(straight), "--steps", "2", *SMOKE, "--eval-per-class", "1"]) == straight
    assert "checker correct" in capsys.readouterr().out
    g = load_generator(straight / "generator.safetensors", torch.device("cpu"), torch.float32)
    assert g.config == train_stylegan.CONFIG and g.c_dim == 24
    assert (straight / "generator.safetensors").stat().st_size < 2.5e6

    assert train_stylegan.main(["--out", str(resumed), "--steps", "1", *SMOKE, *QUIET]) == resumed
    assert checkpoint(resumed)["step"] == 1
    assert train_stylegan.main(["--out", str(resumed), "--steps", "2", *SMOKE, *QUIET]) == resumed
    a, b = checkpoint(straight), checkpoint(resumed)
    assert b["step"] == 2 and torch.equal(a["gen"], b["gen"])
    for part in ("G", "D", "G_ema"):
        for name, tensor in a[part].items():
            assert torch.equal(tensor, b[part][name]), f"{part}.{name}"
