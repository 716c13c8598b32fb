"""Loading the parts SD3 / SD3.5 and FLUX.1 share, for the shared loaders: the key layouts of
their text-encoder and VAE files, and the loaders of their diffusers component folders.

For the family records (``nodes/sd3/family.py``, ``nodes/flux/family.py``), what to take:

* Layouts (single files); a registry refuses two layouts of one name, so a second family
  lists them renamed (``dataclasses.replace(layout, name=...)``); the loader reads a file the
  same way whichever family lists it:
  ``CLIP_FILE`` (clip_l.safetensors / clip_g.safetensors: transformers keys with
  ``text_projection``), ``OPENCLIP_FILE`` (a CLIP-G in open_clip's own keys), ``T5_FILE``
  (t5xxl*.safetensors: fp32/fp16/bf16, fp8 and ComfyUI's scaled fp8), ``BUNDLED_TEXT_FILE`` (the
  ``text_encoders.clip_l|clip_g|t5xxl.transformer.`` part of an all-in-one checkpoint:
  gives an :class:`SD3TextEncoders` when CLIP-G is there, else a :class:`FluxTextEncoders`),
  ``VAE16_FILE`` (``ae.safetensors`` and the ``first_stage_model.``/``vae.`` VAE of an
  all-in-one checkpoint; LDM keys, no quant convs). ``TEXT_ENCODER_LAYOUTS`` and
  ``AUTOENCODER_LAYOUTS`` are them as tuples.
  SD 1.x's layouts also match a CLIP file (``clip_text``) and an LDM VAE (``ldm_vae``); the
  loaders take the first family in ``MODEL_FAMILIES`` order that reads a detected layout, so the
  family listing these must come before ``ldm`` there, or SD 1.x's loaders get these files.
* Components (diffusers folders), by the class their config.json names:
  ``SD3_TEXT_COMPONENT`` for ``CLIPTextModelWithProjection`` (in a whole SD3 pipeline:
  text_encoder/, _2/, _3/ and tokenizer/, _2/, _3/ as one SD3TextEncoders, T5 optional; a
  folder on its own: one CLIP), ``FLUX_TEXT_COMPONENT`` for ``CLIPTextModel`` (in a whole FLUX
  pipeline: text_encoder/ + text_encoder_2/ as one FluxTextEncoders), ``T5_COMPONENT`` for
  ``T5EncoderModel``, ``VAE16_COMPONENT`` for ``AutoencoderKL`` (shift factor from the config).
  E.g. ``pipeline={"text_encoder": ("text_encoder", "CLIPTextModelWithProjection"), ...}``.
* ``MMDIT_HALF`` (autoencoder.py): these parts load in bf16 on a GPU, by ``compute_dtype``.

CLIP-L and CLIP-G are the same architecture in the same keys; what tells them apart is the
prefix inside an all-in-one file, the subfolder of a pipeline folder, the activation a folder's
config names (OpenCLIP's gelu for CLIP-G, OpenAI's quick_gelu for CLIP-L), and, for a bare file,
the width: OpenAI's CLIP text towers are at most 768 wide, OpenCLIP's ViT-H/bigG 1024/1280.
SD3 reads CLIP-L's pooled output unprojected (its release's projection is the identity), so a
CLIP-L read from a single file is used without the projection it may hold (``project=False``);
CLIP-G's projection is always applied.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..common.components import class_name, folder_config, folder_weights, transformers_model
from ..common.families import Component, Layout, ModelFolder, compute_dtype
from ..common.files import (
    CheckpointError,
    StateDict,
    WeightFile,
    display_name,
    read_json,
    read_tokenizer,
)
from ..common.fp8 import dequantised_fp8
from ..common.models import build_empty, load_strict, ready
from ..ldm.clip import bundled_tokenizer, bundled_vocabulary, folder_tokenizer
from .autoencoder import MMDIT_HALF, vae16_file, vae16_folder
from .text_encoders import (
    CLIP_MAX_LENGTH,
    ClipEncoder,
    ClipRole,
    FluxTextEncoders,
    SD3TextEncoders,
    T5Encoder,
)

__all__ = [
    "AUTOENCODER_LAYOUTS",
    "BUNDLED_TEXT_FILE",
    "CLIP_FILE",
    "FLUX_TEXT_COMPONENT",
    "OPENCLIP_FILE",
    "SD3_TEXT_COMPONENT",
    "T5_COMPONENT",
    "T5_FILE",
    "TEXT_ENCODER_LAYOUTS",
    "VAE16_COMPONENT",
    "VAE16_FILE",
    "load_t5",
]

BUNDLED_PREFIX = "text_encoders.{}.transformer."
#: a bare CLIP file at least this wide is OpenCLIP's (CLIP-G, gelu), narrower is OpenAI's.
OPENCLIP_WIDTH = 1024
CLIP_HEAD_DIM = 64  # both CLIP-L (768 = 12 x 64) and CLIP-G (1280 = 20 x 64)
#: an OpenCLIP model file's parts that are not its text tower, and the roots of the text tower
OPENCLIP_UNREAD = ("visual.", "logit_scale", "logit_bias", "attn_mask")
OPENCLIP_TEXT = (
    "transformer.resblocks.",
    "positional_embedding",
    "token_embedding.",
    "ln_final.",
    "text_projection",
)
CLIP_ACTIVATION = {"clip_l": "quick_gelu", "clip_g": "gelu"}
T5_TOKENIZER_FILES = ("tokenizer.json", "spiece.model")
T5_UNREAD = ("decoder.", "lm_head.")  # of a whole T5 (encoder-decoder) checkpoint
#: llama.cpp's names of T5's encoder tensors in GGUF files -> transformers' (applied in order)
T5_GGUF_NAMES = (
    ("enc.", "encoder."),
    (".blk.", ".block."),
    ("token_embd", "shared"),
    ("output_norm", "final_layer_norm"),
    ("attn_q", "layer.0.SelfAttention.q"),
    ("attn_k", "layer.0.SelfAttention.k"),
    ("attn_v", "layer.0.SelfAttention.v"),
    ("attn_o", "layer.0.SelfAttention.o"),
    ("attn_norm", "layer.0.layer_norm"),
    ("attn_rel_b", "layer.0.SelfAttention.relative_attention_bias"),
    ("ffn_gate", "layer.1.DenseReluDense.wi_0"),
    ("ffn_up", "layer.1.DenseReluDense.wi_1"),
    ("ffn_down", "layer.1.DenseReluDense.wo"),
    ("ffn_norm", "layer.1.layer_norm"),
)
T5_MAX_DISTANCE = 128  # T5's relative_attention_max_distance (not visible in the weights)
#: buffers older transformers versions saved in CLIP files: nothing to load
IGNORED_KEYS = ("text_model.embeddings.position_ids",)


def model_dtype(device: torch.device) -> torch.dtype:
    return compute_dtype(device, MMDIT_HALF)


def _strip(state: StateDict, prefix: str) -> StateDict:
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def _indices(keys: Any, pattern: str) -> list[int]:
    rx = re.compile(pattern)
    return sorted({int(m.group(1)) for k in keys if (m := rx.match(k))})


def _prefix_with(weights: WeightFile, marker: str) -> str:
    """The wrapper prefix under which a file holds ``marker``."""
    return next((k[: -len(marker)] for k in weights.keys() if k.endswith(marker)), "")


# --- CLIP ---------------------------------------------------------------------------------------


def clip_tokenizer(role: ClipRole) -> Any:
    """The bundled CLIP BPE vocabulary as the pipelines' tokenizers use it: CLIP-L pads with
    <|endoftext|>, SD3's CLIP-G (tokenizer_2) with "!"."""
    if role == "clip_l":
        return bundled_tokenizer()
    from transformers import CLIPTokenizer

    vocab, merges = bundled_vocabulary()
    return CLIPTokenizer(
        vocab=dict(vocab), merges=list(merges), model_max_length=CLIP_MAX_LENGTH, pad_token="!"
    )


