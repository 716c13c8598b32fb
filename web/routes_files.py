"""Files in and out: /view, /upload/image, /upload/mask (ComfyUI's parameters and answers).

Names are confined to the input, output and temp folders (see file_access). Uploads are read
as a stream with an explicit size limit (aiohttp's client_max_size does not cover multipart
streams), must decode as images, and are written to a temporary file that is renamed into place,
so a reader never sees half a file.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO
from urllib.parse import quote, unquote

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import BadHttpMessage
from PIL import Image, PngImagePlugin

from ..executor import jsonio
from ..executor.context import Folders
from ..executor.limits import Limits, TooLarge
from ..executor.paths import UnsafePath, check_name, confined
from .file_access import file_error, folder_for, join_name, media_type, resolve_file, unique_name
from .routing import add_routes, json_error
from .state import state_of

routes = web.RouteTableDef()

_FIELD_LIMIT = 64 * 1024  # text fields of an upload form (subfolder, type, original_ref)
_FORM_OVERHEAD = 256 * 1024  # multipart boundaries and text fields on top of the file itself
_SPOOL_BYTES = 16 << 20  # uploads larger than this wait on disk, not in memory


def _disposition(path: Path, inline: bool) -> str:
    return f"{'inline' if inline else 'attachment'}; filename*=UTF-8''{quote(path.name)}"


@routes.get("/view")
async def view(request: web.Request) -> web.StreamResponse:
    query = request.query
    filename = query.get("filename")
    if not filename:
        return json_error(400, "filename is required")
    try:
        path = resolve_file(state_of(request).config.folders, query.get("type"), query.get("subfolder", ""),
                            filename)
    except UnsafePath as err:
        return json_error(400, str(err), "unsafe_path")
    except OSError:
        return json_error(404, "no such file", "not_found")
    channel = query.get("channel", "rgba")
    if "preview" in query or channel in ("rgb", "a"):
        try:
            body, content_type = await asyncio.to_thread(_render, path, query.get("preview"), channel)
        except (OSError, ValueError, Image.DecompressionBombError) as err:
            return json_error(415, f"cannot render this file as an image: {err}", "not_an_image")
        return web.Response(body=body, content_type=content_type,
                            headers={"Content-Disposition": _disposition(path, True)})
    content_type, inline = media_type(path)
    return web.FileResponse(path, headers={"Content-Type": content_type,
                                           "Content-Disposition": _disposition(path, inline)})


def _render(path: Path, preview: str | None, channel: str) -> tuple[bytes, str]:
    """``preview=webp;90`` / ``jpeg;80`` re-encodes; ``channel=rgb`` / ``a`` extracts channels."""
    with Image.open(path) as img:
        img.load()
        if channel == "a":
            alpha = img.getchannel("A") if "A" in img.getbands() else Image.new("L", img.size, 255)
            img = Image.merge("RGBA", (Image.new("L", img.size, 0),) * 3 + (alpha,))
        elif channel == "rgb":
            img = img.convert("RGB")
        fmt, quality = "png", 90
        if preview:
            parts = preview.split(";")
            fmt = parts[0] if parts[0] in ("webp", "jpeg") and channel != "a" else "webp"
            if parts[-1].isdigit():
                quality = max(1, min(int(parts[-1]), 100))
        if fmt == "jpeg" and img.mode not in ("RGB", "L"):
            img = img.convert("RGB")
        buffer = io.BytesIO()
        img.save(buffer, format=fmt.upper(), quality=quality)
    return buffer.getvalue(), f"image/{fmt}"


@dataclass
class UploadForm:
    """The parts of an upload form; the file waits in a spooled temporary file."""

    filename: str | None = None
    file: IO[bytes] | None = None
    fields: dict[str, str] = field(default_factory=dict)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


async def _read_form(request: web.Request, limit: int) -> UploadForm:
    if request.content_length is not None and request.content_length > limit + _FORM_OVERHEAD:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length)
    if not request.content_type.startswith("multipart/"):
        raise web.HTTPBadRequest(text="expected a multipart/form-data upload")
    form = UploadForm()
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                raise web.HTTPBadRequest(text="nested multipart bodies are not accepted")
            if part.name == "image" and part.filename is not None:
                if form.file is not None:
                    raise web.HTTPBadRequest(text="one image per upload")
                # Decoded once: aiohttp clients percent-encode file names (and browsers encode a
                # quote as %22). The decoded name is then checked like any other; a name that is
                # still percent-encoded after this (double encoding) is refused.
                form.filename = unquote(part.filename)
                form.file = tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES)  # noqa: SIM115
                await _copy_limited(part, form.file, limit)
            elif part.name:
                text = await _read_limited(part, _FIELD_LIMIT)
                form.fields[part.name] = text.decode("utf-8", errors="replace")
    except (BadHttpMessage, ValueError) as err:
        # A malformed part: a CR or LF inside a header (a file name with a line break), a bad
        # Content-Disposition, a broken boundary. The client's fault, told as such.
        form.close()
        reason = err.message if isinstance(err, BadHttpMessage) else str(err)
        raise web.HTTPBadRequest(text=f"malformed multipart form: {reason}") from None
    except BaseException:
        form.close()
        raise
    return form


async def _copy_limited(part: BodyPartReader, sink: IO[bytes], limit: int) -> None:
    size = 0
    while chunk := await part.read_chunk(1 << 16):
        size += len(chunk)
        if size > limit:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=size)
        sink.write(chunk)
    sink.seek(0)


async def _read_limited(part: BodyPartReader, limit: int) -> bytes:
    data = bytearray()
    while chunk := await part.read_chunk(1 << 14):
        data += chunk
        if len(data) > limit:
            raise web.HTTPBadRequest(text=f"form field '{part.name}' is too long")
    return bytes(data)


def _verified_image(file: IO[bytes], limits: Limits) -> None:
    """An image PIL reads, whose header promises no more pixels and frames than LG_LoadImage
    would take (a bomb never reaches the input folder); nothing is decoded."""
    try:
        with Image.open(file) as img:
            limits.check_image_header(img)
            img.verify()
    except TooLarge as err:
        raise TooLarge(f"the upload is too large to load: {err}") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise ValueError(f"the upload is not an image PIL can read: {err}") from None
    finally:
        file.seek(0)


def _digest(file: IO[bytes]) -> str:
    hasher = hashlib.sha256()
    for chunk in iter(lambda: file.read(1 << 20), b""):
        hasher.update(chunk)
    file.seek(0)
    return hasher.hexdigest()


def _same_bytes(path: Path, data: IO[bytes]) -> bool:
    """Whether the regular file ``path`` holds exactly ``data``. Opened without following a link
    and without blocking (it may have been swapped for a link or a FIFO since it was looked at)."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return False
    with os.fdopen(fd, "rb") as existing:
        info = os.fstat(existing.fileno())
        size = data.seek(0, os.SEEK_END)
        data.seek(0)
        if not stat.S_ISREG(info.st_mode) or info.st_size != size:
            return False
        return _digest(existing) == _digest(data)


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def _upload_directory(folder: Path, subfolder: str) -> Path:
    """The (resolved) folder an upload goes to, made if missing; a subfolder that is, or runs
    through, a file is the client's mistake (UnsafePath), not the server's."""
    if not subfolder:
        return folder.resolve()
    directory = confined(folder, subfolder)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise UnsafePath("the subfolder names a file, not a folder") from None
    return confined(folder, subfolder)  # again, now that it exists (a symlink raced in?)


