"""StyleGAN2 as nodes: load a generator, map z (and a class) to per-layer ws with the truncation
trick, mix the styles of two ws, synthesise the image; BigGAN's truncated noise as a z source.

The mapping and the synthesis are separate nodes, as the two networks are in the paper: ws are
where truncation (section 5 of Karras et al. 2019, ``w = w_avg + psi (w - w_avg)``) and style
mixing (section 3.1 there) act, and a graph can show, cache and branch from them.
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable
from pathlib import Path
from typing import Any, Literal, Optional

import torch

from ...executor.context import Folders
from ...executor.limits import TooLarge
from ...executor.node import Input, InputError, Inputs, Node, Outputs
from ...executor.pixels import pixels_to_image
from ...executor.types import Image
from ..common.files import CheckpointError, path_fingerprint, resolve_model_path
from ..core.provenance import record_models
from .family import FAMILY
from .loading import SUFFIXES, load_generator
from .model import NOISE_MODES, Generator, truncate
from .noise import SEED_MAX, gaussian_z, truncated_normal
from .sockets import GeneratorSocket, WSocket, ZSocket

CATEGORY = "latentgraph/stylegan"
MAX_BATCH = 64
#: psi outside [0, 1] extrapolates away from (or past) the average: allowed, with a warning
PSI_LIMIT = 2.0
UNCONDITIONAL = -1


def generator_path(folders: Folders, name: str) -> Path:
    """The file ``path`` names (the shared model-path rules), or InputError('path')."""
    if not name or Path(name).suffix.lower() not in SUFFIXES:
        raise InputError("path", f"'{name}' is not a StyleGAN2 generator file ({', '.join(SUFFIXES)})")
    try:
        path = resolve_model_path(folders, name)
    except CheckpointError as err:
        raise InputError("path", str(err)) from None
    if not path.is_file():
        raise InputError("path", f"'{name}' is not a file")
    return path


class LoadStyleGAN(Node):
    """Load a StyleGAN2 generator: an NVlabs network pickle (stylegan2-ada-pytorch .pkl, read as
    data: its code is never run, anything but tensors and containers is refused) or a state
    dict in the same layout (.pt weights-only, .safetensors). Its shape is read off the weights."""

    class_type = "LG_LoadStyleGAN"
    display_name = "Load StyleGAN"
    category = CATEGORY

    class In(Inputs):
        path: str = Input("shapes_stylegan/generator.safetensors",
                          tooltip="a file in the models folder (.pkl, .pt, .pth, .safetensors)")

    class Out(Outputs):
        generator: GeneratorSocket

    @classmethod
    def fingerprint(cls, inputs: dict[str, Any], folders: Folders) -> Hashable:
        return path_fingerprint(folders, inputs.get("path"))

    def run(self, x: In) -> Out:
        path = generator_path(self.ctx.folders, x.path)
        device = self.ctx.device
        try:
            generator = load_generator(path, device, FAMILY.compute_dtype(device))
        except CheckpointError as err:
            raise InputError("path", str(err)) from None
        record_models(self, {"generator": generator})
        return self.Out(generator=generator)


def class_vector(generator: Generator, label: int, batch: int) -> torch.Tensor | None:
    """The one-hot c of ``label`` for each image, or None for an unconditional generator."""
    c_dim = generator.c_dim
    if c_dim == 0:
        if label != UNCONDITIONAL:
            raise InputError("class_label", f"{label} given, but this generator is unconditional "
                                            "(it has no classes); use -1")
        return None
    if not 0 <= label < c_dim:
        raise InputError("class_label", f"{label} is not a class of this generator (0..{c_dim - 1})")
    c = torch.zeros(batch, c_dim)
    c[:, label] = 1
    return c


def check_psi(psi: float, input_name: str = "psi") -> None:
    if not -PSI_LIMIT <= psi <= PSI_LIMIT:  # the widget range says so too; a link may not
        raise InputError(input_name, f"{psi} is outside -{PSI_LIMIT}..{PSI_LIMIT}")
    if not 0 <= psi <= 1:
        warnings.warn(f"input '{input_name}': psi {psi} is outside 0..1: the ws are pushed past "
                      "the average (psi < 0) or away from it (psi > 1), beyond what the model "
                      "was trained to produce", UserWarning, stacklevel=2)


class StyleGANMapping(Node):
    """z (linked, or drawn from the seed as the official generate.py does) and a class -> the
    per-layer ws, truncated towards the average w: w = w_avg + psi (w - w_avg) on the layers
    below the cutoff (psi 1: none; 0.7 and 0.5 trade variety for typical images)."""

    class_type = "LG_StyleGANMapping"
    display_name = "StyleGAN Mapping"
    category = CATEGORY

    class In(Inputs):
        generator: GeneratorSocket
        seed: int = Input(0, ge=0, le=SEED_MAX, control_after_generate=True,
                          tooltip="image i gets z from numpy RandomState(seed + i), as the "
                                  "official generate.py; unused when z is linked")
        batch_size: int = Input(1, ge=1, le=MAX_BATCH, tooltip="unused when z is linked")
        class_label: int = Input(UNCONDITIONAL, ge=-1,
                                 tooltip="class of a conditional generator; -1 for an "
                                         "unconditional one")
        psi: float = Input(1.0, ge=-PSI_LIMIT, le=PSI_LIMIT, step=0.05,
                           tooltip="truncation: 1 = none, 0 = the average image; outside 0..1 "
                                   "warns")
        cutoff: int = Input(-1, ge=-1, tooltip="truncate only the layers below this; -1 = all")
        z: Optional[ZSocket] = Input(None, tooltip="latent codes [batch, z_dim], e.g. "  # noqa: UP045
                                                   "LG_TruncatedNoise's")

    class Out(Outputs):
        ws: WSocket

    def run(self, x: In) -> Out:
        g = x.generator
        check_psi(x.psi)
        if x.cutoff > g.num_ws:
            raise InputError("cutoff", f"{x.cutoff} is beyond this generator's {g.num_ws} layers "
                                       f"(0..{g.num_ws}, or -1 for all)")
        if x.z is None:
            if x.seed + x.batch_size - 1 > SEED_MAX:
                raise InputError("seed", f"seed + batch_size - 1 must stay within 0..{SEED_MAX}")
            z = gaussian_z(x.seed, x.batch_size, g.z_dim)
        else:
            z = x.z
            if z.ndim != 2 or z.shape[1] != g.z_dim:
                raise InputError("z", f"expected latent codes [batch, {g.z_dim}], got "
                                      f"{tuple(z.shape)}")
            if not 1 <= z.shape[0] <= MAX_BATCH:
                raise InputError("z", f"a batch of {z.shape[0]}; 1..{MAX_BATCH} are made at once")
        c = class_vector(g, x.class_label, z.shape[0])
        if x.psi != 1 and not hasattr(g.mapping, "w_avg"):
            raise InputError("psi", "this generator keeps no w_avg, so it cannot be truncated; "
                                    "use psi 1")
        device = next(g.parameters()).device
        with torch.no_grad():
            ws = g.mapping(z.to(device), None if c is None else c.to(device))
            if x.psi != 1:
                ws = truncate(ws, g.mapping.w_avg, x.psi, None if x.cutoff < 0 else x.cutoff)
        return self.Out(ws=ws)


def check_ws(ws: torch.Tensor, name: str, num_ws: int | None = None) -> None:
    if not isinstance(ws, torch.Tensor) or ws.ndim != 3:
        raise InputError(name, "expected ws [batch, num_ws, w_dim] from LG_StyleGANMapping")
    if num_ws is not None and ws.shape[1] != num_ws:
        raise InputError(name, f"{ws.shape[1]} layers of ws, but the generator has {num_ws}")


class StyleMix(Node):
    """Style mixing: the layers from ``crossover`` on take their ws from ``ws_b``; coarse layers
    (pose, shape) stay ``ws_a``'s, fine ones (colour, texture) become ``ws_b``'s."""

    class_type = "LG_StyleMix"
    display_name = "Style Mix"
    category = CATEGORY

    class In(Inputs):
        ws_a: WSocket
        ws_b: WSocket
        crossover: int = Input(4, ge=0, tooltip="first layer taken from ws_b (0 = all of them)")

    class Out(Outputs):
        ws: WSocket

    def run(self, x: In) -> Out:
        check_ws(x.ws_a, "ws_a")
        check_ws(x.ws_b, "ws_b")
        a, b = x.ws_a, x.ws_b
        if a.shape[1:] != b.shape[1:]:
            raise InputError("ws_b", f"shape {tuple(b.shape)} does not match ws_a's {tuple(a.shape)} "
                                     "(ws of two different generators?)")
        if b.shape[0] != a.shape[0]:
            if b.shape[0] != 1:
                raise InputError("ws_b", f"a batch of {b.shape[0]} for ws_a's {a.shape[0]} (give "
                                         "as many, or one for all)")
            b = b.expand_as(a)
        if x.crossover > a.shape[1]:
            raise InputError("crossover", f"{x.crossover} is beyond the {a.shape[1]} layers "
                                          f"(0..{a.shape[1]})")
        mixed = a.clone()
        mixed[:, x.crossover:] = b[:, x.crossover:].to(a.device, a.dtype)
        return self.Out(ws=mixed)


class StyleGANSynthesis(Node):
    """ws -> IMAGE through the synthesis network; noise 'const' uses the noise maps stored with
    the model (the same image each time), 'random' draws them from ``seed``, 'none' leaves it out."""

    class_type = "LG_StyleGANSynthesis"
    display_name = "StyleGAN Synthesis"
    category = CATEGORY

    class In(Inputs):
        generator: GeneratorSocket
        ws: WSocket
        noise_mode: Literal["const", "random", "none"] = "const"
        seed: int = Input(0, ge=0, le=2**64 - 1, control_after_generate=True,
                          tooltip="seeds the per-pixel noise of noise_mode 'random'")

    class Out(Outputs):
        image: Image

    def run(self, x: In) -> Out:
        g = x.generator
        check_ws(x.ws, "ws", g.num_ws)
        if x.ws.shape[2] != g.w_dim:
            raise InputError("ws", f"ws of width {x.ws.shape[2]}, but the generator's w has {g.w_dim}")
        try:
            self.ctx.limits.check_pixels(g.img_resolution, g.img_resolution, x.ws.shape[0])
        except TooLarge as err:
            raise InputError("ws", str(err)) from None
        assert x.noise_mode in NOISE_MODES
        gen = torch.Generator("cpu").manual_seed(x.seed)  # CPU noise: the same on every device
        param = next(g.parameters())
        with torch.no_grad():
            img = g.synthesis(x.ws.to(param.device, param.dtype), noise_mode=x.noise_mode,
                              generator=gen)
        return self.Out(image=pixels_to_image(img))


class TruncatedNoise(Node):
    """BigGAN's truncated noise: z from N(0, 1) truncated to [-bound, bound] (scipy's truncnorm),
    times scale. BigGAN's truncated_noise_sample(truncation=t) is bound 2, scale t; the paper's
    resampling trick at threshold t is bound t, scale 1. Feeds LG_StyleGANMapping's z."""

    class_type = "LG_TruncatedNoise"
    display_name = "Truncated Noise"
    category = CATEGORY

    class In(Inputs):
        batch_size: int = Input(1, ge=1, le=MAX_BATCH)
        dim: int = Input(512, ge=1, le=65536, tooltip="the generator's z_dim")
        bound: float = Input(2.0, ge=0.01, le=10.0, step=0.05,
                             tooltip="truncation bound, in standard deviations")
        scale: float = Input(1.0, ge=0.0, le=PSI_LIMIT, step=0.05,
                             tooltip="multiplies the draw (BigGAN's 'truncation')")
        seed: int = Input(0, ge=0, le=SEED_MAX, control_after_generate=True,
                          tooltip="numpy RandomState seed, as BigGAN's truncated_noise_sample")

    class Out(Outputs):
        z: ZSocket

    def run(self, x: In) -> Out:
        return self.Out(z=truncated_normal(x.seed, x.batch_size, x.dim, x.bound, x.scale))


NODES = [LoadStyleGAN, StyleGANMapping, StyleMix, StyleGANSynthesis, TruncatedNoise]
