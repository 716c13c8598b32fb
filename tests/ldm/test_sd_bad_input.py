"""Unusable inputs fail with an InputError that names the node, the input and the file; a pickle
carrying code is refused without running it."""

from __future__ import annotations

import pickle
import shutil

import numpy as np
import pytest
import torch
from graph_helpers import Graph, one_node
from latentgraph.executor import InputError, NodeFailed
from PIL import Image
from safetensors.torch import load_file, save_file


def failure(executor, graph: dict, target: str) -> tuple[NodeFailed, InputError]:
    with pytest.raises(NodeFailed) as info:
        executor.run(graph, [target])
    assert isinstance(info.value.error, InputError), info.value
    return info.value, info.value.error


def load_graph(class_type: str, path: str) -> dict:
    return one_node(class_type, id="7", path=path)


def expect_path_error(executor, class_type: str, path: str, *words: str) -> str:
    failed, error = failure(executor, load_graph(class_type, path), "7")
    assert (failed.node_id, failed.class_type, error.input_name) == ("7", class_type, "path")
    message = str(error)
    assert path.rsplit("/", 1)[-1] in message, message
    for word in words:
        assert word in message, message
    return message


def test_not_a_checkpoint(sd_root, sd_executor):
    (sd_root.models / "notes.safetensors").write_text("these are not weights")
    expect_path_error(sd_executor, "LG_LoadCheckpoint", "notes.safetensors", "not a safetensors")
    Image.new("RGB", (8, 8)).save(sd_root.models / "picture.png")
    expect_path_error(
        sd_executor, "LG_LoadCheckpoint", "picture.png", "unsupported checkpoint format"
    )
    (sd_root.models / "garbage.pth").write_bytes(b"\x00\x01 not a pickle")
    expect_path_error(sd_executor, "LG_LoadDenoiser", "garbage.pth", "not a readable checkpoint")
    truncated = (sd_root.models / "sd" / "vae_bare.safetensors").read_bytes()[:200]
    (sd_root.models / "truncated.safetensors").write_bytes(truncated)
    expect_path_error(sd_executor, "LG_LoadAutoencoder", "truncated.safetensors")


def test_checkpoint_of_another_family(sd_root, sd_executor):
    sdxl = {
        "conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight": torch.zeros(
            4, 2
        ),
        "model.diffusion_model.input_blocks.0.0.weight": torch.zeros(2, 4, 3, 3),
    }
    save_file(sdxl, str(sd_root.models / "xl.safetensors"))
    expect_path_error(
        sd_executor, "LG_LoadCheckpoint", "xl.safetensors", "SDXL", "another model family"
    )
    var = {"class_emb.weight": torch.zeros(2, 2), "lvl_1L": torch.zeros(1, 4)}
    save_file(var, str(sd_root.models / "var.safetensors"))
    expect_path_error(sd_executor, "LG_LoadDenoiser", "var.safetensors", "VAR")


def test_part_of_a_model_where_a_whole_one_is_needed(sd_executor):
    expect_path_error(
        sd_executor, "LG_LoadCheckpoint", "sd/vae_bare.safetensors", "LG_LoadAutoencoder"
    )
    expect_path_error(sd_executor, "LG_LoadDenoiser", "sd/vae_bare.safetensors", "no denoiser")
    expect_path_error(sd_executor, "LG_LoadCheckpoint", "sd/tiny/unet", "LG_LoadDenoiser")
    expect_path_error(
        sd_executor, "LG_LoadAutoencoder", "sd/tiny/text_encoder", "LG_LoadTextEncoder"
    )


def test_incomplete_weights_are_refused(sd_root, sd_executor):
    vae = load_file(str(sd_root.models / "sd" / "vae_bare.safetensors"))
    del vae["decoder.conv_out.bias"]
    save_file(vae, str(sd_root.models / "vae_incomplete.safetensors"))
    expect_path_error(
        sd_executor,
        "LG_LoadAutoencoder",
        "vae_incomplete.safetensors",
        "missing",
        "decoder.conv_out.bias",
    )


