"""Loading and saving images. Saved PNGs carry their workflow, so a picture can be re-run."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import torch
from PIL import Image as PILImage
from PIL import ImageOps, ImageSequence
from PIL.PngImagePlugin import PngInfo

from ...executor.context import Folders
from ...executor.limits import TooLarge
from ...executor.node import Input, InputError, Inputs, Node, Outputs
from ...executor.paths import UnsafePath, check_name, confined
from ...executor.pixels import image_to_uint8, uint8_to_pil, uint8_to_unit
from ...executor.types import Image, Mask
from .provenance import dtypes_summary, upstream_models

CATEGORY = "latentgraph/image"


def pil_to_image(img: PILImage.Image) -> tuple[torch.Tensor, torch.Tensor]:
    """PIL image -> IMAGE (1,H,W,3 float 0..1) and MASK (1,H,W; 1 where transparent, as ComfyUI)."""
    img = ImageOps.exif_transpose(img)
    image = torch.from_numpy(uint8_to_unit(img.convert("RGB")))[None]
    if "A" in img.getbands():
        mask = 1.0 - torch.from_numpy(uint8_to_unit(img.getchannel("A")))[None]
    else:
        mask = torch.zeros(image.shape[:3])
    return image, mask


def image_to_pil(image: torch.Tensor) -> list[PILImage.Image]:
    """IMAGE (B,H,W,C) -> one PIL image per batch item (rounded, as ComfyUI's SaveImage)."""
    if image.ndim != 4 or image.shape[-1] not in (1, 3, 4):
        raise InputError("images", f"expected an IMAGE of shape (B,H,W,3), got {tuple(image.shape)}")
    return [uint8_to_pil(a) for a in image_to_uint8(image)]


_ANNOTATIONS = {" [input]": "input", " [output]": "output", " [temp]": "temp"}


def annotated_path(name: str, folders: Folders) -> Path:
    """ComfyUI's annotated names: "x.png [output]" is x.png in the output folder (the editor's
    mask editor writes such names); a plain name is in the input folder. Never outside them."""
    for suffix, folder in _ANNOTATIONS.items():
        if name.endswith(suffix):
            return confined(getattr(folders, folder), name[: -len(suffix)], must_exist=True)
    return confined(folders.input, name, must_exist=True)


class LoadImage(Node):
    """Load an image from the input folder as IMAGE and MASK (the alpha channel, inverted)."""

    class_type = "LG_LoadImage"
    category = CATEGORY

    class In(Inputs):
        image: str = Input(tooltip="a file in the input folder ('name [output]' for the output folder)",
                           image_upload=True)

    class Out(Outputs):
        image: Image
        mask: Mask

    @classmethod
    def fingerprint(cls, inputs: dict[str, Any], folders: Folders) -> Hashable:
        name = inputs.get("image")
        if not isinstance(name, str):
            return None  # linked: the name is known only at run time, its source's signature covers it
        try:
            path = annotated_path(name, folders)
            stat = path.stat()
        except (UnsafePath, OSError):
            return ("missing", name)  # run() reports the problem
        return (str(path), stat.st_size, stat.st_mtime_ns)

    def run(self, x: In) -> Out:
        try:
            path = annotated_path(x.image, self.ctx.folders)
        except (UnsafePath, FileNotFoundError) as err:
            raise InputError("image", str(err)) from None
        try:
            with PILImage.open(path) as img:
                self.ctx.limits.check_image_header(img)  # before a single pixel is decoded
                frames = [pil_to_image(f.copy()) for f in ImageSequence.Iterator(img)]
        except TooLarge as err:
            raise InputError("image", f"'{x.image}': {err}") from None
        except PILImage.DecompressionBombError as err:  # PIL's own per-frame guard, above ours
            raise InputError("image", f"'{x.image}': {err}") from None
        except (OSError, ValueError) as err:
            raise InputError("image", f"'{x.image}' is not a readable image: {err}") from None
        size = frames[0][0].shape
        frames = [f for f in frames if f[0].shape == size]
        images = torch.cat([f[0] for f in frames]).to(self.ctx.device)
        masks = torch.cat([f[1] for f in frames]).to(self.ctx.device)
        return self.Out(image=images, mask=masks)


def _next_counter(folder: Path, stem: str) -> int:
    pattern = re.compile(re.escape(stem) + r"_(\d+)_\.png$")
    numbers = [int(m.group(1)) for f in os.listdir(folder) if (m := pattern.match(f))]
    return max(numbers, default=0) + 1


def _metadata(node: Node) -> PngInfo:
    """tEXt chunks: the API workflow, the UI workflow, and what produced the image: versions,
    device, and the dtypes of the models upstream as their loaders recorded them ("models", by
    loader node; "dtype", all of them in one string, null without a model)."""
    from ... import __version__
    from ...executor.workflow import api_to_ui
    from .. import default_registry

    run = node.ctx.run
    registry = default_registry()
    info = PngInfo()
    info.add_text("prompt", json.dumps(run.prompt))
    ui = run.ui_workflow or api_to_ui(run.prompt, registry)
    info.add_text("workflow", json.dumps(ui))
    versions = {}
    for call in run.prompt.values():
        cls = registry.get(call.get("class_type", "")) if isinstance(call, dict) else None
        if cls is not None:
            versions[cls.class_type] = cls.version
    models = upstream_models(node)
    info.add_text("latentgraph", json.dumps({
        "version": __version__, "nodes": versions, "torch": torch.__version__,
        "device": str(node.ctx.device), "dtype": dtypes_summary(models), "models": models,
    }))
    return info


def save_images(node: Node, images: torch.Tensor, prefix: str, folder: Path, kind: str) -> dict[str, Any]:
    try:
        parts = check_name(prefix)
    except UnsafePath as err:
        raise InputError("filename_prefix", str(err)) from None
    subfolder, stem = "/".join(parts[:-1]), parts[-1]
    target = confined(folder, subfolder) if subfolder else folder.resolve()
    target.mkdir(parents=True, exist_ok=True)
    metadata = _metadata(node)
    counter = _next_counter(target, stem)
    results = []
    for offset, pil in enumerate(image_to_pil(images)):
        name = f"{stem}_{counter + offset:05d}_.png"
        pil.save(target / name, pnginfo=metadata, compress_level=4)
        results.append({"filename": name, "subfolder": subfolder, "type": kind})
    return {"images": results}


class SaveImage(Node):
    """Save images as PNG into the output folder, each carrying the workflow that made it."""

    class_type = "LG_SaveImage"
    category = CATEGORY
    output_node = True
    disk_cacheable = False

    class In(Inputs):
        images: Image
        filename_prefix: str = Input("latentgraph", tooltip="file name prefix; may start with a subfolder/")

    class Out(Outputs):
        pass

    def run(self, x: In) -> Out:
        self.ui = save_images(self, x.images, x.filename_prefix, self.ctx.folders.output, "output")
        return self.Out()


class PreviewImage(Node):
    """Show images in the editor without keeping them (written to the temp folder)."""

    class_type = "LG_PreviewImage"
    category = CATEGORY
    output_node = True
    disk_cacheable = False

    class In(Inputs):
        images: Image

    class Out(Outputs):
        pass

    def run(self, x: In) -> Out:
        self.ui = save_images(self, x.images, "preview", self.ctx.folders.temp, "temp")
        return self.Out()


class EmptyImage(Node):
    """A batch of images filled with one colour (0xRRGGBB), like ComfyUI's EmptyImage."""

    class_type = "LG_EmptyImage"
    category = CATEGORY

    class In(Inputs):
        width: int = Input(512, ge=1, le=16384, step=8)
        height: int = Input(512, ge=1, le=16384, step=8)
        batch_size: int = Input(1, ge=1, le=4096)
        color: int = Input(0, ge=0, le=0xFFFFFF, display="color", tooltip="0xRRGGBB")

    class Out(Outputs):
        image: Image

    def run(self, x: In) -> Out:
        try:
            self.ctx.limits.check_pixels(x.width, x.height, x.batch_size)
        except TooLarge as err:
            raise InputError("batch_size" if x.batch_size > 1 else "width", str(err)) from None
        rgb = torch.tensor([(x.color >> 16) & 255, (x.color >> 8) & 255, x.color & 255]) / 255.0
        image = rgb.to(self.ctx.device).expand(x.batch_size, x.height, x.width, 3).contiguous()
        return self.Out(image=image)


NODES = [LoadImage, SaveImage, PreviewImage, EmptyImage]
