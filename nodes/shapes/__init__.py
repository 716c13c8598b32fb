"""The synthetic coloured-shapes dataset as nodes: reference images for teaching graphs and
for checking that generated images follow their prompts. The dataset itself is ``dataset.py``,
below both these nodes and the trainers in ``training/`` that import it."""

from __future__ import annotations

import torch

from ...executor.limits import TooLarge
from ...executor.node import Input, InputError, Inputs, Node, Outputs
from ...executor.pixels import unit_to_image
from ...executor.types import Image
from . import dataset as shapes

CATEGORY = "latentgraph/shapes"


def parse_class_ids(text: str) -> list[int]:
    try:
        ids = [int(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError:
        raise InputError("class_ids", f"expected class ids like '0,7,23', got {text!r}") from None
    bad = [i for i in ids if not 0 <= i < shapes.NUM_CLASSES]
    if bad:
        raise InputError("class_ids", f"class ids must be in 0..{shapes.NUM_CLASSES - 1}, got {bad}")
    return ids


class ShapesImages(Node):
    """Images of the coloured-shapes dataset (one shape on a dark background; class id =
    6 x shape + colour, shapes circle/square/triangle/cross, colours red/yellow/green/cyan/blue/
    magenta). Deterministic per seed; class_ids picks the classes, cycling, or random if empty."""

    class_type = "LG_ShapesImages"
    category = CATEGORY

    class In(Inputs):
        count: int = Input(8, ge=1, le=4096)
        size: int = Input(32, ge=8, le=1024, step=8)
        seed: int = Input(0, ge=0, le=2**31)
        class_ids: str = Input("", tooltip="comma-separated class ids (0..23); empty: random classes")

    class Out(Outputs):
        images: Image

    def run(self, x: In) -> Out:
        ids = parse_class_ids(x.class_ids)
        try:
            self.ctx.limits.check_pixels(x.size, x.size, x.count)
        except TooLarge as err:
            raise InputError("count", str(err)) from None
        batch = []
        for i in range(x.count):
            class_id = ids[i % len(ids)] if ids else None
            image, _, _ = shapes.sample(x.seed + i, x.size, class_id=class_id, as_tensor=True)
            batch.append(image)
        return self.Out(images=unit_to_image(torch.stack(batch)).to(self.ctx.device))


NODES = [ShapesImages]
