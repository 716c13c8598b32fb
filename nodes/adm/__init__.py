"""ADM (Dhariwal & Nichol 2021, "Diffusion Models Beat GANs") as nodes: loaders of
guided-diffusion's U-Nets and noisy classifiers, respaced plans, the classifier gradient, guided
DDPM and DDIM steps with learned variances, and a sampler expanding into them. The model code
lives in ``model/``; ``FAMILY`` (``family.py``) lets the shared loaders recognise ADM files."""

from . import loaders, nodes, sampler
from .family import FAMILY

__all__ = ["FAMILY", "NODES"]

NODES = [*loaders.NODES, *nodes.NODES, *sampler.NODES]
