"""Checkpoint loading: config inference from the released key/shape listings (built on the meta
device, no weights needed), stored-dtype casting, phi sharing modes and error messages."""

from __future__ import annotations

import hashlib
import json
import re

import pytest
import torch
from latentgraph.nodes.var.model import (
    VAR,
    VQVAE,
    PhiSharing,
    check_state_dict_matches,
    generate,
    infer_var_config,
    infer_vqvae_config,
    load_var,
    load_vqvae,
    quantize_image,
    read_state_dict,
)
from safetensors.torch import save_file
from torch.testing import assert_close

RELEASED_256 = (1, 2, 3, 4, 5, 6, 8, 10, 13, 16)
RELEASED_512 = (1, 2, 3, 4, 6, 9, 13, 18, 24, 32)


def meta_tensor(shape, dtype=torch.float32) -> torch.Tensor:
    return torch.empty(tuple(shape), dtype=dtype, device="meta")


def read_key_listing(path) -> dict[str, torch.Tensor]:
    """Parse `key<TAB>(shape)<TAB>dtype` lines into meta tensors."""
    state = {}
    for line in path.read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        key, shape, dtype = line.split("\t")
        dims = [int(d) for d in re.findall(r"\d+", shape)]
        state[key] = meta_tensor(dims, getattr(torch, dtype))
    return state


def released_var_listing(entry: dict) -> dict[str, torch.Tensor]:
    """Expand the non-block shapes plus block 0 of released_shapes.json to all blocks."""
    state = {}
    for key, shape in entry["shapes"].items():
        dtype = torch.int64 if key == "lvl_1L" else torch.float32
        if key.startswith("blocks.0."):
            for block in range(entry["depth"]):
                state[key.replace("blocks.0.", f"blocks.{block}.", 1)] = meta_tensor(shape)
        else:
            state[key] = meta_tensor(shape, dtype)
    return state


def parameter_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_manifest_checksums(fixture_dir):
    manifest = json.loads((fixture_dir / "manifest.json").read_text())
    for name, entry in manifest.items():
        data = (fixture_dir / name).read_bytes()
        assert len(data) == entry["bytes"], name
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], name


def test_released_vqvae_listing(fixture_dir, configs):
    listing = read_key_listing(fixture_dir / "keys_vae_ch160v4096z32.txt")
    listing.pop("quantize.ema_vocab_hit_SV")  # training statistic, ignored by the loader
    config = infer_vqvae_config(listing)
    assert (config.vocab_size, config.z_channels, config.ch) == (4096, 32, 160)
    assert (config.ch_mult, config.num_res_blocks) == ((1, 1, 2, 2, 4), 2)
    assert (config.phi_sharing, config.phi_count) == (PhiSharing.PARTIAL, 4)
    assert config.patch_nums == RELEASED_256
    with torch.device("meta"):
        model = VQVAE(config)
    check_state_dict_matches(model, listing, "keys_vae_ch160v4096z32.txt")
    released = json.loads((fixture_dir / "released_shapes.json").read_text())
    assert parameter_count(model) == released["vae_ch160v4096z32"]["num_params"]


def test_released_var_d16_listing(fixture_dir):
    listing = read_key_listing(fixture_dir / "keys_var_d16.txt")
    config = infer_var_config(listing)
    assert (config.depth, config.embed_dim, config.num_heads, config.mlp_hidden_dim) == (
        16,
        1024,
        16,
        4096,
    )
    assert (config.num_classes, config.vocab_size, config.z_channels) == (1000, 4096, 32)
    assert config.patch_nums == RELEASED_256
    assert config.attn_l2_norm and not config.shared_adaln
    with torch.device("meta"):
        model = VAR(config)
    check_state_dict_matches(model, listing, "keys_var_d16.txt")
    released = json.loads((fixture_dir / "released_shapes.json").read_text())
    assert parameter_count(model) == released["var_d16"]["num_params"]


@pytest.mark.parametrize("name", ["var_d16", "var_d20", "var_d24", "var_d30", "var_d36_saln_512"])
def test_released_var_shapes(fixture_dir, name):
    entry = json.loads((fixture_dir / "released_shapes.json").read_text())[name]
    listing = released_var_listing(entry)
    config = infer_var_config(listing)
    assert (config.depth, config.embed_dim, config.num_heads) == (
        entry["depth"],
        entry["embed_dim"],
        entry["num_heads"],
    )
    assert config.shared_adaln == entry.get("shared_aln", False)
    assert config.patch_nums == tuple(entry.get("patch_nums", RELEASED_256))
    with torch.device("meta"):
        model = VAR(config)
    check_state_dict_matches(model, listing, name)
    assert parameter_count(model) == entry["num_params"]
    assert len(model.state_dict()) == entry["num_state_dict_entries"]


def test_var_listing_without_learned_attention_scale(fixture_dir):
    listing = {
        key: value
        for key, value in read_key_listing(fixture_dir / "keys_var_d16.txt").items()
        if not key.endswith("scale_mul_1H11")
    }
    config = infer_var_config(listing)
    assert not config.attn_l2_norm
    assert config.num_heads == 16  # 64-dim heads, as in every release
    assert infer_var_config(listing, num_heads=8).num_heads == 8
    with torch.device("meta"):
        model = VAR(config)
    check_state_dict_matches(model, listing, "keys_var_d16.txt without scale_mul_1H11")
    assert model.blocks[0].attn.scale == pytest.approx(0.25 / 8)


