"""The same tiny SD 1.x weights in every supported layout load strictly, through the loader
nodes, and give outputs identical to the diffusers-folder copy; the bundled CLIP tokenizer
follows transformers' CLIPTokenizer; loaders cache by file identity and share models."""

from __future__ import annotations

import os
import shutil

import pytest
import torch
from graph_helpers import Graph, one_node
from latentgraph.nodes.common.files import path_fingerprint
from latentgraph.nodes.ldm.clip import bundled_tokenizer
from transformers import CLIPTokenizer

PROBE_TEXT = "a photo of a cat"


def load(executor, class_type: str, path: str) -> tuple:
    return executor.run(one_node(class_type, path=path), ["1"]).outputs["1"]


def probe(part, kind: str) -> torch.Tensor:
    """A fixed computation through one model, to compare two loads of it."""
    gen = torch.Generator().manual_seed(0)
    if kind == "text_encoder":
        return part.encode([PROBE_TEXT]).embeddings
    if kind == "autoencoder":
        latent = torch.randn(1, 4, 8, 8, generator=gen)
        pixels = torch.rand(1, 3, 16, 16, generator=gen) * 2 - 1
        return torch.cat(
            [part.decode(latent).flatten(), part.encode(pixels, None, sample=False).flatten()]
        )
    from latentgraph.nodes.diffusion.denoiser import TextEmbeds

    sample = torch.randn(2, 4, 8, 8, generator=gen)
    context = TextEmbeds(torch.randn(2, 77, 64, generator=gen))
    return part.forward(sample, torch.tensor(500), context)


@pytest.fixture(scope="module")
def reference(sd_executor):
    """The parts loaded from the diffusers pipeline folder."""
    return dict(
        zip(
            ("denoiser", "text_encoder", "autoencoder"),
            load(sd_executor, "LG_LoadCheckpoint", "sd/tiny"),
            strict=True,
        )
    )


@pytest.mark.parametrize("path", ["sd/tiny.safetensors", "sd/tiny.ckpt"])
def test_single_file_checkpoint_equals_folder(path, sd_executor, reference):
    parts = dict(
        zip(
            ("denoiser", "text_encoder", "autoencoder"),
            load(sd_executor, "LG_LoadCheckpoint", path),
            strict=True,
        )
    )
    for kind, part in parts.items():
        assert torch.equal(probe(part, kind), probe(reference[kind], kind)), kind
    assert parts["denoiser"].schedule == reference["denoiser"].schedule
    assert (parts["denoiser"].spacing, parts["denoiser"].steps_offset) == ("leading", 1)


@pytest.mark.parametrize(
    ("class_type", "path", "kind"),
    [
        ("LG_LoadDenoiser", "sd/unet_ldm.safetensors", "denoiser"),
        ("LG_LoadDenoiser", "sd/tiny.safetensors", "denoiser"),
        ("LG_LoadDenoiser", "sd/tiny/unet", "denoiser"),
        ("LG_LoadTextEncoder", "sd/clip_l.safetensors", "text_encoder"),
        ("LG_LoadTextEncoder", "sd/tiny/text_encoder", "text_encoder"),
        ("LG_LoadTextEncoder", "sd/tiny.ckpt", "text_encoder"),
        ("LG_LoadAutoencoder", "sd/vae_bare.safetensors", "autoencoder"),
        ("LG_LoadAutoencoder", "sd/vae_prefixed.safetensors", "autoencoder"),
        ("LG_LoadAutoencoder", "sd/tiny.safetensors", "autoencoder"),
        ("LG_LoadAutoencoder", "sd/tiny/vae", "autoencoder"),
        ("LG_LoadAutoencoder", "sd/tiny/vae/diffusion_pytorch_model.safetensors", "autoencoder"),
    ],
)
def test_each_layout_loads_to_the_same_model(class_type, path, kind, sd_executor, reference):
    (part,) = load(sd_executor, class_type, path)
    assert torch.equal(probe(part, kind), probe(reference[kind], kind))