def test_missing_tokenizer_files(sd_root, sd_executor):
    source = sd_root.models / "sd" / "tiny"
    broken = sd_root.models / "sd" / "no_tokenizer"
    shutil.copytree(
        source, broken, ignore=lambda d, names: [n for n in names if d.endswith("tokenizer")]
    )
    message = expect_path_error(sd_executor, "LG_LoadCheckpoint", "sd/no_tokenizer", "tokenizer")
    assert "holds no tokenizer files" in message


class _Payload:
    """Unpickling this object would create `marker`: the attack a weights-only load must stop."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


@pytest.mark.parametrize("writer", ["torch.save", "pickle"])
def test_pickle_with_code_is_refused_unrun(writer, sd_root, sd_executor, tmp_path):
    marker = tmp_path / "marker"
    payload = {
        "state_dict": {"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(1)},
        "callback": _Payload(str(marker)),
    }
    path = sd_root.models / f"evil_{writer.replace('.', '_')}.pth"
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        with open(path, "wb") as f:
            pickle.dump(payload, f, protocol=2)  # the protocol torch's loader reads
    message = expect_path_error(
        sd_executor, "LG_LoadCheckpoint", path.name, "refused", "nothing in it was run"
    )
    assert not marker.exists(), message


@pytest.mark.parametrize(
    "path", ["../outside.safetensors", "/no/such/model.safetensors", "sd/absent"]
)
def test_paths_outside_or_missing(path, sd_executor):
    _, error = failure(sd_executor, load_graph("LG_LoadDenoiser", path), "7")
    assert error.input_name == "path"


def test_image_of_the_wrong_size(sd_root, sd_executor):
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (33, 32, 3), dtype=np.uint8)).save(
        sd_root.input / "odd.png"
    )
    g = Graph()
    autoencoder = g.node("LG_LoadAutoencoder", id="1", path="sd/tiny")
    image = g.node("LG_LoadImage", id="2", image="odd.png")
    g.node("LG_AutoencoderEncode", id="3", autoencoder=autoencoder, image=image)
    failed, error = failure(sd_executor, g.build(), "3")
    assert (failed.class_type, error.input_name) == ("LG_AutoencoderEncode", "image")
    assert "32x33" in str(error) and "multiple" in str(error)


def test_latent_size_not_a_multiple(sd_executor):
    g = Graph()
    autoencoder = g.node("LG_LoadAutoencoder", id="1", path="sd/tiny")
    g.node("LG_EmptyLatent", id="2", autoencoder=autoencoder, width=33, height=32)
    failed, error = failure(sd_executor, g.build(), "2")
    assert error.input_name == "width"


def test_latents_of_another_autoencoder(sd_executor):
    from latentgraph.nodes.common.latent_nodes import AutoencoderDecode

    (ae,) = sd_executor.run(load_graph("LG_LoadAutoencoder", "sd/tiny"), ["7"]).outputs["7"]
    inputs = AutoencoderDecode.In(
        autoencoder=ae, latent={"samples": torch.zeros(1, 8, 4, 4)}, tiling="off"
    )
    with pytest.raises(InputError, match="4-channel"):
        AutoencoderDecode(None).run(inputs)  # type: ignore[arg-type]


def test_a_host_can_refuse_absolute_model_paths(sd_root, tmp_path):
    """The server runs workflows others submit: only the models folder is reachable there."""
    import dataclasses

    from latentgraph import Executor
    from latentgraph.executor import NodeFailed

    served = dataclasses.replace(sd_root, absolute_models=False)
    graph = one_node("LG_LoadCheckpoint", path=str(sd_root.models / "sd" / "tiny"))
    with pytest.raises(NodeFailed, match="absolute paths are not allowed"):
        Executor(device="cpu", folders=served).run(graph, targets=["1"])
