"""Synthetic "coloured shape" dataset that latentgraph's own small models are trained on.

One flat-coloured shape (circle, square, triangle, cross) on a black to dark-grey background,
with random size and position (always fully inside the image), antialiased by drawing at
SUPERSAMPLE x the resolution and box-filtering down (exact area coverage, no ringing).

Everything is generated on the fly and is a pure function of the seed, so nothing is downloaded
and train / evaluation / test splits are just disjoint seed ranges (see the *_SEED_BASE
constants). Caption grammar: "a {colour} {shape}"; class id = 6 * shape_index + colour_index.
"""

from __future__ import annotations

import colorsys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch.utils.data import Dataset

from ...executor.pixels import uint8_to_unit

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "cross")
COLOURS: tuple[str, ...] = ("red", "yellow", "green", "cyan", "blue", "magenta")
# Hue centre of each colour in degrees: one per HSV sextant, in COLOURS order.
HUE_CENTRES: tuple[float, ...] = tuple(60.0 * i for i in range(len(COLOURS)))
NUM_CLASSES = len(SHAPES) * len(COLOURS)

# Disjoint seed ranges, so "fresh" images for measuring never overlap training images.
TRAIN_SEED_BASE = 0
EVAL_SEED_BASE = 1_000_000_000  # the checker's --measure and the trainer's sample prompts
TEST_SEED_BASE = 2_000_000_000  # unit tests

DEFAULT_SIZE = 32
SUPERSAMPLE = 4
# Random variation. The hue jitter stays well inside +-15 degrees of the sextant centre so the
# colour name is never ambiguous; saturation/value stay high so the shape is clearly "a colour".
HUE_JITTER_DEG = 12.0
SAT_RANGE = (0.8, 1.0)
VAL_RANGE = (0.8, 1.0)
BACKGROUND_MAX = 0.15
SIDE_RANGE = (0.4, 0.8)  # shape side as a fraction of the image side
CROSS_ARM_RANGE = (0.3, 0.4)  # cross arm thickness as a fraction of the shape side


def class_id_of(shape: str, colour: str) -> int:
    return len(COLOURS) * SHAPES.index(shape) + COLOURS.index(colour)


def class_names(class_id: int) -> tuple[str, str]:
    """(shape, colour) of a class id."""
    if not 0 <= class_id < NUM_CLASSES:
        raise ValueError(f"class id {class_id} not in [0, {NUM_CLASSES})")
    shape_index, colour_index = divmod(class_id, len(COLOURS))
    return SHAPES[shape_index], COLOURS[colour_index]


def caption_of(class_id: int) -> str:
    shape, colour = class_names(class_id)
    return f"a {colour} {shape}"


CAPTIONS: tuple[str, ...] = tuple(caption_of(i) for i in range(NUM_CLASSES))


@dataclass(frozen=True)
class ShapeSpec:
    """Everything random about one image, in pixel units of the final image."""

    class_id: int
    background: float  # grey level 0..BACKGROUND_MAX
    rgb: tuple[float, float, float]  # 0..1
    x0: float
    y0: float
    side: float
    arm: float  # cross arm thickness (unused by the other shapes)

    @property
    def shape(self) -> str:
        return class_names(self.class_id)[0]

    @property
    def colour(self) -> str:
        return class_names(self.class_id)[1]


def sample_spec(seed: int, size: int = DEFAULT_SIZE, class_id: int | None = None) -> ShapeSpec:
    """Draw the random parameters of image `seed` (the class too, unless given)."""
    rng = np.random.default_rng(seed)
    cid = int(rng.integers(NUM_CLASSES)) if class_id is None else class_id
    _, colour = class_names(cid)
    hue = HUE_CENTRES[COLOURS.index(colour)] + rng.uniform(-HUE_JITTER_DEG, HUE_JITTER_DEG)
    rgb = colorsys.hsv_to_rgb(
        (hue % 360.0) / 360.0, rng.uniform(*SAT_RANGE), rng.uniform(*VAL_RANGE)
    )
    side = rng.uniform(*SIDE_RANGE) * size
    margin = max(1.0, size / 32)  # keep a pixel of background around the shape
    x0 = rng.uniform(margin, size - margin - side)
    y0 = rng.uniform(margin, size - margin - side)
    return ShapeSpec(
        class_id=cid,
        background=float(rng.uniform(0.0, BACKGROUND_MAX)),
        rgb=(float(rgb[0]), float(rgb[1]), float(rgb[2])),
        x0=float(x0),
        y0=float(y0),
        side=float(side),
        arm=float(rng.uniform(*CROSS_ARM_RANGE) * side),
    )