def _store(folder: Path, subfolder: str, filename: str, data: IO[bytes], overwrite: bool) -> str:
    """Write ``data`` as ``subfolder/filename`` inside ``folder``; returns the name used.

    Without ``overwrite`` an existing different file keeps its name and ours gets ``name (1).png``;
    an identical file is not written twice (ComfyUI's duplicate check). The existing entry is
    looked at with ``lstat`` and never through a link: a symlink's name is simply taken, so what
    it points at (outside the folder, perhaps) is never read, and its content or existence can't
    show in the answer. ``overwrite`` replaces regular files only.
    """
    directory = _upload_directory(folder, subfolder)
    join_name(subfolder, filename)  # one checked part, so directory / name stays in the folder
    name = filename
    existing = _lstat(directory / name)
    if existing is not None and not overwrite:
        if stat.S_ISREG(existing.st_mode) and _same_bytes(directory / name, data):
            return name
        name = unique_name(directory, filename)
    elif existing is not None and stat.S_ISLNK(existing.st_mode):
        raise UnsafePath(f"'{name}' is a symbolic link; an upload does not replace it")
    elif existing is not None and not stat.S_ISREG(existing.st_mode):
        raise UnsafePath(f"'{name}' exists and is not a file")
    # os.replace renames onto the entry itself: a link planted there meanwhile is replaced, not
    # followed.
    target = directory / name
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=".upload-", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in iter(lambda: data.read(1 << 20), b""):
                out.write(chunk)
        os.replace(temporary, target)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return name


