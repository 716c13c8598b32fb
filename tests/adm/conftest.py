"""The ADM golden data (made by the official guided-diffusion code, see make_golden.py) and the
tiny networks built from it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

GOLDEN = Path(__file__).parent / "golden"
TRUNK = ("time_embed.", "input_blocks.", "middle_block.")


@pytest.fixture(scope="session")
def golden() -> dict[str, torch.Tensor]:
    return load_file(str(GOLDEN / "io.safetensors"))


@pytest.fixture(scope="session")
def respacings() -> dict[str, list[int]]:
    return json.loads((GOLDEN / "respacing.json").read_text())


@pytest.fixture(scope="session")
def unet_state() -> dict[str, torch.Tensor]:
    """The U-Net's state dict in the official layout (stored as fp16 values)."""
    return {k: v.float() for k, v in load_file(str(GOLDEN / "unet.safetensors")).items()}


@pytest.fixture(scope="session")
def classifier_state(unet_state) -> dict[str, torch.Tensor]:
    """The classifier's official state dict: the U-Net's encoder and middle block, its own head."""
    head = {k: v.float() for k, v in load_file(str(GOLDEN / "classifier_head.safetensors")).items()}
    return {**{k: v for k, v in unet_state.items() if k.startswith(TRUNK)}, **head}


@pytest.fixture(scope="session")
def adm_models(unet_state, classifier_state):
    from latentgraph.nodes.adm.model import build

    return build(unet_state, "unet", num_head_channels=16), build(classifier_state, "classifier", num_head_channels=16)
