"""StyleGAN2 generators from files, with nothing in a file ever run.

- NVlabs network pickles (``.pkl`` of stylegan2-ada-pytorch / stylegan3: a dict with ``G``,
  ``D`` and ``G_ema``) through the restricted unpickler (``common.safe_pickle``): the networks
  come back as inert records; ``G_ema``'s tensors and its init arguments (``z_dim``, ``c_dim``,
  ``w_dim``, ``img_resolution``, ``img_channels``, ``mapping_kwargs``, ``synthesis_kwargs``) are
  read from the record and the module source it carries is never compiled.
- State dicts in the same key layout (``torch.save(G_ema.state_dict())`` as ``.pt``/``.pth``,
  read with ``torch.load(weights_only=True)``, or ``.safetensors``, whose metadata may carry the
  config as ``stylegan2_config`` JSON, as the trainer here writes it).

The shape is read off the keys and shapes (resolutions, channels, mapping depth, class count);
what the weights cannot show (the mapping's lr multiplier, the activation clamp) comes from a
pickle's init arguments or takes the official defaults. StyleGAN3 (alias-free) generators and
rosinality's stylegan2-pytorch layout are recognised and refused with a message saying so.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import safetensors
import torch

from ..common.files import CheckpointError, StateDict, WeightFile, display_name
from ..common.safe_pickle import PersistentRecord, safe_load, state_dict_of
from .model import ARCHITECTURES, Generator, StyleGANConfig

PICKLE_SUFFIXES = (".pkl",)
STATE_DICT_SUFFIXES = (".safetensors", ".pt", ".pth")
SUFFIXES = PICKLE_SUFFIXES + STATE_DICT_SUFFIXES
CONFIG_METADATA_KEY = "stylegan2_config"
#: marker keys of layouts that are not this generator, and what they are
OTHER_LAYOUTS = {
    "synthesis.input.": "a StyleGAN3 (alias-free) generator, which latentgraph does "
                                     "not implement",
    "style.1.weight": "rosinality's stylegan2-pytorch layout, which latentgraph does not read "
                      "(export the generator in the NVlabs layout)",
}
_FC = re.compile(r"^mapping\.fc(\d+)\.weight$")
_BLOCK = re.compile(r"^synthesis\.b(\d+)\.")


def _refuse_other(keys: set[str], source: str) -> None:
    for marker, what in OTHER_LAYOUTS.items():  # a marker ending in "." is a key prefix
        if any(k == marker or (marker.endswith(".") and k.startswith(marker)) for k in keys):
            raise CheckpointError(f"{source} holds {what}")
    if not {"synthesis.b4.const", "mapping.fc0.weight"} <= keys:
        raise CheckpointError(f"{source} holds no StyleGAN2 generator (no synthesis.b4.const and "
                              "mapping.fc0.weight keys)")


def infer_config(sd: StateDict, source: str, kwargs: dict[str, Any] | None = None) -> StyleGANConfig:
    """The config of a generator state dict in the NVlabs layout; ``kwargs`` are a pickle's init
    arguments, which must agree with the shapes and give what they do not show."""
    keys = set(sd)
    _refuse_other(keys, source)
    try:
        return _infer(sd, keys, source, dict(kwargs or {}))
    except KeyError as err:
        raise CheckpointError(f"{source}: the StyleGAN2 generator lacks the key {err}") from None


def _infer(sd: StateDict, keys: set[str], source: str, kwargs: dict[str, Any]) -> StyleGANConfig:
    mapping_kw = dict(kwargs.get("mapping_kwargs") or {})
    synthesis_kw = dict(kwargs.get("synthesis_kwargs") or {})
    layers = sorted(int(m.group(1)) for k in keys if (m := _FC.match(k)))
    if layers != list(range(len(layers))):
        raise CheckpointError(f"{source}: mapping layers {layers} are not numbered 0..n-1")
    w_dim = sd[f"mapping.fc{layers[-1]}.weight"].shape[0]
    fc0_in = sd["mapping.fc0.weight"].shape[1]
    embed = sd.get("mapping.embed.weight")
    c_dim = embed.shape[1] if embed is not None else 0
    embed_features = embed.shape[0] if embed is not None else 0
    resolutions = sorted({int(m.group(1)) for k in keys if (m := _BLOCK.match(k))})
    img_resolution = resolutions[-1]
    expected = [2**i for i in range(2, img_resolution.bit_length())]
    if resolutions != expected:
        raise CheckpointError(f"{source}: synthesis blocks {resolutions} are not 4, 8, ... up to "
                              f"a power of two")
    channels = {res: sd[f"synthesis.b{res}.conv1.weight"].shape[0] for res in resolutions}
    last_rgb = sd.get(f"synthesis.b{img_resolution}.torgb.weight")
    if last_rgb is None:
        raise CheckpointError(f"{source}: the last synthesis block has no torgb layer")
    architecture = "orig"
    if "synthesis.b8.skip.weight" in keys:
        architecture = "resnet"
    elif len(resolutions) == 1 or "synthesis.b4.torgb.weight" in keys:
        architecture = "skip"
    architecture = synthesis_kw.get("architecture", architecture)
    if architecture not in ARCHITECTURES:
        raise CheckpointError(f"{source}: unknown synthesis architecture {architecture!r}")
    config = StyleGANConfig(
        z_dim=fc0_in - embed_features,
        c_dim=c_dim,
        w_dim=w_dim,
        img_resolution=img_resolution,
        img_channels=last_rgb.shape[0],
        channels=channels,
        mapping_layers=len(layers),
        embed_features=embed_features,
        layer_features=sd["mapping.fc0.weight"].shape[0] if len(layers) > 1 else w_dim,
        lr_multiplier=float(mapping_kw.get("lr_multiplier", 0.01)),
        mapping_activation=str(mapping_kw.get("activation", "lrelu")),
        has_w_avg="mapping.w_avg" in keys,
        architecture=architecture,
        conv_clamp=_optional_float(synthesis_kw.get("conv_clamp")),
        use_noise="synthesis.b4.conv1.noise_strength" in keys,
        resample_taps=tuple(synthesis_kw.get("resample_filter", (1, 3, 3, 1))),
    )
    for name in ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels"):
        if name in kwargs and int(kwargs[name]) != getattr(config, name):
            raise CheckpointError(f"{source}: its init arguments say {name}={kwargs[name]}, its "
                                  f"weights {getattr(config, name)}")
    return config


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def generator_from_state_dict(sd: StateDict, config: StyleGANConfig, source: str,
                              device: torch.device, dtype: torch.dtype) -> Generator:
    """A generator holding exactly ``sd`` (strict: a missing or extra key is an error)."""
    with torch.device("meta"):
        generator = Generator(config)
    missing, unexpected = _key_mismatch(generator, sd)
    if missing or unexpected:
        raise CheckpointError(
            f"{source} does not fit the StyleGAN2 generator its shapes describe: "
            f"missing {sorted(missing)[:4]}, unexpected {sorted(unexpected)[:4]}"
        )
    generator.load_state_dict(sd, strict=True, assign=True)
    return generator.to(device=device, dtype=dtype).eval().requires_grad_(False)


def _key_mismatch(model: torch.nn.Module, sd: StateDict) -> tuple[set[str], set[str]]:
    own = model.state_dict()
    wrong = {k for k in own.keys() & sd.keys() if tuple(own[k].shape) != tuple(sd[k].shape)}
    return (own.keys() - sd.keys()) | wrong, sd.keys() - own.keys()


def read_network_pickle(path: Path) -> tuple[StateDict, dict[str, Any]]:
    """``G_ema``'s state dict and init kwargs from an NVlabs network pickle, read as data."""
    source = display_name(path)
    loaded = safe_load(path)
    record = loaded.get("G_ema") if isinstance(loaded, dict) else loaded
    if not isinstance(record, PersistentRecord):
        found = sorted(map(str, loaded)) if isinstance(loaded, dict) else type(loaded).__name__
        raise CheckpointError(f"{source} is not a network pickle with a G_ema network (it holds "
                              f"{found})")
    if record.class_name != "Generator":
        raise CheckpointError(f"{source}: G_ema is a {record.class_name}, not a Generator")
    kwargs = record.init_kwargs
    names = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels")
    kwargs.update(zip(names, record.init_args, strict=False))  # positional ones, if any
    return state_dict_of(record), kwargs


