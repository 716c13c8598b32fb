"""Session fixtures of the FLUX tests: tiny seeded FLUX.1-dev and schnell transformers saved as
diffusers folders and in the single-file layouts users have, and an executor whose cache
persists across the family's tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from latentgraph import Executor
from latentgraph.executor import Folders

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "mmdit"))

import tiny_transformers  # noqa: E402
from safetensors.torch import save_file  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _two_threads() -> None:
    torch.set_num_threads(2)  # the parity figures are stated for 2 CPU threads


@pytest.fixture(scope="session")
def flux_models() -> dict:
    return {"dev": tiny_transformers.flux(seed=0, guidance=True),
            "schnell": tiny_transformers.flux(seed=1, guidance=False)}


@pytest.fixture(scope="session")
def flux_root(tmp_path_factory: pytest.TempPathFactory, flux_models: dict) -> Folders:
    """models/flux/<variant>/transformer (diffusers), flux1-<variant>.safetensors (BFL keys),
    <variant>_comfy.safetensors (under model.diffusion_model.), <variant>_fp8.safetensors."""
    folders = Folders.under(tmp_path_factory.mktemp("flux_root"))
    for d in (folders.input, folders.output, folders.temp, folders.models):
        d.mkdir(parents=True)
    root = folders.models / "flux"
    for variant, model in flux_models.items():
        model.save_pretrained(root / variant / "transformer")
        bfl = tiny_transformers.flux_to_bfl(model)
        save_file(bfl, str(root / f"flux1-{variant}.safetensors"))
        save_file({f"model.diffusion_model.{k}": v for k, v in bfl.items()},
                  str(root / f"{variant}_comfy.safetensors"))
        save_file({k: v.to(torch.float8_e4m3fn) for k, v in bfl.items()}, str(root / f"{variant}_fp8.safetensors"))
    return folders


@pytest.fixture(scope="session")
def flux_executor(flux_root: Folders) -> Executor:
    return Executor(device="cpu", folders=flux_root)
