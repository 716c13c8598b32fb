"""VAR as a family the shared loaders recognise but do not read: a VAR or VQVAE file given to
LG_LoadCheckpoint and its kin gets a message pointing to VAR's own loaders (``loaders.py``), which
load in the dtype this record's ``half`` gives on the device."""

from __future__ import annotations

import torch

from ..common.families import Family, Layout

FAMILY = Family(
    name="var",
    title="VAR",
    layouts=(
        Layout("var", "a VAR transformer", ("class_emb.weight", "lvl_1L")),
        Layout("vqvae", "a VQVAE", ("quantize.embedding.weight",)),
    ),
    loaded_by=("LG_LoadVQVAE", "LG_LoadVAR"),
    half=torch.float16,
)
