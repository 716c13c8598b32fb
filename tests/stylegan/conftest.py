"""Shared fixtures of the StyleGAN2 tests: the golden data made by the official code
(``make_golden.py``; committed in ``golden/``) and our generators built from its weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from latentgraph.nodes.stylegan.loading import load_generator
from safetensors.torch import load_file

GOLDEN = Path(__file__).resolve().parent / "golden"
NAMES = ("conditional", "unconditional")
CPU = torch.device("cpu")


@pytest.fixture(scope="session")
def golden():
    """golden(name) -> (weights path, init kwargs, cases)."""

    def read(name: str):
        kwargs = json.loads((GOLDEN / f"{name}_kwargs.json").read_text())
        return GOLDEN / f"{name}_weights.safetensors", kwargs, load_file(GOLDEN / f"{name}_cases.safetensors")

    return read


@pytest.fixture(scope="session")
def conditional(golden):
    path, _, _ = golden("conditional")
    return load_generator(path, CPU, torch.float32)