def clip_role_of_width(width: int) -> ClipRole:
    return "clip_g" if width >= OPENCLIP_WIDTH else "clip_l"


def clip_config(weights: StateDict, name: str, role: ClipRole | None) -> Any:
    """CLIPTextConfig read off transformers-layout CLIP weights (keys under ``text_model.``):
    64-dim heads, the activation of the role (by the width where ``role`` is None)."""
    from transformers import CLIPTextConfig

    try:
        vocab, hidden = weights["text_model.embeddings.token_embedding.weight"].shape
        positions = weights["text_model.embeddings.position_embedding.weight"].shape[0]
        intermediate = weights["text_model.encoder.layers.0.mlp.fc1.weight"].shape[0]
    except KeyError as err:
        raise CheckpointError(f"{name}: not a CLIP text transformer (missing {err})") from None
    role = role or clip_role_of_width(hidden)
    projection = weights.get("text_projection.weight")
    return CLIPTextConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=len(_indices(weights, r"text_model\.encoder\.layers\.(\d+)\.")),
        num_attention_heads=max(1, hidden // CLIP_HEAD_DIM),
        max_position_embeddings=positions,
        hidden_act=CLIP_ACTIVATION[role],
        projection_dim=projection.shape[0] if projection is not None else hidden,
        bos_token_id=49406,
        eos_token_id=49407,
    )


