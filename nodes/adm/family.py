"""ADM as a family the shared loaders recognise but do not read: guided-diffusion's diffusion
U-Nets and noisy classifiers given to LG_LoadCheckpoint and its kin get a message pointing to
ADM's own loaders (``loaders.py``), which load in the dtype this record's ``half`` gives."""

from __future__ import annotations

import torch

from ..common.families import Family, Layout

FAMILY = Family(
    name="adm",
    title="ADM (guided-diffusion)",
    # LDM's U-Net keys descend from guided-diffusion's; ADM's middle block holds a plain
    # AttentionBlock (qkv) where SD 1.x's holds a SpatialTransformer, which tells them apart.
    layouts=(
        Layout("adm_unet", "an ADM (guided-diffusion) diffusion U-Net",
               ("middle_block.1.qkv.weight", "output_blocks."), wrapped=False),
        # the classifier's head: an attention pool, or a mean pool and a 1x1 conv
        Layout("adm_classifier", "an ADM (guided-diffusion) noisy classifier",
               ("middle_block.1.qkv.weight", "out.2.positional_embedding"), wrapped=False),
        Layout("adm_classifier_mean_pool", "an ADM (guided-diffusion) noisy classifier",
               ("middle_block.1.qkv.weight", "out.3.weight"), wrapped=False),
    ),
    loaded_by=("LG_LoadADM", "LG_LoadADMClassifier"),
    half=torch.float16,
)
