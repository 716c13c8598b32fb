"""The three folders clients may reach (input, output, temp) and safe names inside them.

Every name from a request goes through :func:`latentgraph.executor.paths.confined`, which
refuses ``..``, absolute paths, backslashes, NUL bytes, percent-encoding, device names and
symlinks that lead outside. This module adds ComfyUI's conventions on top: a folder chosen by
``type``, a ``subfolder`` and the ``"name.png [output]"`` annotation.
"""

from __future__ import annotations

import mimetypes
import os
import re
from pathlib import Path

from ..executor.context import Folders
from ..executor.paths import UnsafePath, check_name, confined

FOLDER_TYPES = ("input", "output", "temp")
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff"})
# Types a browser may render inline. Anything else (HTML, SVG, scripts) is sent as an
# attachment, so a file a node wrote can never run as a page on our origin.
INLINE_TYPES = frozenset({
    "image/png", "image/jpeg", "image/webp", "image/gif", "image/bmp", "image/tiff",
    "video/mp4", "video/webm", "audio/mpeg", "audio/wav", "audio/x-wav", "audio/ogg", "audio/flac",
})
_ANNOTATION = re.compile(r"^(.*) \[(input|output|temp)\]$")
_MAX_LISTED = 10_000


def folder_for(folders: Folders, kind: str | None, default: str = "output") -> Path:
    kind = kind or default
    if kind not in FOLDER_TYPES:
        raise UnsafePath(f"type must be one of {', '.join(FOLDER_TYPES)}")
    return getattr(folders, kind)


def split_annotation(name: str) -> tuple[str, str | None]:
    """``"cat.png [input]"`` -> ``("cat.png", "input")``, as ComfyUI's annotated file names."""
    match = _ANNOTATION.match(name)
    return (match.group(1), match.group(2)) if match else (name, None)


def join_name(subfolder: str, filename: str) -> str:
    """``subfolder/filename`` after checking each on its own: a file name is one path part."""
    if len(check_name(filename)) != 1 or "/" in filename:
        raise UnsafePath("the file name must not contain folders; use subfolder")
    if not subfolder:
        return filename
    check_name(subfolder)
    return f"{subfolder.strip('/')}/{filename}"


def resolve_file(folders: Folders, kind: str | None, subfolder: str, filename: str,
                 default_kind: str = "output") -> Path:
    """An existing file's path inside its folder; UnsafePath or FileNotFoundError otherwise."""
    filename, annotated = split_annotation(filename)
    folder = folder_for(folders, annotated or kind, default_kind)
    return confined(folder, join_name(subfolder, filename), must_exist=True)


def media_type(path: Path) -> tuple[str, bool]:
    """The Content-Type to serve a file with, and whether it may be shown inline."""
    guessed, _ = mimetypes.guess_type(path.name)
    if guessed in INLINE_TYPES:
        return guessed, True
    return "application/octet-stream", False


def list_images(folder: Path) -> list[str]:
    """Image files under ``folder`` as ``sub/name.png``, sorted; hidden entries and symlinks
    leading outside are skipped (the listing must not reveal other folders)."""
    root = folder.resolve()
    found: list[str] = []
    if not root.is_dir():
        return found
    for current, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in files:
            if name.startswith(".") or Path(name).suffix.lower() not in IMAGE_SUFFIXES:
                continue
            relative = Path(current, name).relative_to(root).as_posix()
            try:
                confined(root, relative)
            except UnsafePath:
                continue
            found.append(relative)
            if len(found) >= _MAX_LISTED:
                return sorted(found)
    return sorted(found)


def unique_name(directory: Path, filename: str) -> str:
    """``name.png``, else ``name (1).png``, ``name (2).png`` ... (ComfyUI's upload naming)."""
    stem, suffix = os.path.splitext(filename)
    candidate, counter = filename, 1
    while (directory / candidate).exists():
        candidate = f"{stem} ({counter}){suffix}"
        counter += 1
    return candidate