def clip_from_state(
    state: StateDict, name: str, role: ClipRole | None, device: torch.device
) -> ClipEncoder:
    """A CLIP text encoder from transformers-layout keys (with or without ``text_model.``),
    its config read off the shapes; ``role`` None: by the width."""
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    weights = {
        k if k.startswith(("text_model.", "text_projection.")) else f"text_model.{k}": v
        for k, v in dequantised_fp8(state, name).items()
        if k not in IGNORED_KEYS
    }
    config = clip_config(weights, name, role)
    role = "clip_g" if config.hidden_act == CLIP_ACTIVATION["clip_g"] else "clip_l"
    cls = CLIPTextModelWithProjection if "text_projection.weight" in weights else CLIPTextModel
    model = transformers_model(cls, config, weights, name, device, model_dtype(device))
    # A CLIP-L file's projection (if it holds one) is not SD3's: SD3 reads CLIP-L's pooled
    # output unprojected (see text_encoders.sd3_embeds); it is loaded, and left unapplied.
    return ClipEncoder(model, clip_tokenizer(role), role, name, project=role == "clip_g")


def clip_file(weights: WeightFile, device: torch.device) -> ClipEncoder:
    """clip_l.safetensors / clip_g.safetensors (transformers keys, any wrapper prefix)."""
    name = display_name(weights.path)
    prefix = _prefix_with(weights, "text_model.embeddings.token_embedding.weight")
    state = _strip(weights.tensors(lambda k: k.startswith(prefix)), prefix)
    return clip_from_state(state, name, None, device)


def openclip_file(weights: WeightFile, device: torch.device) -> ClipEncoder:
    """A CLIP text tower in OpenCLIP's own keys (``transformer.resblocks.N.attn.in_proj_weight``,
    ``token_embedding``, ``ln_final``, a ``text_projection`` matrix applied as x @ P), e.g. a
    CLIP-G saved by open_clip; a whole OpenCLIP model's image tower is left unread. diffusers'
    converter renames the keys (splitting in_proj into q/k/v, transposing the projection)."""
    from types import SimpleNamespace

    from diffusers.loaders.single_file_utils import convert_open_clip_checkpoint

    name = display_name(weights.path)
    prefix = _prefix_with(weights, "ln_final.weight")
    state = _strip(weights.tensors(lambda k: k.startswith(prefix)), prefix)
    state = {k: v for k, v in state.items() if not k.startswith(OPENCLIP_UNREAD)}
    stray = sorted(k for k in state if not k.startswith(OPENCLIP_TEXT))
    if stray:
        raise CheckpointError(
            f"{name}: {len(stray)} tensor(s) of no OpenCLIP text tower (e.g. {stray[0]})"
        )
    width = state["token_embedding.weight"].shape[1]
    text_model = SimpleNamespace(config=SimpleNamespace(hidden_size=width))
    converted = convert_open_clip_checkpoint(text_model, dequantised_fp8(state, name), prefix="")
    return clip_from_state(converted, name, None, device)