def read_state_dict(path: Path) -> tuple[StateDict, dict[str, Any] | None]:
    """Tensors of a ``.safetensors`` / weights-only ``.pt`` state dict, and the config JSON a
    safetensors file of ours carries in its metadata."""
    weights = WeightFile(path)
    tensors = weights.tensors()
    if path.suffix.lower() not in (".safetensors",):
        return tensors, None
    with safetensors.safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    raw = meta.get(CONFIG_METADATA_KEY)
    if raw is None:
        return tensors, None
    try:
        return tensors, json.loads(raw)
    except ValueError as err:
        raise CheckpointError(f"{display_name(path)}: its {CONFIG_METADATA_KEY} metadata is not "
                              f"JSON ({err})") from None


def load_generator(path: Path, device: torch.device, dtype: torch.dtype) -> Generator:
    """A StyleGAN2 generator from a network pickle or a state dict (see the module doc)."""
    source = display_name(path)
    if path.suffix.lower() in PICKLE_SUFFIXES:
        sd, kwargs = read_network_pickle(path)
        config = infer_config(sd, source, kwargs)
    else:
        sd, saved = read_state_dict(path)
        config = infer_config(sd, source)
        if saved is not None:
            try:
                config = StyleGANConfig.from_json(saved)
            except (KeyError, TypeError, ValueError) as err:
                raise CheckpointError(f"{source}: its {CONFIG_METADATA_KEY} metadata is not a "
                                      f"generator config ({err})") from None
    sd = {k: v.float() for k, v in sd.items()}  # fp16 storage is cast once, here
    return generator_from_state_dict(sd, config, source, device, dtype)
