"""Shared fixtures for the VAR golden-parity tests.

The golden files in shared/fixtures/var were produced by the official FoundationVision/VAR code
(see the README there). Weights are stored as float8 and loaded with an exact `.float()`. They
are looked for beside the repository, or where LATENTGRAPH_FIXTURES points (fixture_paths.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from fixture_paths import HOW_TO_POINT, var_fixtures
from latentgraph.nodes.var.model import VAR, VQVAE, load_var, load_vqvae
from safetensors.torch import load_file

FIXTURE_DIR = var_fixtures()


@pytest.fixture(scope="session")
def fixture_dir() -> Path:
    if not (FIXTURE_DIR / "configs.json").is_file():
        pytest.skip(f"VAR golden fixtures not found at {FIXTURE_DIR}: {HOW_TO_POINT}")
    return FIXTURE_DIR


@pytest.fixture(scope="session")
def configs(fixture_dir: Path) -> dict[str, Any]:
    return json.loads((fixture_dir / "configs.json").read_text())


@pytest.fixture(scope="session")
def golden(fixture_dir: Path) -> Callable[[str], dict[str, torch.Tensor]]:
    """Load one golden tensor file by stem, e.g. golden("vqvae_io")."""
    return lambda stem: load_file(str(fixture_dir / f"{stem}.safetensors"))


@pytest.fixture(scope="session")
def patch_nums(configs: dict[str, Any]) -> tuple[int, ...]:
    return tuple(configs["var"]["patch_nums"])


@pytest.fixture(scope="session")
def vqvae(fixture_dir: Path, configs: dict[str, Any]) -> VQVAE:
    return load_vqvae(
        fixture_dir / "vqvae_weights.safetensors", patch_nums=configs["vqvae"]["v_patch_nums"]
    )


@pytest.fixture(scope="session")
def var(fixture_dir: Path) -> VAR:
    return load_var(fixture_dir / "var_weights.safetensors")