def clip_folder(
    folder: Path, tokenizer_folder: Path, device: torch.device, role: ClipRole | None = None
) -> ClipEncoder:
    """A transformers CLIPTextModel(WithProjection) folder; ``role`` None: CLIP-G where its
    config names OpenCLIP's gelu."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    raw = folder_config(folder)
    cls_name = class_name(raw)
    classes = {
        "CLIPTextModel": CLIPTextModel,
        "CLIPTextModelWithProjection": CLIPTextModelWithProjection,
    }
    if cls_name not in classes:
        raise CheckpointError(
            f"{display_name(folder)}/ holds a {cls_name or '?'}, not a CLIP text model"
        )
    config = CLIPTextConfig.from_dict(raw)
    role = role or ("clip_g" if config.hidden_act == "gelu" else "clip_l")
    model = transformers_model(
        classes[cls_name],
        config,
        folder_weights(folder),
        display_name(folder),
        device,
        model_dtype(device),
    )
    return ClipEncoder(model, folder_tokenizer(tokenizer_folder), role, display_name(folder))


# --- T5 -----------------------------------------------------------------------------------------


def t5_config(state: StateDict, name: str) -> Any:
    """T5 v1.1's config read off its encoder's shapes: the head count from the relative
    attention bias table (buckets x heads), the gated GELU from wi_0/wi_1."""
    from transformers import T5Config

    block = "encoder.block.0.layer."
    try:
        shared = state["shared.weight"]
        q = state[f"{block}0.SelfAttention.q.weight"]
        bias = state[f"{block}0.SelfAttention.relative_attention_bias.weight"]
        gated = f"{block}1.DenseReluDense.wi_0.weight" in state
        wi = state[
            f"{block}1.DenseReluDense.wi_0.weight"
            if gated
            else f"{block}1.DenseReluDense.wi.weight"
        ]
    except KeyError as err:
        raise CheckpointError(f"{name}: not a T5 encoder (missing {err})") from None
    buckets, heads = bias.shape
    return T5Config(
        vocab_size=shared.shape[0],
        d_model=shared.shape[1],
        d_kv=q.shape[0] // heads,
        d_ff=wi.shape[0],
        num_layers=len(_indices(state, r"encoder\.block\.(\d+)\.")),
        num_heads=heads,
        relative_attention_num_buckets=buckets,
        relative_attention_max_distance=T5_MAX_DISTANCE,
        feed_forward_proj="gated-gelu" if gated else "relu",
        layer_norm_epsilon=1e-6,
        is_encoder_decoder=False,
        use_cache=False,
    )


def _t5_model(config: Any, weights: StateDict, name: str, device: torch.device) -> Any:
    """T5EncoderModel in the compute dtype. Built in that dtype (not in fp32 and then cast, as
    the shared ``transformers_model`` does): T5-XXL has 4.7B parameters, and an fp32 copy beside
    the file's tensors would take some 19 GB more host memory while a GPU model loads."""
    from transformers import T5EncoderModel

    dtype = model_dtype(device)
    try:
        model = build_empty(lambda: T5EncoderModel._from_config(config, dtype=dtype))
    except (TypeError, ValueError, KeyError) as err:
        raise CheckpointError(f"{name}: invalid T5EncoderModel config: {err}") from None
    load_strict(model, weights, name)
    model = ready(model, device, dtype)
    if dtype == torch.float16:
        # T5's feed-forward output overflows fp16: transformers keeps the `wo` layers in fp32
        # (T5's _keep_in_fp32_modules) with the file's own values, and so do we.
        for name, module in model.named_modules():
            if hasattr(module, "wo"):
                module.wo.float()
                module.wo.weight.data.copy_(weights[f"{name}.wo.weight"])
    return model


