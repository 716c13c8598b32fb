"""VAR: Visual Autoregressive Modeling via next-scale prediction (Tian et al. 2024).

A from-scratch implementation that loads the official FoundationVision/VAR checkpoints and
reproduces the official tokenizer, transformer and sampler token for token.

Typical use::

    vqvae = load_vqvae("vae_ch160v4096z32.pth")
    var = load_var("var_d16.pth")
    state = start(var, labels=torch.tensor([207, 88]), seed=0)
    while not state.is_complete:
        state = scale_step(state, var, vqvae, cfg=4.0, top_k=900, top_p=0.96)
    image01 = state_to_image(vqvae, state)
"""

from .generation import (
    ForcedTokens,
    GenerationResult,
    GenerationState,
    generate,
    scale_logits,
    scale_step,
    start,
    state_to_image,
)
from .inpainting import inpaint, inpaint_constraints, known_token_masks
from .loading import (
    check_state_dict_matches,
    infer_var_config,
    infer_vqvae_config,
    load_var,
    load_vqvae,
    read_state_dict,
    var_from_state_dict,
    vqvae_from_state_dict,
)
from .quantizer import MultiScaleQuantizer, PhiSharing, TokenMaps
from .sampling import filter_top_k_top_p, gumbel_softmax, sample_tokens
from .var import VAR, KVArena, KVCache, VARConfig
from .vqvae import VQVAE, VQVAEConfig, decode_token_maps, quantize_image

__all__ = [
    "VAR",
    "KVArena",
    "KVCache",
    "VARConfig",
    "VQVAE",
    "VQVAEConfig",
    "ForcedTokens",
    "GenerationResult",
    "GenerationState",
    "MultiScaleQuantizer",
    "PhiSharing",
    "TokenMaps",
    "check_state_dict_matches",
    "decode_token_maps",
    "filter_top_k_top_p",
    "generate",
    "gumbel_softmax",
    "infer_var_config",
    "infer_vqvae_config",
    "inpaint",
    "inpaint_constraints",
    "known_token_masks",
    "load_var",
    "load_vqvae",
    "quantize_image",
    "read_state_dict",
    "sample_tokens",
    "scale_logits",
    "scale_step",
    "start",
    "state_to_image",
    "var_from_state_dict",
    "vqvae_from_state_dict",
]
