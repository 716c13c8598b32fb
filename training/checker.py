"""Training-free checker: which (colour, shape) does an image of one shape show?

Used to score generated images for prompt adherence without a learned classifier:

1. Foreground: distance of every pixel's colour from the background colour (median of the
   image border), thresholded with Otsu (adapts to dark / noisy / soft-edged images); connected
   components smaller than a speck limit, or much smaller than the largest one, are dropped.
2. Colour: the hue of the summed foreground colour vectors. Grey (the background, and the grey
   part of antialiased edge pixels) adds the same amount to R, G and B, so it cancels in the hue
   vector and needs no special handling. Nearest of the six sextant centres wins.
3. Shape: analysis by synthesis. A soft coverage map (alpha) is estimated from the distances;
   its sub-pixel bounding box gives position and size, each candidate shape is rendered into that
   box with the same antialiasing, and the candidate with the smallest normalised L1 difference
   wins. This uses the whole outline (fill ratio, corners, symmetry all at once) and degrades
   gracefully on blurry or slightly wrong shapes.

CLI: ``python -m latentgraph.training.checker --measure 1000`` prints the accuracy on fresh
dataset images (seeds from EVAL_SEED_BASE, never used for training).
"""

from __future__ import annotations

import argparse
import math
import time
from collections import deque
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image, ImageDraw

from ..executor.pixels import uint8_to_unit
from ..nodes.shapes.dataset import (
    COLOURS,
    EVAL_SEED_BASE,
    HUE_CENTRES,
    SHAPES,
    class_names,
    sample,
)

SPECK_FRACTION = 0.004  # components below this fraction of the image are noise
KEEP_RELATIVE = 0.3  # keep extra components at least this fraction of the largest (split shapes)
MIN_CONTRAST = 0.12  # foreground must differ from the background by this much (RGB distance)
MIN_CHROMA = 0.12  # mean chroma below this: the shape is grey, no colour name applies
CROSS_ARMS = (0.3, 0.35, 0.4)  # arm thicknesses tried for the cross template
TEMPLATE_SUPERSAMPLE = 4


class Verdict(NamedTuple):
    colour: str | None  # None: no coloured foreground found
    shape: str | None  # None: no foreground found


def to_array(image: Image.Image | np.ndarray | torch.Tensor) -> np.ndarray:
    """PIL / (H, W, 3) array / (3, H, W) or (H, W, 3) tensor -> float64 (H, W, 3) in 0..1."""
    if isinstance(image, Image.Image):
        return uint8_to_unit(image.convert("RGB"), np.float64)
    if isinstance(image, torch.Tensor):
        t = image.detach().float().cpu()
        if t.ndim == 3 and t.shape[0] == 3 and t.shape[-1] != 3:
            t = t.permute(1, 2, 0)
        image = t.numpy()
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise ValueError(f"expected an (H, W, 3) image, got shape {arr.shape}")
    if arr.dtype == np.uint8:
        return uint8_to_unit(arr, np.float64)
    return np.clip(arr.astype(np.float64), 0.0, 1.0)


def otsu_threshold(values: np.ndarray, bins: int = 128) -> float:
    """Threshold maximising the between-class variance of a 1-D sample."""
    hist, edges = np.histogram(values, bins=bins, range=(0.0, float(values.max()) + 1e-9))
    p = hist.astype(np.float64) / hist.sum()
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(p)
    m0 = np.cumsum(p * centres)
    total = m0[-1]
    w1 = 1.0 - w0
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (total * w0 - m0) ** 2 / (w0 * w1)
    between[~np.isfinite(between)] = 0.0
    return float(edges[int(np.argmax(between)) + 1])


def components(mask: np.ndarray) -> list[np.ndarray]:
    """8-connected components of a boolean mask, as index arrays, largest first."""
    h, w = mask.shape
    label = np.zeros((h, w), dtype=np.int32)
    found: list[np.ndarray] = []
    for y0, x0 in zip(*np.nonzero(mask), strict=True):
        if label[y0, x0]:
            continue
        label[y0, x0] = len(found) + 1
        queue, members = deque([(y0, x0)]), []
        while queue:
            y, x = queue.popleft()
            members.append(y * w + x)
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    ny, nx = y + dy, x + dx
                    if 0 <= ny < h and 0 <= nx < w and mask[ny, nx] and not label[ny, nx]:
                        label[ny, nx] = len(found) + 1
                        queue.append((ny, nx))
        found.append(np.array(members))
    return sorted(found, key=len, reverse=True)