def _fp8_target(device: torch.device) -> torch.dtype:
    """What T5's fp8 weights become: the bf16 it runs in (every fp8 value is one; no fp32 copy of
    T5-XXL in between), else fp32 (in fp16 its `wo` layers keep the fp32 values)."""
    dtype = model_dtype(device)
    return dtype if dtype == torch.bfloat16 else torch.float32


def _tied(weights: StateDict, name: str) -> StateDict:
    """T5's input embedding is tied to ``shared``: files hold one name or both."""
    shared = weights.get("shared.weight", weights.get("encoder.embed_tokens.weight"))
    if shared is None:
        raise CheckpointError(f"{name}: not a T5 encoder (no shared.weight)")
    weights["shared.weight"] = shared
    weights.setdefault("encoder.embed_tokens.weight", shared)
    return weights


def t5_from_state(
    state: StateDict, name: str, tokenizer: Any | None, device: torch.device
) -> T5Encoder:
    """A T5 encoder from HF keys (``shared.weight``, ``encoder.block.N...``), fp8 cast."""
    weights = _tied(dequantised_fp8(state, name, _fp8_target(device)), name)
    config = t5_config(weights, name)
    return T5Encoder(_t5_model(config, weights, name, device), tokenizer, name)


def t5_tokenizer(folder: Path) -> Any:
    """T5's tokenizer saved by transformers (tokenizer.json, or spiece.model)."""
    from transformers import T5Tokenizer

    return read_tokenizer(folder, T5Tokenizer, T5_TOKENIZER_FILES, "T5")


def t5_file_state(weights: WeightFile) -> StateDict:
    """A T5 file's encoder (a whole T5's decoder and LM head are not read: only the encoder
    conditions SD3 and FLUX)."""
    prefix = _prefix_with(weights, "encoder.final_layer_norm.weight")
    state = _strip(weights.tensors(lambda k: k.startswith(prefix)), prefix)
    return {k: v for k, v in state.items() if not k.startswith(T5_UNREAD)}


def t5_file(weights: WeightFile, device: torch.device) -> T5Encoder:
    """t5xxl*.safetensors read by LG_LoadTextEncoder: a tokenizer must be beside it (a file
    holds none); LG_LoadT5TextEncoder names one instead."""
    name = display_name(weights.path)
    beside = weights.path.parent
    if not any((beside / f).is_file() for f in T5_TOKENIZER_FILES):
        raise CheckpointError(
            f"{name} holds a T5 encoder but no tokenizer (a weight file carries none); load it "
            "with LG_LoadT5TextEncoder and name T5's tokenizer folder (tokenizer.json or "
            "spiece.model, e.g. tokenizer_3/ of an SD3 or tokenizer_2/ of a FLUX diffusers "
            "folder), or put those files beside it"
        )
    return t5_from_state(t5_file_state(weights), name, t5_tokenizer(beside), device)


def t5_folder(folder: Path, tokenizer_folder: Path | None, device: torch.device) -> T5Encoder:
    """A transformers T5EncoderModel folder (config.json + weights, sharded or not)."""
    from transformers import T5Config

    raw = folder_config(folder)
    if raw.get("model_type") != "t5":
        raise CheckpointError(f"{display_name(folder)}: a {raw.get('model_type')!r} model, not T5")
    config = T5Config.from_dict(raw)
    weights = _tied(
        dequantised_fp8(folder_weights(folder), display_name(folder), _fp8_target(device)),
        display_name(folder),
    )
    tokenizer = t5_tokenizer(tokenizer_folder) if tokenizer_folder is not None else None
    model = _t5_model(config, weights, display_name(folder), device)
    return T5Encoder(model, tokenizer, display_name(folder))