def test_autoencoder_exposes_its_latent_space(sd_executor, reference):
    g = Graph()
    g.node("LG_AutoencoderInfo", id="2",
           autoencoder=g.node("LG_LoadAutoencoder", id="1", path="sd/vae_bare.safetensors"))
    assert sd_executor.run(g.build(), ["2"]).outputs["2"] == ("sd-vae", 4, 0.18215, 2)
    assert reference["autoencoder"].latent_dtype == torch.float32  # fp32 on the CPU


def test_absolute_paths_are_accepted_when_they_exist(sd_root, sd_executor, reference):
    path = str(sd_root.models / "sd" / "unet_ldm.safetensors")
    (denoiser,) = load(sd_executor, "LG_LoadDenoiser", path)
    assert torch.equal(probe(denoiser, "denoiser"), probe(reference["denoiser"], "denoiser"))


def test_single_file_image_equals_folder_image(sd_executor, sd_graph):
    """End to end, the bundled tokenizer included."""
    changes = {"4": {"width": 32, "height": 32}, "5": {"steps": 3, "solver": "euler"}}
    images = [
        sd_executor.run(sd_graph("sd_txt2img", {**changes, "1": {"path": path}}), ["6"]).outputs[
            "6"
        ][0]
        for path in ("sd/tiny", "sd/tiny.safetensors")
    ]
    assert torch.equal(*images)


def test_parts_are_shared_between_loaders(sd_executor, reference):
    (text_encoder,) = load(sd_executor, "LG_LoadTextEncoder", "sd/tiny")
    assert text_encoder is reference["text_encoder"]


