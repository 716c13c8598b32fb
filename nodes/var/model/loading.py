"""Load official VAR / VQVAE checkpoints (FoundationVision/VAR layout) with strict key checking.

The architecture is read off the state dict itself (key names and tensor shapes), so any released
size (d16 ... d36, shared AdaLN, 256 or 512 px) loads without a hand-written config. Stored float
tensors of any width (fp32, fp16, bf16, float8) are cast to the requested compute dtype.
"""

from __future__ import annotations

import math
import os
import pickle
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TypeVar

import safetensors.torch
import torch
from torch import nn

from .quantizer import PhiSharing
from .var import VAR, VARConfig
from .vqvae import VQVAE, VQVAEConfig

StateDict = dict[str, torch.Tensor]
ModelT = TypeVar("ModelT", VAR, VQVAE)

# Token counts L of the released schedules. A meta tensor carries no values, so `lvl_1L` can only
# be decoded into patch sizes through its length when listing shapes without data.
KNOWN_PATCH_NUMS_BY_LENGTH = {
    680: (1, 2, 3, 4, 5, 6, 8, 10, 13, 16),  # 256 px
    2240: (1, 2, 3, 4, 6, 9, 13, 18, 24, 32),  # 512 px
}
# Released VAR models use 64-dim heads; the head count is only visible in the weights when the
# learned attention scale `scale_mul_1H11` is present.
DEFAULT_HEAD_DIM = 64
# A training statistic of the quantizer; its row count depends on the training schedule, and
# inference never reads it.
IGNORED_VQVAE_KEYS = ("quantize.ema_vocab_hit_SV",)


def read_state_dict(path: str | os.PathLike[str]) -> StateDict:
    """Read a flat tensor dict from `.safetensors` or from `.pth`/`.pt` (weights-only unpickling)."""
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            state_dict = safetensors.torch.load_file(str(path))
        elif path.suffix in (".pth", ".pt"):
            state_dict = torch.load(path, map_location="cpu", weights_only=True)
        else:
            raise ValueError(f"{path}: unsupported checkpoint format (use .safetensors or .pth)")
    except (OSError, RuntimeError, pickle.UnpicklingError, safetensors.SafetensorError) as error:
        raise ValueError(f"{path}: cannot read checkpoint: {error}") from error
    if not isinstance(state_dict, Mapping) or not all(
        isinstance(value, torch.Tensor) for value in state_dict.values()
    ):
        raise ValueError(f"{path}: expected a flat state dict of tensors")
    return dict(state_dict)


def cast_floats(state_dict: Mapping[str, torch.Tensor], dtype: torch.dtype) -> StateDict:
    """Cast every floating tensor to `dtype` (through float32, which holds every stored format
    exactly); integer buffers such as `lvl_1L` keep their dtype."""
    return {
        key: value.float().to(dtype) if value.is_floating_point() else value
        for key, value in state_dict.items()
    }


def _require(
    state_dict: Mapping[str, torch.Tensor], key: str, source: str, kind: str
) -> torch.Tensor:
    if key not in state_dict:
        raise ValueError(f"{source}: missing '{key}'; this does not look like a {kind} checkpoint")
    return state_dict[key]


def _count_indexed(state_dict: Mapping[str, torch.Tensor], prefix: str) -> int:
    """Number of numbered children `<prefix><i>.` (max index + 1, 0 if there are none)."""
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    indices = [int(match.group(1)) for key in state_dict if (match := pattern.match(key))]
    return max(indices) + 1 if indices else 0


def _infer_phi(state_dict: Mapping[str, torch.Tensor]) -> tuple[PhiSharing, int] | None:
    """Sharing mode and count of the phi convolutions, or None if the checkpoint has none."""
    if "quantize.quant_resi.qresi.weight" in state_dict:
        return PhiSharing.SHARED, 1
    if count := _count_indexed(state_dict, "quantize.quant_resi.qresi_ls."):
        return PhiSharing.PARTIAL, count
    if count := _count_indexed(state_dict, "quantize.quant_resi."):
        return PhiSharing.PER_SCALE, count
    return None