def t5_gguf_state(path: Path) -> StateDict:
    """A GGUF-quantised T5 encoder (llama.cpp's tensor names, as the ``t5-v1_1-xxl-encoder``
    GGUF files of the ComfyUI-GGUF ecosystem have them), dequantised to fp32 by the ``gguf``
    package's reader (``nodes/flux/gguf_files``) and renamed to transformers' keys."""
    from ..flux.gguf_files import read_gguf  # (FLUX's family imports this module)

    state = read_gguf(path)
    if "enc.blk.0.attn_q.weight" not in state:
        raise CheckpointError(
            f"{display_name(path)}: not a T5 encoder in GGUF (no enc.blk.0.attn_q.weight)"
        )
    out: StateDict = {}
    for key, value in state.items():
        for old, new in T5_GGUF_NAMES:
            key = key.replace(old, new)
        out[key] = value
    return out


def load_t5(path: Path, tokenizer: Any | None, device: torch.device) -> T5Encoder:
    """LG_LoadT5TextEncoder: T5 from a t5xxl file (safetensors or GGUF), an all-in-one
    checkpoint's ``text_encoders.t5xxl``, a T5EncoderModel folder or an SD3/FLUX pipeline folder, with
    ``tokenizer`` (a T5 tokenizer), else the folder's own or the files beside the weights."""
    if path.is_dir():
        folder = path
        if (path / "model_index.json").is_file():
            index = read_json(path / "model_index.json")
            sub = next(
                (
                    k
                    for k, v in index.items()
                    if isinstance(v, list) and v[1:] == ["T5EncoderModel"]
                ),
                None,
            )
            if sub is None:
                raise CheckpointError(f"{display_name(path)}/: the pipeline has no T5 encoder")
            folder = path / sub
        encoder = t5_folder(folder, None, device)
        own = tokenizer_folder(folder, T5_TOKENIZER_FILES)
        encoder.tokenizer = tokenizer if tokenizer is not None else t5_tokenizer(own)
        return encoder
    name = display_name(path)
    if path.suffix == ".gguf":
        if tokenizer is None and any((path.parent / f).is_file() for f in T5_TOKENIZER_FILES):
            tokenizer = t5_tokenizer(path.parent)
        return t5_from_state(t5_gguf_state(path), name, tokenizer, device)
    weights = WeightFile(path)
    keys = weights.keys()
    bundled = BUNDLED_PREFIX.format("t5xxl")
    if any(k.startswith(bundled) for k in keys):
        state = _strip(weights.tensors(lambda k: k.startswith(bundled)), bundled)
    elif T5_FILE.found_in(keys):
        state = t5_file_state(weights)
    else:
        raise CheckpointError(f"{name} holds no T5 encoder")
    if tokenizer is None and any((path.parent / f).is_file() for f in T5_TOKENIZER_FILES):
        tokenizer = t5_tokenizer(path.parent)
    return t5_from_state(state, name, tokenizer, device)


# --- folders ------------------------------------------------------------------------------------


def tokenizer_folder(folder: Path, files: tuple[str, ...]) -> Path:
    """Tokenizer files inside a component folder, else its pipeline sibling: text_encoder_N/
    goes with tokenizer_N/ (text_encoder/ with tokenizer/)."""
    if any((folder / f).is_file() for f in files):
        return folder
    suffix = folder.name.removeprefix("text_encoder")
    sibling = folder.parent / f"tokenizer{suffix}"
    return sibling if sibling.is_dir() else folder


def _clip_component(folder: ModelFolder, device: torch.device) -> ClipEncoder:
    return clip_folder(
        folder.path, tokenizer_folder(folder.path, ("tokenizer.json", "vocab.json")), device
    )


def _pipeline_part(pipeline: Path, sub: str) -> Path | None:
    """A pipeline's component folder, None where model_index.json leaves it out ([null, null],
    as an SD3 pipeline saved without T5)."""
    entry = read_json(pipeline / "model_index.json").get(sub)
    if not (isinstance(entry, list) and len(entry) == 2 and entry[1]):
        return None
    if not (pipeline / sub).is_dir():
        raise CheckpointError(f"{display_name(pipeline)}/: the pipeline folder has no {sub}/")
    return pipeline / sub


