"""Smoke tests of the tiny SD-family trainer: 3 CPU steps per stage, export, load, resume."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from diffusers import DDIMScheduler, StableDiffusionPipeline  # noqa: E402
from latentgraph.nodes.shapes.dataset import CAPTIONS  # noqa: E402
from latentgraph.training.tokenizer import caption_words  # noqa: E402
from latentgraph.training.train_sd import main  # noqa: E402
from trainer_runs import SMOKE, assert_resumes_bit_exact  # noqa: E402
from transformers import CLIPTokenizer  # noqa: E402


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sd") / "shapes_sd"
    assert main(["--out", str(out), *SMOKE]) == out
    return out


def test_export_is_a_safetensors_sd_pipeline_folder(trained: Path) -> None:
    for part in ("model_index.json", "scheduler/scheduler_config.json", "tokenizer/vocab.json",
                 "tokenizer/merges.txt", "text_encoder/model.safetensors",
                 "unet/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.safetensors"):  # fmt: skip
        assert (trained / part).is_file(), part
    files = [p for p in trained.rglob("*") if p.is_file()]
    assert not [p for p in files if p.suffix in (".bin", ".pt", ".pth", ".ckpt", ".pkl")]
    weights = sum(p.stat().st_size for p in files if p.suffix == ".safetensors")
    assert weights <= 10 * 2**20  # the SD family's size target


def test_export_loads_and_generates(trained: Path) -> None:
    pipe = StableDiffusionPipeline.from_pretrained(str(trained))
    pipe.set_progress_bar_config(disable=True)
    assert isinstance(pipe.scheduler, DDIMScheduler)
    assert pipe.scheduler.config.prediction_type == "v_prediction"
    assert pipe.vae.config.scaling_factor != 1.0  # measured from the latents
    gen = torch.Generator().manual_seed(0)
    image = pipe("a red circle", num_inference_steps=4, guidance_scale=4.0, generator=gen).images[0]
    assert image.size == (32, 32)


def test_tokenizer_from_vocab_and_merges_alone(trained: Path, tmp_path: Path) -> None:
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(trained / "tokenizer" / name, tmp_path / name)
    bare = CLIPTokenizer.from_pretrained(str(tmp_path))
    full = CLIPTokenizer.from_pretrained(str(trained / "tokenizer"))
    assert full.model_max_length == 16
    for caption in CAPTIONS:
        assert bare(caption).input_ids == full(caption).input_ids
    for word in caption_words():
        assert len(full(word, add_special_tokens=False).input_ids) == 1, word
    assert full("").input_ids == [full.bos_token_id, full.eos_token_id]


def test_stopped_and_resumed_run_is_bit_exact(trained: Path, tmp_path: Path) -> None:
    parts = ("vae", "text_encoder", "unet", "ema_unet", "ema_text")
    assert_resumes_bit_exact(main, trained, tmp_path / "resumed", "unet", parts)


def test_resume_refuses_another_architecture(trained: Path) -> None:
    with pytest.raises(SystemExit, match="another model config"):
        main(["--out", str(trained), *SMOKE, "--unet-channels", "32,64"])
