"""Decompression bombs and oversized literals: refused from the header or the literals, before
anything is allocated, with an error naming the node, the input, the size, the limit and how to
raise it; the limits are the executor's, set by Executor(limits=...) and the CLI."""

from __future__ import annotations

import json

import pytest
import torch
from graph_helpers import Graph, one_node
from image_bombs import apng, forbid_decoding, grey_png
from latentgraph.cli import main
from latentgraph.executor import Inputs, Node, NodeFailed, NodeRegistry, Outputs
from latentgraph.executor.limits import HOW_TO_RAISE, Limits
from latentgraph.nodes import default_registry
from latentgraph.nodes.common.models import Autoencoder
from latentgraph.nodes.common.sockets import AutoencoderSocket
from latentgraph.nodes.var.model import VAR, VQVAE, VARConfig, VQVAEConfig
from latentgraph.nodes.var.sockets import VARModelSocket, VQVAESocket

DEFAULT = Limits()


class FakeAutoencoder(Autoencoder):
    kind, latent_channels, scaling_factor, downsample, latent_dtype = "test-ae", 4, 1.0, 8, torch.float32


class AutoencoderSource(Node):
    """An autoencoder of SD's latent shape (4 channels, 8 px a cell) with no weights."""

    class_type = "LG_TestBombAutoencoder"

    class In(Inputs):
        pass

    class Out(Outputs):
        autoencoder: AutoencoderSocket

    def run(self, x: In) -> Out:
        return self.Out(autoencoder=FakeAutoencoder())


PATCH_NUMS = (1, 2, 3, 4)


class TinyVAR(Node):
    """A random VAR and VQVAE of the smallest shapes (a 32 px image: 4 x 4 tokens, 8 px each)."""

    class_type = "LG_TestBombTinyVAR"

    class In(Inputs):
        pass

    class Out(Outputs):
        var: VARModelSocket
        vqvae: VQVAESocket

    def run(self, x: In) -> Out:
        torch.manual_seed(0)
        var = VAR(VARConfig(vocab_size=64, z_channels=8, num_classes=4, depth=1, embed_dim=32, num_heads=1,
                            mlp_hidden_dim=64, patch_nums=PATCH_NUMS))
        vqvae = VQVAE(VQVAEConfig(vocab_size=64, z_channels=8, ch=32, ch_mult=(1, 1, 2, 2), num_res_blocks=1,
                                  patch_nums=PATCH_NUMS))
        return self.Out(var=var.eval(), vqvae=vqvae.eval())


REGISTRY = NodeRegistry([*default_registry(), AutoencoderSource, TinyVAR])


def failure(make_executor, graph: dict, limits: Limits = DEFAULT) -> NodeFailed:
    with pytest.raises(NodeFailed) as caught:
        make_executor(registry=REGISTRY, limits=limits).run(graph, targets=["1"])
    return caught.value


def load_graph(name: str) -> dict:
    return one_node("LG_LoadImage", image=name)


# --- image files: refused from the header, nothing decoded ----------------------------------

@pytest.mark.parametrize(("name", "data", "found"), [
    # 401 frames: PIL counts the default image, which this file keeps out of the animation.
    ("anim.png", apng(4000, 4000, 400), "4,000 x 4,000 x 401 frames = 6,416,000,000 pixels"),
    ("grey.png", grey_png(9000, 9000), "9,000 x 9,000 = 81,000,000 pixels"),
])
def test_load_image_refuses_a_bomb_from_its_header(make_executor, folders, monkeypatch, name, data, found):
    assert len(data) < 100_000  # a small file...
    (folders.input / name).write_bytes(data)
    forbid_decoding(monkeypatch)  # ...that is never decoded
    err = failure(make_executor, load_graph(name))
    assert err.node_id == "1" and err.class_type == "LG_LoadImage"
    message = str(err)
    assert "input 'image'" in message and f"'{name}'" in message and found in message
    assert "over the limit of 67,108,864 pixels" in message and HOW_TO_RAISE in message


def test_load_image_frame_limit(make_executor, folders, monkeypatch):
    (folders.input / "anim.png").write_bytes(apng(4, 4, 5))
    images = make_executor(limits=Limits(max_frames=6)).run(load_graph("anim.png"), targets=["1"])
    assert images.outputs["1"][0].shape == (6, 4, 4, 3)  # the file is valid: 6 frames decode
    forbid_decoding(monkeypatch)
    message = str(failure(make_executor, load_graph("anim.png"), Limits(max_frames=5)))
    assert "input 'image'" in message and "6 frames are over the limit of 5 frames (max_frames" in message


