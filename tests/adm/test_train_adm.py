"""CPU smoke test of training/train_adm.py: a few steps of each network, the export loads
through the ADM loaders' configuration reading, and a rerun resumes from the checkpoint."""

from __future__ import annotations

import torch
from latentgraph.nodes.adm.model import build
from latentgraph.training import train_adm
from safetensors.torch import load_file


def test_trainer_exports_loadable_weights_and_resumes(tmp_path, capsys):
    out = tmp_path / "shapes_adm"
    common = ["--out", str(out), "--device", "cpu", "--images", "24", "--batch", "4", "--eval-images", "0"]
    train_adm.main([*common, "--unet-steps", "2", "--classifier-steps", "1"])
    unet = build({k: v.float() for k, v in load_file(str(out / "unet.safetensors")).items()}, "unet",
                 num_head_channels=train_adm.HEAD_CHANNELS)
    classifier = build({k: v.float() for k, v in load_file(str(out / "classifier.safetensors")).items()},
                       "classifier", num_head_channels=train_adm.HEAD_CHANNELS)
    assert unet.config == train_adm.UNET_CONFIG and classifier.config == train_adm.CLASSIFIER_CONFIG
    train_adm.main([*common, "--unet-steps", "3", "--classifier-steps", "1"])
    assert "resumed at U-Net step 2, classifier step 1" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["classifier.safetensors", "unet.safetensors"]
    state = torch.load(tmp_path / "shapes_adm.ckpt" / "checkpoint.pt", weights_only=True)
    assert int(state["unet_step"]) == 3


def test_hybrid_loss_terms():
    """The decoder NLL is small where the Gaussian sits on the pixel's bin, the KL zero for equal Gaussians."""
    x = torch.full((1, 1, 1, 1), 0.2)
    tight = train_adm.discretized_gaussian_nll(x, x, torch.full_like(x, -8.0))
    loose = train_adm.discretized_gaussian_nll(x, x, torch.full_like(x, 0.0))
    assert tight.item() < 1e-3 < loose.item()
    assert train_adm.normal_kl(x, x.log(), x, x.log()).abs().item() < 1e-7
