"""Latent codes for GANs: StyleGAN's seeded Gaussian z and BigGAN's truncated normal.

``gaussian_z``: z_i = ``numpy.random.RandomState(seed + i).randn(z_dim)``, the draw of the
official stylegan2-ada-pytorch ``generate.py`` for seed ``seed + i``, so a seed names the same
image here as there.

``truncated_normal``: the standard normal restricted to [-bound, bound] (``scipy.stats.truncnorm(
-bound, bound)``: bounds in units of the standard deviation, loc 0, scale 1), drawn by inversion
as scipy's sampler does: u = ``RandomState(seed).uniform(size=n)``, z = Phi^-1(Phi(-b) + u (Phi(b)
- Phi(-b))), then times ``scale``. BigGAN's ``truncated_noise_sample(batch_size, dim_z,
truncation, seed)`` (pytorch-pretrained-biggan) is ``truncation * truncnorm.rvs(-2, 2,
random_state=RandomState(seed))``: bound 2 and scale = truncation here. The BigGAN paper's own
truncation trick (section 3.1: resample the values of magnitude above a threshold) is the same
distribution with bound = threshold and scale 1.
"""

from __future__ import annotations

import numpy as np
import torch

#: numpy.random.RandomState seeds are 32-bit.
SEED_MAX = 2**32 - 1


def gaussian_z(seed: int, batch: int, z_dim: int) -> torch.Tensor:
    """[batch, z_dim] float32: image i drawn from seed ``seed + i`` as the official generate.py."""
    rows = [np.random.RandomState(seed + i).randn(1, z_dim) for i in range(batch)]
    return torch.from_numpy(np.concatenate(rows)).float()


def truncated_normal(seed: int, batch: int, dim: int, bound: float, scale: float = 1.0) -> torch.Tensor:
    """[batch, dim] float32 from N(0, 1) truncated to [-bound, bound], times ``scale``."""
    u = torch.from_numpy(np.random.RandomState(seed).uniform(size=batch * dim))  # float64
    b = torch.tensor(float(bound), dtype=torch.float64)
    lo = torch.special.ndtr(-b)
    mass = torch.special.ndtr(b) - lo
    z = torch.special.ndtri(lo + u * mass).clamp(-b, b)  # clamp: rounding at the tails
    return (z.reshape(batch, dim) * scale).float()
