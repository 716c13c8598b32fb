"""The pictures the shipped graphs read from the input folder, drawn from the shapes dataset.

``input/example.png`` (``graphs/sd_img2img.json``): a 512 x 512 RGB picture, SD 1.5's size, its
sides a multiple of the SD-VAE's factor 8. ``input/var_inpaint_source.png``
(``graphs/var_inpaint.json``): a 64 x 64 RGBA picture for 64-pixel VAR weights (the golden
fixtures' 4 scales, the shipped ``shapes_var``'s 6), whose transparent centre (the middle half
of each side) is what in-painting regenerates.

Both are pure functions of fixed seeds; the repository ships the result, and
``python -m latentgraph.training.example_inputs --out input`` draws them again.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from ..nodes.shapes.dataset import class_id_of, render, sample_spec

IMG2IMG_NAME, IMG2IMG_SIDE = "example.png", 512
INPAINT_NAME, INPAINT_SIDE = "var_inpaint_source.png", 64
# var_inpaint.json regenerates class 3, the shapes models' cyan circle: the source is one too.
INPAINT_CLASS = class_id_of("circle", "cyan")
IMG2IMG_CLASS = class_id_of("triangle", "red")
SEED = 864  # a large shape near the centre, on a dark grey ground


def img2img_source() -> Image.Image:
    return render(sample_spec(SEED, IMG2IMG_SIDE, IMG2IMG_CLASS), IMG2IMG_SIDE)


def inpaint_hole(side: int = INPAINT_SIDE) -> np.ndarray:
    """(side, side) bool: True where the picture is transparent (the middle half of each side)."""
    hole = np.zeros((side, side), dtype=bool)
    hole[side // 4: 3 * side // 4, side // 4: 3 * side // 4] = True
    return hole


def inpaint_source() -> Image.Image:
    rgb = np.asarray(render(sample_spec(SEED, INPAINT_SIDE, INPAINT_CLASS), INPAINT_SIDE))
    alpha = np.where(inpaint_hole(), 0, 255).astype(np.uint8)
    return Image.fromarray(np.dstack([rgb, alpha]), "RGBA")


def write(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, image in ((IMG2IMG_NAME, img2img_source()), (INPAINT_NAME, inpaint_source())):
        image.save(out / name, optimize=True)
        written.append(out / name)
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("input"), help="folder to write to (default input)")
    for path in write(parser.parse_args(argv).out):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
