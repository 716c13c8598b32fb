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

import tiny_text  # noqa: E402
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
def flux_pipes() -> dict:
    """The tiny FluxPipelines the parity tests run: dev (guidance embedding, dynamic shift) and
    schnell (neither)."""
    pipes = {"dev": tiny_transformers.flux_pipeline(dev=True), "schnell": tiny_transformers.flux_pipeline(dev=False, seed=1)}
    for pipe in pipes.values():
        pipe.set_progress_bar_config(disable=True)
    return pipes


def save_all_in_one(pipe, folder: Path) -> None:
    """ComfyUI's all-in-one FLUX checkpoint: BFL's transformer keys under model.diffusion_model.,
    CLIP-L and T5 under text_encoders.*, the VAE in LDM keys under vae.; T5's tokenizer beside it."""
    state = {f"model.diffusion_model.{k}": v for k, v in tiny_transformers.flux_to_bfl(pipe.transformer).items()}
    state.update(tiny_text.bundled({"clip_l": pipe.text_encoder}, pipe.text_encoder_2))
    state.update({f"vae.{k}": v.contiguous() for k, v in tiny_text.vae16_to_ldm(pipe.vae.state_dict()).items()})
    folder.mkdir(parents=True)
    save_file(state, str(folder / "flux_tiny_all_in_one.safetensors"))
    pipe.tokenizer_2.save_pretrained(folder)


@pytest.fixture(scope="session")
def flux_root(tmp_path_factory: pytest.TempPathFactory, flux_models: dict, flux_pipes: dict) -> Folders:
    """models/flux/<variant>/transformer (diffusers), flux1-<variant>.safetensors (BFL keys),
    <variant>_comfy.safetensors (under model.diffusion_model.), <variant>_fp8.safetensors."""
    folders = Folders.under(tmp_path_factory.mktemp("flux_root"))
    for d in (folders.input, folders.output, folders.temp, folders.models):
        d.mkdir(parents=True)
    root = folders.models / "flux"
    flux_pipes["dev"].save_pretrained(root / "tiny")
    flux_pipes["schnell"].save_pretrained(root / "tiny-schnell")
    save_all_in_one(flux_pipes["dev"], root / "comfy")
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