def _pipeline_tokenizer(pipeline: Path, sub: str) -> Path:
    folder = pipeline / sub
    if not folder.is_dir():
        raise CheckpointError(f"{display_name(pipeline)}/: the pipeline folder has no {sub}/")
    return folder


def sd3_text_encoders(pipeline: Path, device: torch.device) -> SD3TextEncoders:
    """The text encoders of an SD3 pipeline folder; T5 left out where model_index.json has
    none (zeros of the transformer's joint_attention_dim then, as the pipeline makes them)."""
    parts = {
        sub: _pipeline_part(pipeline, sub)
        for sub in ("text_encoder", "text_encoder_2", "text_encoder_3")
    }
    for sub in ("text_encoder", "text_encoder_2"):
        if parts[sub] is None:
            raise CheckpointError(f"{display_name(pipeline)}/: the SD3 pipeline has no {sub}/")
    clip_l = clip_folder(
        parts["text_encoder"], _pipeline_tokenizer(pipeline, "tokenizer"), device, "clip_l"
    )  # type: ignore[arg-type]
    clip_g = clip_folder(
        parts["text_encoder_2"], _pipeline_tokenizer(pipeline, "tokenizer_2"), device, "clip_g"
    )  # type: ignore[arg-type]
    t5 = None
    if parts["text_encoder_3"] is not None:
        t5 = t5_folder(
            parts["text_encoder_3"], _pipeline_tokenizer(pipeline, "tokenizer_3"), device
        )
    transformer = pipeline / "transformer" / "config.json"
    width = read_json(transformer).get("joint_attention_dim") if transformer.is_file() else None
    return SD3TextEncoders(clip_l, clip_g, t5, int(width or (t5.width if t5 else 4096)))


def flux_text_encoders(pipeline: Path, device: torch.device) -> FluxTextEncoders:
    """The text encoders of a FLUX pipeline folder: CLIP-L (text_encoder/) and T5
    (text_encoder_2/), each with its tokenizer folder."""
    clip_l = clip_folder(
        _pipeline_tokenizer(pipeline, "text_encoder"),
        _pipeline_tokenizer(pipeline, "tokenizer"),
        device,
        "clip_l",
    )
    t5 = t5_folder(
        _pipeline_tokenizer(pipeline, "text_encoder_2"),
        _pipeline_tokenizer(pipeline, "tokenizer_2"),
        device,
    )
    return FluxTextEncoders(clip_l, t5)


def _sd3_text(folder: ModelFolder, device: torch.device) -> Any:
    if folder.whole and folder.pipeline is not None:
        return sd3_text_encoders(folder.pipeline, device)
    return _clip_component(folder, device)


def _flux_text(folder: ModelFolder, device: torch.device) -> Any:
    if folder.whole and folder.pipeline is not None:
        return flux_text_encoders(folder.pipeline, device)
    return _clip_component(folder, device)


def _t5_component(folder: ModelFolder, device: torch.device) -> T5Encoder:
    return t5_folder(folder.path, tokenizer_folder(folder.path, T5_TOKENIZER_FILES), device)


def _vae16_component(folder: ModelFolder, device: torch.device) -> Any:
    return vae16_folder(folder.path, device)


SD3_TEXT_COMPONENT = Component("text_encoder", _sd3_text)
FLUX_TEXT_COMPONENT = Component("text_encoder", _flux_text)
T5_COMPONENT = Component("text_encoder", _t5_component)
VAE16_COMPONENT = Component("autoencoder", _vae16_component)


# --- all-in-one checkpoints ---------------------------------------------------------------------