def _composite_mask(folders: Folders, original_ref: str, mask: IO[bytes], limits: Limits) -> IO[bytes]:
    """The original image with the mask's alpha as its alpha channel, as a PNG keeping the
    original's text chunks (its workflow). The original is bounded by the same pixel limit as an
    upload (it may have been written by anything that can reach the folders)."""
    try:
        ref = jsonio.loads(original_ref)
    except jsonio.InvalidJson as err:
        raise ValueError(f"original_ref is not valid JSON: {err}") from None
    if not isinstance(ref, dict) or not isinstance(ref.get("filename"), str):
        raise ValueError("original_ref must be an object with a filename")
    source = resolve_file(folders, ref.get("type"), str(ref.get("subfolder") or ""), ref["filename"])
    with Image.open(source) as original, Image.open(mask) as mask_image:
        limits.check_image_header(original)
        metadata = PngImagePlugin.PngInfo()
        for key, value in (getattr(original, "text", None) or {}).items():
            metadata.add_text(key, value)
        result = original.convert("RGBA")
        alpha = mask_image.convert("RGBA").getchannel("A")
        if alpha.size != result.size:
            alpha = alpha.resize(result.size, Image.Resampling.BILINEAR)
        result.putalpha(alpha)
        buffer = io.BytesIO()
        result.save(buffer, format="PNG", pnginfo=metadata, compress_level=4)
    buffer.seek(0)
    return buffer


async def _upload(request: web.Request, mask: bool) -> web.Response:
    state = state_of(request)
    folders = state.config.folders
    try:
        form = await _read_form(request, state.config.max_upload_bytes)
    except OSError as err:  # the spooled copy hit a full disk, say
        return file_error(err, "receive the upload")
    try:
        if form.file is None or not form.filename:
            return json_error(400, "the form needs an 'image' file with a file name")
        fields = form.fields
        kind = fields.get("type") or "input"
        subfolder = fields.get("subfolder", "").strip()
        overwrite = fields.get("overwrite", "").lower() in ("true", "1")
        try:
            if form.filename.startswith("."):
                raise UnsafePath("hidden file names (starting with '.') are not accepted")
            folder = folder_for(folders, kind, "input")
            if subfolder:
                check_name(subfolder)
            join_name(subfolder, form.filename)
        except UnsafePath as err:
            return json_error(400, str(err), "unsafe_path")
        try:
            await asyncio.to_thread(_verified_image, form.file, state.executor.limits)
            data: IO[bytes] = form.file
            if mask:
                data = await asyncio.to_thread(_composite_mask, folders, fields.get("original_ref", ""), form.file,
                                                state.executor.limits)
        except UnsafePath as err:
            return json_error(400, str(err), "unsafe_path")
        except FileNotFoundError:
            return json_error(404, "the original image of the mask does not exist", "not_found")
        except TooLarge as err:
            return json_error(400, str(err), "image_too_large")
        except (OSError, ValueError, Image.DecompressionBombError) as err:
            return json_error(400, str(err), "not_an_image")
        async with state.upload_lock:
            try:
                name = await asyncio.to_thread(_store, folder, subfolder, form.filename, data, overwrite)
            except UnsafePath as err:
                return json_error(400, str(err), "unsafe_path")
            except OSError as err:
                return file_error(err, "store the upload")
        return web.json_response({"name": name, "subfolder": subfolder, "type": kind})
    finally:
        form.close()


@routes.post("/upload/image")
async def upload_image(request: web.Request) -> web.Response:
    return await _upload(request, mask=False)


@routes.post("/upload/mask")
async def upload_mask(request: web.Request) -> web.Response:
    """A mask painted in the editor: its alpha replaces the alpha of ``original_ref``."""
    return await _upload(request, mask=True)


def register(app: web.Application) -> None:
    add_routes(app, routes)

