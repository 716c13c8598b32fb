"""Session fixtures: one tiny SANA saved as a diffusers pipeline and in the research layouts, and
an executor whose cache persists across the family's tests (models load once)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import sana_tiny
import torch
from diffusers import AutoencoderDC
from latentgraph import Executor
from latentgraph.executor import Folders
from safetensors.torch import save_file


@pytest.fixture(scope="session", autouse=True)
def _two_threads() -> None:
    torch.set_num_threads(2)  # the parity figures are stated for 2 CPU threads


@pytest.fixture(scope="session")
def sana_components() -> dict:
    return sana_tiny.build_components()


@pytest.fixture(scope="session")
def mix_dcae() -> AutoencoderDC:
    torch.manual_seed(1)
    return AutoencoderDC(**sana_tiny.DCAE_MIX).eval()


@pytest.fixture(scope="session")
def sana_root(
    tmp_path_factory: pytest.TempPathFactory, sana_components: dict, mix_dcae: AutoencoderDC
) -> Folders:
    """models/sana: the pipeline folder, an NVlabs .pth (with and without its config.json), MIT
    efficientvit DC-AEs (SANA's layout and an "in/mix"-style one)."""
    folders = Folders.under(tmp_path_factory.mktemp("sana_root"))
    for d in (folders.input, folders.output, folders.temp, folders.models):
        d.mkdir(parents=True)
    sana = folders.models / "sana"
    sana_tiny.save_pipeline(sana_components, sana / "tiny")
    nvlabs = sana_tiny.transformer_to_nvlabs(
        sana_components["transformer"].state_dict(), sana_tiny.IMAGE
    )
    (sana / "nvlabs").mkdir()
    torch.save({"state_dict": nvlabs}, sana / "nvlabs" / "Sana_tiny.pth")
    config = {
        k: v for k, v in sana_components["transformer"].config.items() if not k.startswith("_")
    }
    (sana / "nvlabs" / "config.json").write_text(json.dumps(config))
    save_file(
        {k: v.contiguous() for k, v in nvlabs.items()}, str(sana / "nvlabs_no_config.safetensors")
    )
    for name, vae in (("sana", sana_components["vae"]), ("mix", mix_dcae)):
        folder = sana / f"dc-ae-{name}"
        folder.mkdir()
        weights = {k: v.contiguous() for k, v in sana_tiny.dcae_to_efficientvit(vae).items()}
        save_file(weights, str(folder / "model.safetensors"))
        # MIT's repositories carry their own small config.json; ours states the scaling factor.
        (folder / "config.json").write_text(
            json.dumps({"scaling_factor": vae.config.scaling_factor})
        )
        save_file(weights, str(sana / f"dc-ae-{name}.safetensors"))
    return folders


@pytest.fixture(scope="session")
def sana_executor(sana_root: Folders) -> Executor:
    return Executor(device="cpu", folders=sana_root)


@pytest.fixture(scope="session")
def sana_graph(shipped_graph: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    return shipped_graph
