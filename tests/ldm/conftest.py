"""Session fixtures: one tiny SD 1.x saved in every layout, the diffusers pipelines reading the
same folder, and an executor whose cache persists across the family's tests (models load once)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import sd_tiny
import torch
from latentgraph import Executor
from latentgraph.executor import Folders
from PIL import Image
from safetensors.torch import save_file


@pytest.fixture(scope="session", autouse=True)
def _two_threads() -> None:
    torch.set_num_threads(2)  # the parity figures are stated for 2 CPU threads


@pytest.fixture(scope="session")
def sd_components() -> dict:
    return sd_tiny.build_components()


@pytest.fixture(scope="session")
def sd_root(tmp_path_factory: pytest.TempPathFactory, sd_components: dict) -> Folders:
    """input/output/temp/models folders; models/sd holds the tiny SD in each layout."""
    folders = Folders.under(tmp_path_factory.mktemp("sd_root"))
    for d in (folders.input, folders.output, folders.temp, folders.models):
        d.mkdir(parents=True)
    sd = folders.models / "sd"
    sd_tiny.save_pipeline(sd_components, sd / "tiny")
    single = sd_tiny.single_file_state(sd_components)
    save_file(single, str(sd / "tiny.safetensors"))
    torch.save({"state_dict": single, "global_step": 1}, sd / "tiny.ckpt")
    vae = {
        k.removeprefix("first_stage_model."): v
        for k, v in single.items()
        if k.startswith("first_stage_model.")
    }
    save_file(vae, str(sd / "vae_bare.safetensors"))
    save_file({f"vae.{k}": v for k, v in vae.items()}, str(sd / "vae_prefixed.safetensors"))
    unet = {
        k.removeprefix("model.diffusion_model."): v
        for k, v in single.items()
        if k.startswith("model.diffusion_model.")
    }
    save_file(unet, str(sd / "unet_ldm.safetensors"))
    # A standalone CLIP-L file keys its tensors under text_model., as CLIPTextModel did before
    # transformers 5.x dropped that prefix from its own parameter names.
    clip = sd_components["text_encoder"].state_dict()
    save_file(
        {k if k.startswith("text_model.") else f"text_model.{k}": v.contiguous() for k, v in clip.items()},
        str(sd / "clip_l.safetensors"),
    )
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (sd_tiny.IMAGE, sd_tiny.IMAGE, 3), dtype=np.uint8)).save(
        folders.input / "example.png"
    )
    return folders


@pytest.fixture(scope="session")
def sd_executor(sd_root: Folders) -> Executor:
    return Executor(device="cpu", folders=sd_root)


@pytest.fixture(scope="session")
def sd_graph(shipped_graph: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    return shipped_graph
