"""GGUF-quantised FLUX transformers: a tiny dev model written with gguf's own writer (2-D weights
in Q8_0 or Q4_0, biases and norms in F32, as the ComfyUI-GGUF files are), read by
LG_LoadFluxGGUF, equals the same model whose weights were dequantised by gguf's numpy
``dequantize`` and saved as a BFL safetensors file (bitwise: the same float32 weights)."""

from __future__ import annotations

import numpy as np
import pytest
import tiny_transformers
import torch
from graph_helpers import one_node
from latentgraph.executor import InputError, NodeFailed
from latentgraph.nodes.diffusion.denoiser import TextEmbeds
from safetensors.torch import save_file

gguf = pytest.importorskip("gguf")
from gguf.quants import dequantize, quantize  # noqa: E402


def write_gguf(state: dict[str, torch.Tensor], path, qtype) -> dict[str, torch.Tensor]:
    """The file, and the float32 weights gguf's dequantize gives back from it."""
    writer = gguf.GGUFWriter(str(path), "flux")
    restored = {}
    for name, tensor in state.items():
        array = tensor.float().numpy()
        if array.ndim == 2:
            data = quantize(array, qtype)
            writer.add_tensor(name, data, raw_shape=data.shape, raw_dtype=qtype)
            restored[name] = torch.from_numpy(dequantize(data, qtype).reshape(array.shape).copy())
        else:
            writer.add_tensor(name, array)
            restored[name] = tensor.float()
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return restored


def probe(denoiser) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    sample = torch.randn(1, 16, 4, 4, generator=gen)
    context = TextEmbeds(torch.randn(1, 5, 32, generator=gen), pooled=torch.randn(1, 32, generator=gen), guidance=3.0)
    return denoiser.forward(sample, torch.tensor(600.0), context)


def load(executor, class_type: str, path: str):
    return executor.run(one_node(class_type, path=path), ["1"]).outputs["1"][0]


@pytest.mark.parametrize("qtype", ["Q8_0", "Q4_0"])
def test_gguf_equals_its_dequantised_weights(qtype, flux_executor, flux_root, flux_models):
    root = flux_root.models / "flux"
    bfl = tiny_transformers.flux_to_bfl(flux_models["dev"])
    restored = write_gguf(bfl, root / f"dev-{qtype}.gguf", getattr(gguf.GGMLQuantizationType, qtype))
    save_file({k: v.contiguous() for k, v in restored.items()}, str(root / f"dev-{qtype}-dequantised.safetensors"))
    ours = probe(load(flux_executor, "LG_LoadFluxGGUF", f"flux/dev-{qtype}.gguf"))
    assert torch.equal(ours, probe(load(flux_executor, "LG_LoadDenoiser", f"flux/dev-{qtype}-dequantised.safetensors")))
    error = (ours - probe(load(flux_executor, "LG_LoadDenoiser", "flux/flux1-dev.safetensors"))).abs().max().item()
    assert 0 < error < (0.05 if qtype == "Q8_0" else 0.5)  # quantised, but the same model


def test_gguf_loader_names_bad_files(flux_executor, flux_root):
    root = flux_root.models / "flux"
    writer = gguf.GGUFWriter(str(root / "other.gguf"), "llama")
    writer.add_tensor("token_embd.weight", np.zeros((4, 32), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    (root / "broken.gguf").write_bytes(b"GGUF not really")
    for name, words in (("other.gguf", "holds no FLUX.1 transformer"), ("broken.gguf", "not a readable GGUF"),
                        ("flux1-dev.safetensors", "not a .gguf file")):
        with pytest.raises(NodeFailed) as info:
            load(flux_executor, "LG_LoadFluxGGUF", f"flux/{name}")
        assert isinstance(info.value.error, InputError) and info.value.error.input_name == "path"
        assert name in str(info.value.error) and words in str(info.value.error)