def bundled_text_encoders(weights: WeightFile, device: torch.device) -> Any:
    """The ``text_encoders.*`` of an SD3 (CLIP-L, CLIP-G, T5 optional) or FLUX (CLIP-L, T5)
    all-in-one checkpoint. Its T5 has no tokenizer unless T5's tokenizer files lie beside the
    file: encoding with it then says how to give one (LG_LoadT5TextEncoder)."""
    name = display_name(weights.path)
    keys = weights.keys()

    def part(which: str) -> StateDict | None:
        prefix = BUNDLED_PREFIX.format(which)
        if not any(k.startswith(prefix) for k in keys):
            return None
        return _strip(weights.tensors(lambda k: k.startswith(prefix)), prefix)

    clip_l_state, clip_g_state, t5_state = part("clip_l"), part("clip_g"), part("t5xxl")
    if clip_l_state is None:
        raise CheckpointError(f"{name}: no text_encoders.clip_l in the checkpoint")
    clip_l = clip_from_state(clip_l_state, f"{name} (clip_l)", "clip_l", device)
    t5 = None
    if t5_state is not None:
        beside = weights.path.parent
        tokenizer = (
            t5_tokenizer(beside)
            if any((beside / f).is_file() for f in T5_TOKENIZER_FILES)
            else None
        )
        t5 = t5_from_state(t5_state, f"{name} (t5xxl)", tokenizer, device)
    if clip_g_state is None:
        if t5 is None:
            raise CheckpointError(
                f"{name}: text_encoders.clip_l without clip_g (SD3) or t5xxl (FLUX)"
            )
        return FluxTextEncoders(clip_l, t5)
    clip_g = clip_from_state(clip_g_state, f"{name} (clip_g)", "clip_g", device)
    context = next((k for k in keys if k.endswith("context_embedder.weight")), None)
    width = weights.tensors({context}.__contains__)[context].shape[1] if context else None
    return SD3TextEncoders(clip_l, clip_g, t5, int(width or (t5.width if t5 else 4096)))


# --- the layouts --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _WithoutQuantConv(Layout):
    """An LDM VAE layout that also requires the quant convs to be absent (SD3's and FLUX's
    VAEs have none; SD-VAE's have them, and its own layout reads those)."""

    def found_in(self, keys: Collection[str]) -> bool:
        return super().found_in(keys) and not any(k.endswith("quant_conv.weight") for k in keys)


OPENCLIP_FILE = Layout(
    "mmdit_openclip",
    "an OpenCLIP text encoder (open_clip keys)",
    ("transformer.resblocks.0.attn.in_proj_weight", "token_embedding.weight", "ln_final.weight"),
    part="text_encoder",
    load=openclip_file,
)
CLIP_FILE = Layout(
    "mmdit_clip",
    "a CLIP text encoder with a projection (CLIP-L/CLIP-G of SD3 and FLUX)",
    ("text_model.embeddings.token_embedding.weight", "text_projection.weight"),
    part="text_encoder",
    load=clip_file,
)
T5_FILE = Layout(
    "mmdit_t5",
    "a T5 text encoder (t5xxl)",
    ("encoder.block.0.layer.0.SelfAttention.q.weight", "encoder.final_layer_norm.weight"),
    part="text_encoder",
    load=t5_file,
)
BUNDLED_TEXT_FILE = Layout(
    "mmdit_text_encoders",
    "the text encoders of an SD3 or FLUX checkpoint",
    (BUNDLED_PREFIX.format("clip_l"),),
    wrapped=False,
    part="text_encoder",
    load=bundled_text_encoders,
)
VAE16_FILE = _WithoutQuantConv(
    "mmdit_vae16",
    "the 16-channel VAE of SD3/FLUX (LDM keys)",
    ("encoder.down.0.block.0.conv1.weight", "decoder.conv_in.weight"),
    part="autoencoder",
    load=vae16_file,
)
TEXT_ENCODER_LAYOUTS = (BUNDLED_TEXT_FILE, CLIP_FILE, OPENCLIP_FILE, T5_FILE)
AUTOENCODER_LAYOUTS = (VAE16_FILE,)