def render(spec: ShapeSpec, size: int = DEFAULT_SIZE) -> Image.Image:
    """Draw a spec as an RGB PIL image of size x size."""
    k = SUPERSAMPLE
    big = size * k
    grey = round(spec.background * 255)
    fill = tuple(round(c * 255) for c in spec.rgb)
    img = Image.new("RGB", (big, big), (grey, grey, grey))
    draw = ImageDraw.Draw(img)
    x0, y0, s = spec.x0 * k, spec.y0 * k, spec.side * k
    x1, y1 = x0 + s, y0 + s
    shape = spec.shape
    if shape == "circle":
        draw.ellipse([x0, y0, x1 - 1, y1 - 1], fill=fill)
    elif shape == "square":
        draw.rectangle([x0, y0, x1 - 1, y1 - 1], fill=fill)
    elif shape == "triangle":
        # Upright isosceles triangle filling its square box (fill ratio 1/2).
        draw.polygon([(x0 + s / 2, y0), (x0, y1), (x1, y1)], fill=fill)
    else:  # cross: a centred "+" whose arms span the whole box
        a = spec.arm * k
        cx, cy = x0 + s / 2, y0 + s / 2
        draw.rectangle([cx - a / 2, y0, cx + a / 2 - 1, y1 - 1], fill=fill)
        draw.rectangle([x0, cy - a / 2, x1 - 1, cy + a / 2 - 1], fill=fill)
    # BOX = the mean of each k x k block, i.e. exact area-coverage antialiasing.
    return img.resize((size, size), Image.Resampling.BOX)


def to_tensor(img: Image.Image) -> torch.Tensor:
    """PIL RGB -> float32 tensor (3, H, W) in 0..1."""
    return torch.from_numpy(uint8_to_unit(img)).permute(2, 0, 1).contiguous()


def sample(
    seed: int, size: int = DEFAULT_SIZE, *, class_id: int | None = None, as_tensor: bool = False
) -> tuple[Image.Image | torch.Tensor, str, int]:
    """Image number `seed`: (PIL image, or a (3, H, W) 0..1 tensor if as_tensor, caption, class id)."""
    spec = sample_spec(seed, size, class_id)
    img = render(spec, size)
    return (to_tensor(img) if as_tensor else img), caption_of(spec.class_id), spec.class_id


def balanced_class(index: int) -> int:
    """Class used for dataset item `index`: cycling through the classes keeps batches balanced."""
    return index % NUM_CLASSES


class ShapesDataset(Dataset):
    """Items seed_base + 0 .. seed_base + length - 1 as ((3, H, W) 0..1 tensor, caption, class id).

    With balanced=True item i has class i % 24 (its look is still random per seed), which keeps
    every class equally frequent in any window of 24 items.
    """

    def __init__(
        self,
        length: int,
        size: int = DEFAULT_SIZE,
        seed_base: int = TRAIN_SEED_BASE,
        balanced: bool = True,
    ) -> None:
        self.length, self.size, self.seed_base, self.balanced = length, size, seed_base, balanced

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[torch.Tensor, str, int]:
        if not 0 <= index < self.length:
            raise IndexError(index)
        cid = balanced_class(index) if self.balanced else None
        img, caption, cid = sample(self.seed_base + index, self.size, class_id=cid, as_tensor=True)
        assert isinstance(img, torch.Tensor)
        return img, caption, cid


def make_batch(
    seeds: Sequence[int], size: int = DEFAULT_SIZE, class_ids: Sequence[int] | None = None
) -> tuple[torch.Tensor, list[str], torch.Tensor]:
    """Stack images for the given seeds: ((N, 3, H, W) 0..1, captions, (N,) class ids)."""
    imgs, caps, ids = [], [], []
    for j, seed in enumerate(seeds):
        img, cap, cid = sample(
            seed, size, class_id=None if class_ids is None else class_ids[j], as_tensor=True
        )
        imgs.append(img)
        caps.append(cap)
        ids.append(cid)
    return torch.stack(imgs), caps, torch.tensor(ids)


def iterate_batches(
    batch: int, size: int = DEFAULT_SIZE, seed_base: int = TRAIN_SEED_BASE, start: int = 0
) -> Iterator[tuple[torch.Tensor, list[str], torch.Tensor]]:
    """Endless balanced batches of consecutive items, starting at item `start` (for resuming)."""
    index = start
    while True:
        idx = range(index, index + batch)
        yield make_batch([seed_base + i for i in idx], size, [balanced_class(i) for i in idx])
        index += batch


def make_pool(
    count: int, size: int = DEFAULT_SIZE, seed_base: int = TRAIN_SEED_BASE, workers: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed, balanced pool of `count` items as ((N, 3, H, W) uint8, (N,) class ids).

    Trainers sample batches from a pool held on the device instead of rendering every step:
    a tiny model on a big GPU would otherwise wait on PIL. uint8 keeps it 4x smaller.
    """
    if workers > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        chunks = [(lo, min(lo + 4096, count)) for lo in range(0, count, 4096)]
        # spawn, not fork: forking a process that already runs torch/OpenMP threads can deadlock.
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=ctx) as ex:
            parts = list(
                ex.map(
                    _pool_chunk,
                    *zip(*[(lo, hi, size, seed_base) for lo, hi in chunks], strict=True),
                )
            )
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
    return _pool_chunk(0, count, size, seed_base)


def _pool_chunk(lo: int, hi: int, size: int, seed_base: int) -> tuple[torch.Tensor, torch.Tensor]:
    imgs = np.empty((hi - lo, size, size, 3), dtype=np.uint8)
    ids = torch.empty(hi - lo, dtype=torch.long)
    for j, i in enumerate(range(lo, hi)):
        spec = sample_spec(seed_base + i, size, balanced_class(i))
        imgs[j] = np.asarray(render(spec, size))
        ids[j] = spec.class_id
    return torch.from_numpy(imgs).permute(0, 3, 1, 2).contiguous(), ids
