"""Multi-scale residual vector quantizer of the VAR tokenizer (Tian et al. 2024, Sec. 3.2, Alg. 1-2).

A latent f is explained coarse to fine: at scale k the residual is area-downsampled to pn_k x pn_k,
snapped to the nearest codebook entry, the chosen embeddings are bicubically upsampled back to full
size and refined by a convolution phi_k, and that contribution is added to f_hat and removed from
the residual. Module and attribute names follow the official state-dict layout so that released
checkpoints load strictly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .sampling import scale_progress


class PhiSharing(str, Enum):
    """How the K phi convolutions of Alg. 1 are shared between scales."""

    PER_SCALE = "per_scale"  # one phi per scale (official share_quant_resi=0)
    SHARED = "shared"  # one phi for every scale (share_quant_resi=1)
    PARTIAL = (
        "partial"  # K phis, each scale uses the one with the nearest tick (share_quant_resi=K)
    )


class Phi(nn.Conv2d):
    """phi(h) = (1 - r) * h + r * conv3x3(h): a residual refinement of the upsampled embeddings."""

    def __init__(self, channels: int, residual_ratio: float) -> None:
        super().__init__(channels, channels, kernel_size=3, stride=1, padding=1)
        self.residual_ratio = abs(residual_ratio)

    def forward(self, h_BChw: torch.Tensor) -> torch.Tensor:
        return h_BChw.mul(1 - self.residual_ratio) + super().forward(h_BChw).mul_(
            self.residual_ratio
        )


def _make_phi(channels: int, residual_ratio: float) -> nn.Module:
    # A zero ratio makes phi the identity; such checkpoints carry no phi weights at all.
    return Phi(channels, residual_ratio) if abs(residual_ratio) > 1e-6 else nn.Identity()


def phi_ticks(count: int) -> np.ndarray:
    """Positions in [0, 1] that the `count` phis are anchored at.

    Computed with numpy in float64 on purpose: for the released 10-scale schedule, scale 2 sits
    exactly between ticks 0 and 1, and only this exact float64 rounding picks phi 1 like the
    official code does.
    """
    if count == 4:
        return np.linspace(1 / 3 / count, 1 - 1 / 3 / count, count)
    return np.linspace(1 / 2 / count, 1 - 1 / 2 / count, count)


def nearest_tick(ticks: np.ndarray, progress: float) -> int:
    return int(np.argmin(np.abs(ticks - progress)).item())


class PhiPerScale(nn.ModuleList):
    """Non-shared phis; stored directly as `quant_resi.<i>` in checkpoints."""

    def select(self, progress: float) -> nn.Module:
        return self[nearest_tick(phi_ticks(len(self)), progress)]


class PhiShared(nn.Module):
    """A single phi for all scales; stored as `quant_resi.qresi`."""

    def __init__(self, qresi: nn.Module) -> None:
        super().__init__()
        self.qresi = qresi

    def select(self, progress: float) -> nn.Module:
        return self.qresi


class PhiPartiallyShared(nn.Module):
    """K phis shared by nearby scales; stored as `quant_resi.qresi_ls.<i>`."""

    def __init__(self, qresi_ls: nn.ModuleList) -> None:
        super().__init__()
        self.qresi_ls = qresi_ls

    def select(self, progress: float) -> nn.Module:
        return self.qresi_ls[nearest_tick(phi_ticks(len(self.qresi_ls)), progress)]


def area_downsample(f_BChw: torch.Tensor, size: int) -> torch.Tensor:
    """Average-pool a latent to size x size (the r_k = interpolate(f, h_k, w_k) of Alg. 1)."""
    return F.interpolate(f_BChw, size=(size, size), mode="area")


def make_phi_bank(
    sharing: PhiSharing, count: int, channels: int, residual_ratio: float
) -> PhiPerScale | PhiShared | PhiPartiallyShared:
    if sharing is PhiSharing.SHARED:
        return PhiShared(_make_phi(channels, residual_ratio))
    phis = [_make_phi(channels, residual_ratio) for _ in range(count)]
    if sharing is PhiSharing.PER_SCALE:
        return PhiPerScale(phis)
    return PhiPartiallyShared(nn.ModuleList(phis))


@dataclass(frozen=True)
class TokenMaps:
    """Result of quantizing a latent: per-scale token ids [B, pn*pn] and cumulative f_hat after each scale."""

    indices: tuple[torch.Tensor, ...]
    f_hats: tuple[torch.Tensor, ...]

    @property
    def f_hat(self) -> torch.Tensor:
        return self.f_hats[-1]


class MultiScaleQuantizer(nn.Module):
    """The quantizer `quantize.*` of the VQVAE. Scale schedules are passed per call, so one codebook
    serves any `patch_nums` whose last entry equals the latent size."""

    def __init__(
        self,
        vocab_size: int,
        channels: int,
        phi_sharing: PhiSharing,
        phi_count: int,
        phi_residual_ratio: float = 0.5,
    ) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, channels)
        self.quant_resi = make_phi_bank(phi_sharing, phi_count, channels, phi_residual_ratio)

    @property
    def channels(self) -> int:
        return self.embedding.embedding_dim

    def phi(self, scale_index: int, num_scales: int) -> nn.Module:
        return self.quant_resi.select(scale_progress(scale_index, num_scales))

    def nearest_codes(self, z_NC: torch.Tensor) -> torch.Tensor:
        """argmin_v |z - e_v|^2, expanded as |z|^2 + |e|^2 - 2 z.e (the official reduction order)."""
        codebook = self.embedding.weight
        distances = z_NC.square().sum(dim=1, keepdim=True) + codebook.square().sum(dim=1)
        distances = torch.addmm(distances, z_NC, codebook.T, beta=1, alpha=-2)
        return distances.argmin(dim=1)

    def latent_to_tokens(self, f_BChw: torch.Tensor, patch_nums: Sequence[int]) -> TokenMaps:
        """Residual quantization of Alg. 1 (encoding side)."""
        batch, channels, height, width = f_BChw.shape
        if patch_nums[-1] != height or patch_nums[-1] != width:
            raise ValueError(
                f"last patch size {patch_nums[-1]} must equal latent size {height}x{width}"
            )
        num_scales = len(patch_nums)
        residual = f_BChw.clone()
        f_hat = torch.zeros_like(f_BChw)
        indices, f_hats = [], []
        for scale_index, pn in enumerate(patch_nums):
            is_last = scale_index == num_scales - 1
            # The last scale already has the full resolution, so no resampling in either direction.
            z = residual if is_last else area_downsample(residual, pn)
            idx_N = self.nearest_codes(z.permute(0, 2, 3, 1).reshape(-1, channels))
            h = self.embedding(idx_N.view(batch, pn, pn)).permute(0, 3, 1, 2)
            if not is_last:
                h = F.interpolate(h, size=(height, width), mode="bicubic")
            h = self.phi(scale_index, num_scales)(h.contiguous())
            f_hat = f_hat + h
            residual = residual - h
            indices.append(idx_N.reshape(batch, pn * pn))
            f_hats.append(f_hat)
        return TokenMaps(indices=tuple(indices), f_hats=tuple(f_hats))

    def embed_tokens(self, idx_Bl: torch.Tensor) -> torch.Tensor:
        """Token ids [B, pn*pn] -> embeddings [B, C, pn, pn]."""
        batch, length = idx_Bl.shape
        side = round(length**0.5)
        return self.embedding(idx_Bl).transpose(1, 2).reshape(batch, self.channels, side, side)

    def add_scale(
        self, f_hat: torch.Tensor, h_BChw: torch.Tensor, scale_index: int, patch_nums: Sequence[int]
    ) -> torch.Tensor:
        """f_hat + phi_k(upsample(h_k)) (Alg. 2, decoding side), as a new tensor."""
        num_scales = len(patch_nums)
        full = patch_nums[-1]
        h = h_BChw.to(self.embedding.weight.dtype)
        if scale_index != num_scales - 1:
            h = F.interpolate(h, size=(full, full), mode="bicubic")
        return f_hat + self.phi(scale_index, num_scales)(h).to(f_hat.dtype)

    def _empty_f_hat(self, batch: int, full: int, device: torch.device) -> torch.Tensor:
        # f_hat accumulates in float32 whatever the weights' dtype, as in the official code.
        return torch.zeros(batch, self.channels, full, full, device=device, dtype=torch.float32)

    def tokens_to_f_hats(
        self, indices: Sequence[torch.Tensor], patch_nums: Sequence[int]
    ) -> tuple[torch.Tensor, ...]:
        """Cumulative f_hat after each scale, rebuilt from token ids alone."""
        f_hat = self._empty_f_hat(indices[0].shape[0], patch_nums[-1], indices[0].device)
        f_hats = []
        for scale_index, idx_Bl in enumerate(indices):
            f_hat = self.add_scale(f_hat, self.embed_tokens(idx_Bl), scale_index, patch_nums)
            f_hats.append(f_hat)
        return tuple(f_hats)

    def teacher_forcing_input(
        self, indices: Sequence[torch.Tensor], patch_nums: Sequence[int]
    ) -> torch.Tensor:
        """VAR's teacher-forcing input [B, L - pn_0^2, C]: for every scale after the first, the
        f_hat accumulated over all coarser scales, area-downsampled to that scale's size."""
        f_hat = self._empty_f_hat(indices[0].shape[0], patch_nums[-1], indices[0].device)
        next_inputs = []
        for scale_index in range(len(patch_nums) - 1):
            f_hat = self.add_scale(
                f_hat, self.embed_tokens(indices[scale_index]), scale_index, patch_nums
            )
            next_input = area_downsample(f_hat, patch_nums[scale_index + 1])
            next_inputs.append(next_input.flatten(2).transpose(1, 2))
        return torch.cat(next_inputs, dim=1)