def dilate(mask: np.ndarray) -> np.ndarray:
    """3x3 binary dilation."""
    p = np.pad(mask, 1)
    h, w = mask.shape
    return np.any([p[dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)], axis=0)


def foreground(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(binary mask, soft coverage alpha) of the shape, or None if there is no clear foreground."""
    h, w, _ = rgb.shape
    border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]])
    bg = np.median(border, axis=0)
    dist = np.linalg.norm(rgb - bg, axis=-1)
    if dist.max() < MIN_CONTRAST:
        return None
    mask = dist > max(otsu_threshold(dist), MIN_CONTRAST / 2)
    comps = [c for c in components(mask) if len(c) >= max(3, SPECK_FRACTION * h * w)]
    if not comps:
        return None
    kept = np.zeros(h * w, dtype=bool)
    for c in comps:
        if len(c) >= KEEP_RELATIVE * len(comps[0]):
            kept[c] = True
    mask = kept.reshape(h, w)
    # Coverage: 0 at the background's typical distance, 1 at the shape's typical distance.
    # Distances grow linearly with coverage for an antialiased edge, so this is ~ area coverage.
    near = dilate(mask)
    lo = float(np.median(dist[~near])) if (~near).any() else 0.0
    hi = float(np.median(dist[mask]))
    if hi - lo < MIN_CONTRAST:
        return None
    alpha = np.clip((dist - lo) / (hi - lo), 0.0, 1.0) * near  # near: specks don't count
    return mask, alpha


def hue_degrees(rgb: np.ndarray) -> tuple[float, float]:
    """(hue in degrees, chroma) of a colour (or a sum of colours) via the hexagonal projection.

    atan2 of (r - (g + b) / 2, sqrt(3)/2 (g - b)) equals the HSV hue at every multiple of 30
    degrees and is monotone in between, so the nearest sextant centre is the same as with HSV.
    """
    r, g, b = rgb
    x = r - (g + b) / 2
    y = math.sqrt(3) / 2 * (g - b)
    return math.degrees(math.atan2(y, x)) % 360.0, math.hypot(x, y)


def classify_colour(rgb: np.ndarray, mask: np.ndarray) -> str | None:
    hue, chroma = hue_degrees(rgb[mask].mean(axis=0))
    if chroma < MIN_CHROMA:
        return None
    gaps = [abs((hue - c + 180.0) % 360.0 - 180.0) for c in HUE_CENTRES]
    return COLOURS[int(np.argmin(gaps))]


def sub_pixel_box(alpha: np.ndarray) -> tuple[float, float, float, float]:
    """(x0, y0, width, height) from the coverage profiles along each axis.

    The max coverage of a column is the fraction of that column's width the shape spans (every
    shape here has a row spanning its full width), so the profile sums to the width and its
    weighted mean is the centre, both with sub-pixel precision.
    """
    px, py = alpha.max(axis=0), alpha.max(axis=1)
    w, h = float(px.sum()), float(py.sum())
    cx = float((px * (np.arange(len(px)) + 0.5)).sum()) / max(w, 1e-9)
    cy = float((py * (np.arange(len(py)) + 0.5)).sum()) / max(h, 1e-9)
    return cx - w / 2, cy - h / 2, w, h


def template(
    shape: str, box: tuple[float, float, float, float], hw: tuple[int, int], arm: float
) -> np.ndarray:
    """Coverage map of an ideal `shape` in `box`, antialiased like the dataset."""
    k = TEMPLATE_SUPERSAMPLE
    img = Image.new("L", (hw[1] * k, hw[0] * k), 0)
    draw = ImageDraw.Draw(img)
    x0, y0, w, h = (v * k for v in box)
    x1, y1 = x0 + w, y0 + h
    if shape == "circle":
        draw.ellipse([x0, y0, x1 - 1, y1 - 1], fill=255)
    elif shape == "square":
        draw.rectangle([x0, y0, x1 - 1, y1 - 1], fill=255)
    elif shape == "triangle":
        draw.polygon([(x0 + w / 2, y0), (x0, y1), (x1, y1)], fill=255)
    else:
        cx, cy, ax, ay = x0 + w / 2, y0 + h / 2, arm * w, arm * h
        draw.rectangle([cx - ax / 2, y0, cx + ax / 2 - 1, y1 - 1], fill=255)
        draw.rectangle([x0, cy - ay / 2, x1 - 1, cy + ay / 2 - 1], fill=255)
    small = img.resize((hw[1], hw[0]), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float64) / 255.0


def shape_scores(alpha: np.ndarray) -> dict[str, float]:
    """Normalised L1 mismatch (0 = perfect) between the coverage and each shape's template."""
    box = sub_pixel_box(alpha)
    scores = {}
    for shape in SHAPES:
        arms = CROSS_ARMS if shape == "cross" else (0.0,)
        best = math.inf
        for arm in arms:
            t = template(shape, box, alpha.shape, arm)
            best = min(best, float(np.abs(alpha - t).sum() / max(np.maximum(alpha, t).sum(), 1e-9)))
        scores[shape] = best
    return scores