def test_loader_caches_by_file_identity(sd_root, sd_executor):
    copy = sd_root.models / "sd" / "copy.safetensors"
    shutil.copyfile(sd_root.models / "sd" / "unet_ldm.safetensors", copy)
    graph = one_node("LG_LoadDenoiser", path="sd/copy.safetensors")
    first = sd_executor.run(graph, ["1"])
    assert first.executed == ["1"] and sd_executor.run(graph, ["1"]).cached == ["1"]
    assert any(
        entry.outputs[0] is first.outputs["1"][0]
        for entry in (sd_executor.cache.models.get(k) for k in sd_executor.cache.models.keys())
    )
    stat = copy.stat()
    os.utime(copy, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # an edited file
    assert sd_executor.run(graph, ["1"]).executed == ["1"]


def test_folder_fingerprint_follows_its_files(sd_root):
    folder = sd_root.models / "sd" / "tiny"
    before = path_fingerprint(sd_root, "sd/tiny")
    config = folder / "scheduler" / "scheduler_config.json"
    stat = config.stat()
    os.utime(config, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    try:
        assert path_fingerprint(sd_root, "sd/tiny") != before
    finally:
        os.utime(config, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path_fingerprint(sd_root, "sd/tiny") == before


# --- the bundled CLIP vocabulary ----------------------------------------------------------------

PROMPTS = [
    "a photo of a cat",
    "A  Photo of an ASTRONAUT riding a horse, 4k!!",
    "naïve café — 東京 🐱",
    "don't stop; it's 3.14159",
    " ".join(["word"] * 100),
    "",
]


def test_bundled_tokenizer_knows_clips_ids():
    tokenizer = bundled_tokenizer()
    assert len(tokenizer) == 49408
    assert (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id) == (
        49406,
        49407,
        49407,
    )
    # Token ids of OpenAI's released vocabulary.
    assert tokenizer("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]


def test_bundled_tokenizer_matches_transformers_from_saved_files(tmp_path):
    """Saved as vocab.json + merges.txt and read back by CLIPTokenizer.from_pretrained, it
    tokenises every prompt the same, with SD's 77-token padding and truncation."""
    tokenizer = bundled_tokenizer()
    tokenizer.save_pretrained(tmp_path)
    reread = CLIPTokenizer.from_pretrained(tmp_path)
    for prompt in PROMPTS:
        kwargs = {"padding": "max_length", "max_length": 77, "truncation": True}
        ours, theirs = tokenizer(prompt, **kwargs).input_ids, reread(prompt, **kwargs).input_ids
        assert ours == theirs and len(ours) == 77
        assert ours[0] == 49406 and 49407 in ours


def test_tiled_decode(sd_executor):
    def decode(tiling: str) -> torch.Tensor:
        g = Graph()
        autoencoder = g.node("LG_LoadAutoencoder", id="1", path="sd/tiny")
        empty = g.node("LG_EmptyLatent", id="2", autoencoder=autoencoder, width=64, height=64)
        noise = g.node("LG_Noise", id="3", like=empty, seed=5)
        g.node("LG_AutoencoderDecode", id="4", autoencoder=autoencoder, latent=noise, tiling=tiling)
        return sd_executor.run(g.build(), ["4"]).outputs["4"][0]

    tiled, whole = decode("on"), decode("off")
    assert tiled.shape == whole.shape == (1, 64, 64, 3)
    assert torch.isfinite(tiled).all() and not torch.equal(tiled, whole)  # tiles were blended
    assert torch.equal(decode("auto"), whole)  # small images are decoded whole


def test_sharded_weights(sd_root, sd_executor, sd_components, reference):
    folder = sd_root.models / "sd" / "unet_sharded"
    sd_components["unet"].save_pretrained(folder, max_shard_size="300KB")
    index = folder / "diffusion_pytorch_model.safetensors.index.json"
    assert index.is_file() and len(list(folder.glob("*.safetensors"))) > 1
    (denoiser,) = load(sd_executor, "LG_LoadDenoiser", "sd/unet_sharded")
    assert torch.equal(probe(denoiser, "denoiser"), probe(reference["denoiser"], "denoiser"))

    # A shard index may not point outside its folder.
    escaping = sd_root.models / "sd" / "unet_escaping"
    shutil.copytree(folder, escaping)
    index = escaping / index.name
    index.write_text(
        index.read_text().replace(
            '"diffusion_pytorch_model-', '"../unet_sharded/diffusion_pytorch_model-'
        )
    )
    from latentgraph.executor import NodeFailed

    with pytest.raises(NodeFailed, match="shard"):
        load(sd_executor, "LG_LoadDenoiser", "sd/unet_escaping")


def test_models_follow_the_model_tier_between_devices(reference):
    """The executor's model tier offloads with ``to(device)``; the wrappers move their modules,
    return themselves and keep working."""
    for kind, part in reference.items():
        before = probe(part, kind)
        assert part.to("cpu") is part and part.placement[0].type == "cpu"
        assert torch.equal(probe(part, kind), before)


def test_half_precision_overflow_is_redone_in_fp32(reference, monkeypatch):
    """A half-precision VAE whose output overflows: the result comes from an fp32 copy instead,
    equal to what that VAE makes in fp32; the half-precision VAE itself is left as it was."""
    import copy

    from diffusers import AutoencoderKL
    from latentgraph.nodes.ldm.models import KLAutoencoder

    half = KLAutoencoder(copy.deepcopy(reference["autoencoder"].vae).to(torch.bfloat16), torch.float32)
    fp32 = KLAutoencoder(copy.deepcopy(half.vae).float(), torch.float32)  # the same (rounded) weights
    real_encode = AutoencoderKL.encode

    def overflowing(decode):
        def wrapped(self, z, *args, **kwargs):
            out = decode(self, z, *args, **kwargs)
            return (out[0].fill_(float("inf")),) if z.dtype != torch.float32 else out

        return wrapped

    def overflowing_encode(self, x, *args, **kwargs):
        out = real_encode(self, x, *args, **kwargs)
        if x.dtype != torch.float32:
            out.latent_dist.parameters.fill_(float("nan"))
        return out

    for name in ("decode", "tiled_decode"):
        monkeypatch.setattr(AutoencoderKL, name, overflowing(getattr(AutoencoderKL, name)))
    monkeypatch.setattr(AutoencoderKL, "encode", overflowing_encode)
    gen = torch.Generator().manual_seed(0)
    latent = torch.randn(1, 4, 8, 8, generator=gen)
    pixels = torch.rand(1, 3, 16, 16, generator=gen) * 2 - 1
    assert torch.equal(half.decode(latent), fp32.decode(latent))
    assert torch.equal(half.decode(latent, tiled=True), fp32.decode(latent, tiled=True))
    assert torch.equal(half.encode(pixels, None, sample=False), fp32.encode(pixels, None, sample=False))
    assert next(half.vae.parameters()).dtype == torch.bfloat16
