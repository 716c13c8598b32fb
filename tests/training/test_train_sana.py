"""Smoke tests of the tiny SANA-family trainer: 3 CPU steps per stage, export, load in diffusers'
SanaPipeline and in our graph, the trainer's text conditioning equals the pipeline's, resume."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from diffusers import DPMSolverMultistepScheduler, SanaPipeline  # noqa: E402
from latentgraph import Executor  # noqa: E402
from latentgraph.executor import Folders  # noqa: E402
from latentgraph.nodes.sana.models import COMPLEX_HUMAN_INSTRUCTION  # noqa: E402
from latentgraph.nodes.shapes.dataset import CAPTIONS, class_id_of  # noqa: E402
from latentgraph.training.sana_tokenizer import SPACE, build_tokenizer  # noqa: E402
from latentgraph.training.train_sana import (  # noqa: E402
    EMPTY,
    PLAIN,
    encode_table,
    main,
    prompt_table,
    shift_sigmas,
)
from trainer_runs import SMOKE, assert_resumes_bit_exact  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sana") / "shapes_sana"
    assert main(["--out", str(out), *SMOKE]) == out
    return out


@pytest.fixture(scope="module")
def pipe(trained: Path) -> SanaPipeline:
    pipeline = SanaPipeline.from_pretrained(str(trained))
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def test_export_is_a_safetensors_sana_pipeline_folder(trained: Path) -> None:
    for part in ("model_index.json", "scheduler/scheduler_config.json", "tokenizer/tokenizer.json",
                 "text_encoder/model.safetensors", "transformer/diffusion_pytorch_model.safetensors",
                 "vae/diffusion_pytorch_model.safetensors"):  # fmt: skip
        assert (trained / part).is_file(), part
    files = [p for p in trained.rglob("*") if p.is_file()]
    assert not [p for p in files if p.suffix in (".bin", ".pt", ".pth", ".ckpt", ".pkl")]
    weights = sum(p.stat().st_size for p in files if p.suffix == ".safetensors")
    assert weights <= 10 * 2**20  # the size target of latentgraph's shipped models
    index = json.loads((trained / "model_index.json").read_text())
    assert index["_class_name"] == "SanaPipeline"
    assert index["text_encoder"] == ["transformers", "Gemma2Model"]


def test_export_loads_in_sana_pipeline_and_our_graph_gives_its_image(
    trained: Path, pipe: SanaPipeline, tmp_path: Path, shipped_graph
) -> None:
    config = pipe.scheduler.config
    assert isinstance(pipe.scheduler, DPMSolverMultistepScheduler)
    assert (config.prediction_type, config.use_flow_sigmas, config.flow_shift) == (
        "flow_prediction",
        True,
        3.0,
    )
    assert pipe.vae.config.scaling_factor != 1.0  # measured from the latents
    seed, steps, cfg = 3, 3, 4.5
    ref = pipe(
        "a red circle",
        height=32,
        width=32,
        num_inference_steps=steps,
        guidance_scale=cfg,
        generator=torch.Generator().manual_seed(seed),
        output_type="pt",
        use_resolution_binning=False,
    ).images
    assert ref.shape == (1, 3, 32, 32) and torch.isfinite(ref).all()

    graph = shipped_graph("sana_txt2img", {"1": {"path": str(trained)}, "2": {"text": "a red circle"},
                                           "4": {"width": 32, "height": 32},
                                           "5": {"steps": steps, "seed": seed, "cfg": cfg}})
    folders = Folders.under(tmp_path)
    result = Executor(device="cpu", folders=folders).run(graph, ["6", "7"])
    ours = result.outputs["6"][0].permute(0, 3, 1, 2)
    assert (ours - ref).abs().max().item() <= 1e-4
    (saved,) = result.ui["7"]["images"]
    assert (folders.output / saved["filename"]).is_file()


def test_trainer_conditioning_is_the_pipelines(pipe: SanaPipeline) -> None:
    loaded = pipe.tokenizer
    ours = build_tokenizer()
    for a, b in zip(prompt_table(ours), prompt_table(loaded), strict=True):
        assert torch.equal(a.ids, b.ids) and torch.equal(a.mask, b.mask) and a.keep == b.keep
    with torch.no_grad():
        embeds, masks = encode_table(pipe.text_encoder, prompt_table(loaded))
    cid = class_id_of("triangle", "magenta")
    for instruction, row in ((COMPLEX_HUMAN_INSTRUCTION, cid), (None, PLAIN + cid)):
        with torch.no_grad():
            emb, mask, neg, neg_mask = pipe.encode_prompt(
                CAPTIONS[cid], complex_human_instruction=instruction
            )
        # BOS + the caption's three words; the rest of the 300 positions are masked out.
        assert int(mask.sum()) == int(masks[row].sum()) == 4
        assert torch.allclose(emb[0][mask[0] == 1], embeds[row][masks[row] == 1], atol=1e-5)
        assert int(neg_mask.sum()) == int(masks[EMPTY].sum()) == 1
        assert torch.allclose(neg[0][neg_mask[0] == 1], embeds[EMPTY][masks[EMPTY] == 1], atol=1e-5)
    # The DiT trained on the kept positions alone gives what it gives on the pipeline's 300.
    # (Random cross-attention and output weights: after 3 steps they are still nearly 0.)
    dit = copy.deepcopy(pipe.transformer)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in dit.named_parameters():
            if "attn2.to_out" in name or name.startswith("proj_out"):
                param.copy_(torch.randn(param.shape, generator=gen) * 0.1)
        x, t = torch.randn(2, 4, 8, 8, generator=gen), torch.tensor([999.0, 250.0])
        rows = [PLAIN + cid, EMPTY]
        short = dit(x, embeds[rows], t, encoder_attention_mask=masks[rows]).sample
        full = dit(x, torch.cat([emb, neg]), t, encoder_attention_mask=torch.cat([mask, neg_mask])).sample  # fmt: skip
        other = dit(
            x, embeds[[PLAIN, EMPTY]], t, encoder_attention_mask=masks[[PLAIN, EMPTY]]
        ).sample
    assert short.abs().mean() > 0.01 and (short - other).abs().max() > 1e-3  # the prompt matters
    assert (short - full).abs().max().item() <= 1e-5


def test_tokenizer(trained: Path) -> None:
    tok = AutoTokenizer.from_pretrained(str(trained / "tokenizer"))
    assert (tok.pad_token_id, tok.eos_token_id, tok.bos_token_id) == (0, 1, 2)
    vocab = tok.get_vocab()
    for caption in CAPTIONS:
        for word in caption.split():
            for form in (word, SPACE + word):  # a prompt's first word, and after a space
                text = form.replace(SPACE, " ")
                assert tok(text, add_special_tokens=False).input_ids == [vocab[form]], form
        assert len(tok(caption).input_ids) == 4  # BOS + one token per word
    chi = "\n".join(COMPLEX_HUMAN_INSTRUCTION)
    assert len(tok.encode(chi)) < 200  # whole-word tokens, not characters
    # Words outside the grammar still tokenise (characters, bytes), never to <unk>.
    ids = tok("a purple hexagon, déjà vu").input_ids
    assert tok.unk_token_id not in ids and len(ids) > 4


def test_stopped_and_resumed_run_is_bit_exact(trained: Path, tmp_path: Path) -> None:
    parts = ("vae", "text_encoder", "transformer", "ema_dit", "ema_text")
    assert_resumes_bit_exact(main, trained, tmp_path / "resumed", "dit", parts)


def test_resume_refuses_another_architecture(trained: Path) -> None:
    with pytest.raises(SystemExit, match="another model config"):
        main(["--out", str(trained), *SMOKE, "--dit-layers", "2"])


def test_training_flow_convention_is_the_samplers(pipe: SanaPipeline) -> None:
    """A model giving the trainer's target v = noise - x0 at x_t = (1 - s) x0 + s noise takes the
    exported scheduler from noise to x0; its sigmas are shift_sigmas' and its timesteps 1000 s."""
    scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
    scheduler.set_timesteps(6)
    u = 1 - torch.linspace(1, 1 / 1000, 7, dtype=torch.float64)  # its flow sigmas, unshifted
    expected = shift_sigmas(u, 3.0).flip(0)[:-1]
    assert torch.allclose(scheduler.sigmas[:-1].double(), expected, atol=1e-6)
    gen = torch.Generator().manual_seed(0)
    x0, x = torch.randn(1, 4, 8, 8, generator=gen), torch.randn(1, 4, 8, 8, generator=gen)
    for i, t in enumerate(scheduler.timesteps):
        sigma = scheduler.sigmas[i]
        assert 0 <= sigma - t / 1000 < 1e-3  # the DiT gets the timestep floor(1000 s)
        x = scheduler.step((x - x0) / sigma, t, x).prev_sample
    assert (x - x0).abs().max().item() < 1e-4
