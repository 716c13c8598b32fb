"""Session fixtures of the SD3 tests: tiny seeded MM-DiTs saved as diffusers folders and in the
single-file layouts users have, a whole tiny StableDiffusion3Pipeline as a folder and as a
ComfyUI all-in-one file, and an executor whose cache persists across the family's tests."""

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

VARIANTS = tiny_transformers.SD3_VARIANTS


@pytest.fixture(scope="session", autouse=True)
def _two_threads() -> None:
    torch.set_num_threads(2)  # the parity figures are stated for 2 CPU threads


@pytest.fixture(scope="session")
def sd3_models() -> dict:
    return {v: tiny_transformers.sd3(seed=i, variant=v) for i, v in enumerate(VARIANTS)}


@pytest.fixture(scope="session")
def sd3_pipe():
    """The tiny StableDiffusion3Pipeline (SD3.5-medium's transformer) the parity tests run."""
    pipe = tiny_transformers.sd3_pipeline("sd35_medium")
    pipe.set_progress_bar_config(disable=True)
    return pipe


def save_all_in_one(pipe, folder: Path) -> None:
    """ComfyUI's all-in-one SD3 checkpoint: the MM-DiT under model.diffusion_model., the three
    encoders under text_encoders.*, the VAE in LDM keys under first_stage_model.; T5's tokenizer
    beside it (a weight file carries none)."""
    state = {f"model.diffusion_model.{k}": v for k, v in tiny_transformers.sd3_to_original(pipe.transformer).items()}
    state.update(tiny_text.bundled({"clip_l": pipe.text_encoder, "clip_g": pipe.text_encoder_2}, pipe.text_encoder_3))
    vae = tiny_text.vae16_to_ldm(pipe.vae.state_dict())
    state.update({f"first_stage_model.{k}": v.contiguous() for k, v in vae.items()})
    folder.mkdir(parents=True)
    save_file(state, str(folder / "sd3_tiny_all_in_one.safetensors"))
    pipe.tokenizer_3.save_pretrained(folder)


@pytest.fixture(scope="session")
def sd3_root(tmp_path_factory: pytest.TempPathFactory, sd3_models: dict, sd3_pipe) -> Folders:
    """models/sd3/<variant>/transformer (diffusers), <variant>.safetensors (Stability's keys),
    <variant>_comfy.safetensors (under model.diffusion_model.), <variant>_fp8.safetensors."""
    folders = Folders.under(tmp_path_factory.mktemp("sd3_root"))
    for d in (folders.input, folders.output, folders.temp, folders.models):
        d.mkdir(parents=True)
    root = folders.models / "sd3"
    sd3_pipe.save_pretrained(root / "tiny")
    save_all_in_one(sd3_pipe, root / "comfy")
    for variant, model in sd3_models.items():
        model.save_pretrained(root / variant / "transformer")
        original = tiny_transformers.sd3_to_original(model)
        save_file(original, str(root / f"{variant}.safetensors"))
        save_file({f"model.diffusion_model.{k}": v for k, v in original.items()},
                  str(root / f"{variant}_comfy.safetensors"))
        fp8 = {k: v.to(torch.float8_e4m3fn) for k, v in original.items()}
        save_file(fp8, str(root / f"{variant}_fp8.safetensors"))
    return folders


@pytest.fixture(scope="session")
def sd3_executor(sd3_root: Folders) -> Executor:
    return Executor(device="cpu", folders=sd3_root)