def infer_vqvae_config(
    state_dict: Mapping[str, torch.Tensor],
    *,
    patch_nums: Sequence[int] | None = None,
    phi_residual_ratio: float = 0.5,
    source: str = "state dict",
) -> VQVAEConfig:
    """VQVAE architecture from key names and shapes.

    The scale schedule and the phi mixing ratio are not stored in checkpoints: `patch_nums`
    defaults to the released 256 px schedule and the ratio to the released 0.5.
    """
    kind = "VQVAE"
    vocab_size, z_channels = _require(state_dict, "quantize.embedding.weight", source, kind).shape
    ch, image_channels = _require(state_dict, "encoder.conv_in.weight", source, kind).shape[:2]
    levels = _count_indexed(state_dict, "encoder.down.")
    ch_mult = tuple(
        _require(state_dict, f"encoder.down.{level}.block.0.conv1.weight", source, kind).shape[0]
        // ch
        for level in range(levels)
    )
    phi = _infer_phi(state_dict)
    # Without phi weights every phi is the identity, i.e. a zero mixing ratio.
    sharing, count = phi if phi is not None else (PhiSharing.SHARED, 1)
    defaults = VQVAEConfig()
    return VQVAEConfig(
        vocab_size=vocab_size,
        z_channels=z_channels,
        ch=ch,
        ch_mult=ch_mult,
        num_res_blocks=_count_indexed(state_dict, "encoder.down.0.block."),
        image_channels=image_channels,
        attn_in_lowest_level=f"encoder.down.{levels - 1}.attn.0.qkv.weight" in state_dict,
        attn_in_mid="encoder.mid.attn_1.qkv.weight" in state_dict,
        quant_conv_kernel=_require(state_dict, "quant_conv.weight", source, kind).shape[-1],
        phi_sharing=sharing,
        phi_count=count,
        phi_residual_ratio=phi_residual_ratio if phi is not None else 0.0,
        patch_nums=tuple(patch_nums) if patch_nums is not None else defaults.patch_nums,
    )


def _infer_patch_nums(levels_1L: torch.Tensor, source: str) -> tuple[int, ...]:
    """Patch sizes from the per-token scale levels: scale k owns pn_k^2 consecutive tokens."""
    if levels_1L.is_meta:
        length = levels_1L.shape[-1]
        if length not in KNOWN_PATCH_NUMS_BY_LENGTH:
            raise ValueError(
                f"{source}: 'lvl_1L' has no values and {length} tokens is no known schedule"
            )
        return KNOWN_PATCH_NUMS_BY_LENGTH[length]
    levels = levels_1L.reshape(-1).long()
    if levels.numel() == 0 or bool((levels.diff() < 0).any()) or int(levels[0]) != 0:
        raise ValueError(f"{source}: 'lvl_1L' is not a sorted run of scale levels starting at 0")
    patch_nums = []
    for count in torch.bincount(levels).tolist():
        side = math.isqrt(count)
        if side * side != count:
            raise ValueError(f"{source}: 'lvl_1L' has a scale with {count} tokens, not a square")
        patch_nums.append(side)
    return tuple(patch_nums)


def infer_var_config(
    state_dict: Mapping[str, torch.Tensor],
    *,
    num_heads: int | None = None,
    source: str = "state dict",
) -> VARConfig:
    """VAR architecture from key names and shapes.

    The head count comes from `scale_mul_1H11`; checkpoints without it (no L2-normalised
    attention) need `num_heads`, which otherwise defaults to embed_dim / 64 as in all releases.
    """
    kind = "VAR"
    class_rows, embed_dim = _require(state_dict, "class_emb.weight", source, kind).shape
    depth = _count_indexed(state_dict, "blocks.")
    if depth == 0:
        raise ValueError(
            f"{source}: no 'blocks.<i>.' keys; this does not look like a {kind} checkpoint"
        )
    scale_key = "blocks.0.attn.scale_mul_1H11"
    attn_l2_norm = scale_key in state_dict
    stored_heads = state_dict[scale_key].shape[1] if attn_l2_norm else None
    if num_heads is not None and stored_heads is not None and num_heads != stored_heads:
        raise ValueError(
            f"{source}: num_heads={num_heads} but '{scale_key}' has {stored_heads} heads"
        )
    heads = stored_heads or num_heads or embed_dim // DEFAULT_HEAD_DIM
    if embed_dim % heads:
        raise ValueError(f"{source}: embed_dim {embed_dim} is not divisible by {heads} heads")
    return VARConfig(
        vocab_size=_require(state_dict, "head.weight", source, kind).shape[0],
        z_channels=_require(state_dict, "word_embed.weight", source, kind).shape[1],
        num_classes=class_rows - 1,  # the last row is the null class
        depth=depth,
        embed_dim=embed_dim,
        num_heads=heads,
        mlp_hidden_dim=_require(state_dict, "blocks.0.ffn.fc1.weight", source, kind).shape[0],
        patch_nums=_infer_patch_nums(_require(state_dict, "lvl_1L", source, kind), source),
        shared_adaln="shared_ada_lin.1.weight" in state_dict,
        attn_l2_norm=attn_l2_norm,
    )