def test_var_num_heads_conflicting_with_weights(fixture_dir):
    listing = read_key_listing(fixture_dir / "keys_var_d16.txt")
    with pytest.raises(ValueError, match="scale_mul_1H11"):
        infer_var_config(listing, num_heads=8)


def test_patch_nums_from_lvl_1L_values(var, patch_nums):
    assert var.config.patch_nums == patch_nums
    assert var.config.num_classes == 10 and var.config.num_heads == 2


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_half_precision_stored_weights_load(fixture_dir, golden, tmp_path, dtype, suffix):
    """float8 values are exact in fp16 and bf16, so the re-stored weights must give the golden logits."""
    stored = {
        key: value.float().to(dtype) if value.is_floating_point() else value
        for key, value in read_state_dict(fixture_dir / "var_weights.safetensors").items()
    }
    path = tmp_path / f"var{suffix}"
    if suffix == ".pth":
        torch.save(stored, path)
    else:
        save_file(stored, str(path))
    var = load_var(path)
    assert var.head.weight.dtype == torch.float32
    tf = golden("var_teacher_forced")
    with torch.no_grad():
        logits = var(tf["label_B"], tf["x_BLCv_wo_first_l"])
    assert_close(logits, tf["logits"], atol=1e-4, rtol=0)


def test_compute_dtype_cast(fixture_dir, vqvae):
    var = load_var(fixture_dir / "var_weights.safetensors", dtype=torch.bfloat16)
    assert var.head.weight.dtype == torch.bfloat16
    assert var.lvl_1L.dtype == torch.int64
    # A bf16 transformer drives a float32 tokenizer; logits and f_hat stay float32.
    result = generate(var, vqvae, torch.tensor([3, 7]), seed=0, top_k=900, top_p=0.96)
    assert result.state.f_hat.dtype == torch.float32
    assert result.image.shape == (2, 3, 64, 64) and bool(result.image.isfinite().all())


@pytest.mark.parametrize(
    ("prefix_in_file", "sharing"),
    [("quant_resi.qresi_ls.", PhiSharing.PARTIAL), ("quant_resi.", PhiSharing.PER_SCALE)],
)
def test_phi_sharing_mode_inferred(fixture_dir, golden, tmp_path, prefix_in_file, sharing):
    weights = {
        key.replace("quant_resi.qresi_ls.", prefix_in_file): value
        for key, value in read_state_dict(fixture_dir / "vqvae_weights.safetensors").items()
    }
    path = tmp_path / "vqvae.safetensors"
    save_file(weights, str(path))
    vqvae = load_vqvae(path, patch_nums=(1, 2, 3, 4))
    assert (vqvae.config.phi_sharing, vqvae.config.phi_count) == (sharing, 4)
    # With 4 phis and 4 scales both layouts pick phi k at scale k, so the tokens are unchanged.
    io = golden("vqvae_io")
    tokens = quantize_image(vqvae, io["image"])
    for k, idx in enumerate(tokens.indices):
        assert torch.equal(idx, io[f"idx_s{k}"])


def test_shared_phi_mode(fixture_dir, tmp_path):
    weights = {
        key: value
        for key, value in read_state_dict(fixture_dir / "vqvae_weights.safetensors").items()
        if not key.startswith("quantize.quant_resi.qresi_ls.")
        or key.startswith("quantize.quant_resi.qresi_ls.0.")
    }
    weights = {
        key.replace("quant_resi.qresi_ls.0.", "quant_resi.qresi."): value
        for key, value in weights.items()
    }
    path = tmp_path / "vqvae_shared_phi.safetensors"
    save_file(weights, str(path))
    vqvae = load_vqvae(path, patch_nums=(1, 2, 3, 4))
    assert (vqvae.config.phi_sharing, vqvae.config.phi_count) == (PhiSharing.SHARED, 1)
    assert all(vqvae.quantize.phi(k, 4) is vqvae.quantize.quant_resi.qresi for k in range(4))


def test_error_names_file_and_problem(fixture_dir, tmp_path):
    with pytest.raises(ValueError, match=r"vqvae_weights\.safetensors.*VAR checkpoint"):
        load_var(fixture_dir / "vqvae_weights.safetensors")

    weights = read_state_dict(fixture_dir / "var_weights.safetensors")
    broken = dict(weights, **{"head.bias": torch.zeros(7)})
    del broken["blocks.1.ffn.fc2.bias"]
    broken["extra.weight"] = torch.zeros(1)
    path = tmp_path / "broken_var.safetensors"
    save_file(broken, str(path))
    with pytest.raises(ValueError, match="broken_var.safetensors") as error:
        load_var(path)
    message = str(error.value)
    assert "blocks.1.ffn.fc2.bias" in message
    assert "extra.weight" in message
    assert "head.bias: file (7,) vs expected (1024,)" in message

    nested = tmp_path / "nested.pth"
    torch.save({"model": weights}, nested)
    with pytest.raises(ValueError, match="nested.pth: expected a flat state dict"):
        load_var(nested)

    with pytest.raises(ValueError, match="unsupported checkpoint format"):
        load_var(tmp_path / "weights.ckpt")