def check(image: Image.Image | np.ndarray | torch.Tensor) -> Verdict:
    """(colour, shape) shown by an image of one shape; None where there is no clear answer."""
    rgb = to_array(image)
    fg = foreground(rgb)
    if fg is None:
        return Verdict(None, None)
    mask, alpha = fg
    scores = shape_scores(alpha)
    return Verdict(classify_colour(rgb, mask), min(scores, key=scores.__getitem__))


def is_correct(image: Image.Image | np.ndarray | torch.Tensor, class_id: int) -> bool:
    shape, colour = class_names(class_id)
    return check(image) == (colour, shape)


def degrade(image: Image.Image, rng: np.random.Generator, noise: float) -> np.ndarray:
    """A softened, noisy copy, standing in for an imperfect generated image."""
    arr = uint8_to_unit(image, np.float64)
    blurred = (
        arr + np.roll(arr, 1, 0) + np.roll(arr, -1, 0) + np.roll(arr, 1, 1) + np.roll(arr, -1, 1)
    ) / 5
    soft = 0.5 * arr + 0.5 * blurred
    return np.clip(soft + rng.normal(0.0, noise, arr.shape), 0.0, 1.0)


def measure(
    count: int, size: int = 32, seed_base: int = EVAL_SEED_BASE, noise: float = 0.0
) -> tuple[float, list[str]]:
    """Fraction of `count` fresh dataset images with colour AND shape right, plus the failures."""
    rng = np.random.default_rng(seed_base)
    failures = []
    for i in range(count):
        img, caption, cid = sample(seed_base + i, size)
        assert isinstance(img, Image.Image)
        verdict = check(degrade(img, rng, noise) if noise > 0 else img)
        shape, colour = class_names(cid)
        if verdict != (colour, shape):
            failures.append(
                f"seed {seed_base + i}: '{caption}' seen as {verdict.colour} {verdict.shape}"
            )
    return 1.0 - len(failures) / count, failures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--measure", type=int, default=1000, help="number of fresh images")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--seed-base", type=int, default=EVAL_SEED_BASE)
    parser.add_argument("--noise", type=float, default=0.0, help="also blur and add this noise std")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    acc, failures = measure(args.measure, args.size, args.seed_base, args.noise)
    for line in failures[:20]:
        print(line)
    print(
        f"checker accuracy (colour and shape both right): {acc * 100:.2f}% "
        f"({args.measure - len(failures)}/{args.measure}) at {args.size}px, noise {args.noise}, "
        f"seeds {args.seed_base}..{args.seed_base + args.measure - 1}, {time.perf_counter() - start:.1f}s"
    )


if __name__ == "__main__":
    main()
