"""How large an image a workflow may make a node allocate.

A 73 KB animated PNG can declare 400 frames of 4000 x 4000 pixels (11 GB once decoded), and a
literal ``batch_size=4096`` on a 16384 x 16384 empty image asks for 13 TB. A file's header and a
node's literals tell the size before anything is allocated, so nodes check them against one
:class:`Limits` and refuse with an error that says what was found, the limit, and how to raise
it. PIL's own ``Image.MAX_IMAGE_PIXELS`` is process-global, only warns below twice its value and
counts one frame, so it is no substitute.

The executor hands its limits to every node as ``self.ctx.limits``; ``Executor(limits=...)``,
``latentgraph run/serve --max-pixels/--max-frames`` and ``ServerConfig(max_pixels=...,
max_frames=...)`` set them, and the server checks an upload against the same limits before
keeping it. PIL's guard still applies on top of ours: a frame above twice its
``MAX_IMAGE_PIXELS`` (about 179 megapixels) is refused by PIL whatever these limits say.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MEGAPIXEL = 1 << 20

#: How to raise the limits, named in every refusal.
HOW_TO_RAISE = "raise it with --max-pixels / --max-frames, or Executor(limits=Limits(...))"


class TooLarge(ValueError):
    """An image, batch or latent would exceed the limits; the message says by how much."""


@dataclass(frozen=True)
class Limits:
    """Bounds on what one node may allocate from a file header or from literals.

    ``max_pixels`` bounds width x height x frames (or batch) of one image input, empty image
    or empty latent (a latent counts the pixels of the image it stands for, which its decode
    will make). The default, 64 megapixels, is one 8192 x 8192 image or 256 of 512 x 512:
    0.75 GiB as a float32 IMAGE. ``max_frames`` bounds the frames of one image file (each
    frame costs Python objects whatever its size).
    """

    max_pixels: int = 64 * MEGAPIXEL
    max_frames: int = 1024

    def __post_init__(self) -> None:
        for name in ("max_pixels", "max_frames"):
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")

    def check_pixels(self, width: int, height: int, count: int = 1, unit: str = "images") -> None:
        """Raise :class:`TooLarge` when ``count`` images of ``width`` x ``height`` are too many
        pixels (or, for ``unit="frames"``, too many frames)."""
        if unit == "frames" and count > self.max_frames:
            raise TooLarge(
                f"{count:,} frames are over the limit of {self.max_frames:,} frames "
                f"(max_frames; {HOW_TO_RAISE})"
            )
        pixels = width * height * count
        if pixels > self.max_pixels:
            shape = f"{width:,} x {height:,}" + (f" x {count:,} {unit}" if count != 1 else "")
            raise TooLarge(
                f"{shape} = {pixels:,} pixels is over the limit of {self.max_pixels:,} "
                f"pixels (max_pixels; {HOW_TO_RAISE})"
            )

    def check_image_header(self, image: Any) -> None:
        """Check an opened PIL image by its header alone (PIL decodes nothing before ``load()``):
        width, height and frame count (an animated PNG's acTL chunk; 1 for a still image), so a
        small file that would decode to gigabytes is refused before any pixel buffer exists."""
        frames = getattr(image, "n_frames", 1)
        self.check_pixels(
            image.width, image.height, frames if type(frames) is int else 1, unit="frames"
        )

    def check_elements(self, shape: tuple[int, ...], what: str) -> None:
        """Raise :class:`TooLarge` when a tensor of ``shape`` would hold more values than
        ``max_pixels``: for a node that allocates a state before it knows the image size (a
        latent has fewer values than the pixels it decodes into, so this bound is the looser)."""
        count = 1
        for size in shape:
            count *= size
        if count > self.max_pixels:
            dims = " x ".join(f"{size:,}" for size in shape)
            raise TooLarge(
                f"{what} of {dims} = {count:,} values is over the limit of {self.max_pixels:,} "
                f"(max_pixels; {HOW_TO_RAISE})"
            )


DEFAULT_LIMITS = Limits()