def check_state_dict_matches(
    model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str
) -> None:
    """Strict key and shape comparison, reported as one readable ValueError."""
    expected = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    found = {key: tuple(value.shape) for key, value in state_dict.items()}
    problems = []
    if missing := sorted(expected.keys() - found.keys()):
        problems.append(f"missing {len(missing)} keys {missing[:5]}")
    if unexpected := sorted(found.keys() - expected.keys()):
        problems.append(f"unexpected {len(unexpected)} keys {unexpected[:5]}")
    mismatched = [
        f"{key}: file {found[key]} vs expected {shape}"
        for key, shape in expected.items()
        if key in found and found[key] != shape
    ]
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatches [{'; '.join(mismatched[:5])}]")
    if problems:
        raise ValueError(
            f"{source}: state dict does not match the inferred {type(model).__name__} config "
            f"({'; '.join(problems)})"
        )


def _materialize(
    model: ModelT, state_dict: StateDict, source: str, device: torch.device | str
) -> ModelT:
    check_state_dict_matches(model, state_dict, source)
    # `assign=True` adopts the loaded tensors (and their compute dtype) in place of the meta ones.
    model.load_state_dict(state_dict, strict=True, assign=True)
    model.eval().requires_grad_(False).to(device)
    return model


def vqvae_from_state_dict(
    state_dict: Mapping[str, torch.Tensor],
    *,
    patch_nums: Sequence[int] | None = None,
    phi_residual_ratio: float = 0.5,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    source: str = "state dict",
) -> VQVAE:
    weights = {k: v for k, v in state_dict.items() if k not in IGNORED_VQVAE_KEYS}
    config = infer_vqvae_config(
        weights, patch_nums=patch_nums, phi_residual_ratio=phi_residual_ratio, source=source
    )
    with torch.device("meta"):
        model = VQVAE(config)
    return _materialize(model, cast_floats(weights, dtype), source, device)


def var_from_state_dict(
    state_dict: Mapping[str, torch.Tensor],
    *,
    num_heads: int | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    source: str = "state dict",
) -> VAR:
    config = infer_var_config(state_dict, num_heads=num_heads, source=source)
    with torch.device("meta"):
        model = VAR(config)
    return _materialize(model, cast_floats(state_dict, dtype), source, device)


def load_vqvae(
    path: str | os.PathLike[str],
    *,
    patch_nums: Sequence[int] | None = None,
    phi_residual_ratio: float = 0.5,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> VQVAE:
    """Load an official VQVAE checkpoint, e.g. `vae_ch160v4096z32.pth`."""
    return vqvae_from_state_dict(
        read_state_dict(path),
        patch_nums=patch_nums,
        phi_residual_ratio=phi_residual_ratio,
        dtype=dtype,
        device=device,
        source=str(path),
    )


def load_var(
    path: str | os.PathLike[str],
    *,
    num_heads: int | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> VAR:
    """Load an official VAR checkpoint, e.g. `var_d16.pth`."""
    return var_from_state_dict(
        read_state_dict(path), num_heads=num_heads, dtype=dtype, device=device, source=str(path)
    )