def test_raised_pixel_limit_lets_the_image_through(make_executor, folders):
    (folders.input / "small.png").write_bytes(grey_png(10, 3))
    assert "10 x 3 = 30 pixels is over the limit of 29" in str(
        failure(make_executor, load_graph("small.png"), Limits(max_pixels=29)))
    result = make_executor(limits=Limits(max_pixels=30)).run(load_graph("small.png"), targets=["1"])
    assert result.outputs["1"][0].shape == (1, 3, 10, 3)


# --- sizes from literals: refused before allocating -------------------------------------------

@pytest.mark.parametrize(("inputs", "named", "found"), [
    ({"width": 16384, "height": 16384, "batch_size": 1}, "width", "16,384 x 16,384 = 268,435,456 pixels"),
    ({"width": 512, "height": 512, "batch_size": 4096}, "batch_size",
     "512 x 512 x 4,096 images = 1,073,741,824 pixels"),
])
def test_empty_image_refuses_oversized_literals(make_executor, inputs, named, found):
    message = str(failure(make_executor, one_node("LG_EmptyImage", **inputs)))
    assert "node 1 (LG_EmptyImage)" in message and f"input '{named}'" in message and found in message
    assert "67,108,864" in message and HOW_TO_RAISE in message


def test_empty_latent_counts_the_pixels_it_stands_for(make_executor):
    g = Graph()
    g.node("LG_EmptyLatent", id="1", autoencoder=g.node("LG_TestBombAutoencoder", id="ae"), width=512, height=512,
           batch=257)
    graph = g.build()
    message = str(failure(make_executor, graph))
    assert "node 1 (LG_EmptyLatent)" in message and "input 'batch'" in message
    assert "512 x 512 x 257 images = 67,371,008 pixels is over the limit of 67,108,864" in message
    graph["1"]["inputs"]["batch"] = 256  # exactly the limit
    latent = make_executor(registry=REGISTRY).run(graph, targets=["1"]).outputs["1"][0]["samples"]
    assert latent.shape == (256, 4, 64, 64)


def test_shapes_images_refuses_oversized_literals(make_executor):
    graph = one_node("LG_ShapesImages", count=4096, size=1024)
    message = str(failure(make_executor, graph))
    assert "input 'count'" in message and "1,024 x 1,024 x 4,096 images" in message


def test_var_label_count_is_bounded(make_executor):
    # The tiny VAR keeps 8 channels x 4 x 4 latent values a label; its VQVAE makes 32 x 32 px.
    g = Graph(registry=REGISTRY)
    models = g.node("LG_TestBombTinyVAR", id="m")
    g.node("LG_VARStart", id="1", var=models, class_labels="0, 1, 2")
    message = str(failure(make_executor, g.build(), Limits(max_pixels=3 * 8 * 16 - 1)))
    assert "node 1 (LG_VARStart)" in message and "input 'class_labels'" in message
    assert "3 labels: a latent of 3 x 8 x 4 x 4 = 384 values is over the limit of 383" in message
    g = Graph(registry=REGISTRY)
    models = g.node("LG_TestBombTinyVAR", id="m")
    g.node("LG_VARSampler", id="1", var=models, vqvae=g.output(models, "vqvae"), top_k=0, class_labels="0, 1, 2")
    message = str(failure(make_executor, g.build(), Limits(max_pixels=3 * 32 * 32 - 1)))
    assert "node 1 (LG_VARSampler)" in message and "input 'class_labels'" in message
    assert "32 x 32 x 3 images = 3,072 pixels" in message


def test_cli_max_pixels(tmp_path, capsys):
    graph = one_node("LG_EmptyImage", width=16, height=8)
    path = tmp_path / "wf.json"
    path.write_text(json.dumps(graph))
    common = [str(path), "--target", "1", "--data-dir", str(tmp_path), "--device", "cpu"]
    assert main(["run", *common, "--max-pixels", "127"]) == 1
    assert "input 'width': 16 x 8 = 128 pixels is over the limit of 127" in capsys.readouterr().err
    assert main(["run", *common, "--max-pixels", "128"]) == 0
    assert main(["run", *common, "--max-frames", "0"]) == 1
    assert "max_frames must be a positive integer" in capsys.readouterr().err


def test_limits_must_be_positive_integers():
    for bad in ({"max_pixels": 0}, {"max_frames": -1}, {"max_pixels": 1.5}):
        with pytest.raises(ValueError, match="must be a positive integer"):
            Limits(**bad)
