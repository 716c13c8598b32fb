"""The three folders clients may reach (input, output, temp) and safe names inside them.

Every name from a request goes through :func:`latentgraph.executor.paths.confined`, which
refuses ``..``, absolute paths, backslashes, NUL bytes, percent-encoding, device names and
symlinks that lead outside. This module adds ComfyUI's conventions on top: a folder chosen by
``type``, a ``subfolder`` and the ``"name.png [output]"`` annotation.
"""

from __future__ import annotations

import errno
import logging
import mimetypes
import os
import re
from pathlib import Path

from aiohttp import web

from ..executor.context import Folders
from ..executor.paths import MAX_PART_BYTES, UnsafePath, check_name, confined
from .routing import json_error

log = logging.getLogger(__name__)

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
    joined = f"{subfolder.strip('/')}/{filename}"
    check_name(joined)  # the limits on a whole name (length, depth) hold for the pair too
    return joined


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
    """``name.png``, else ``name (1).png``, ``name (2).png`` ... (ComfyUI's upload naming).

    A name is taken when anything has it, a symlink too (``lexists``): a link is never followed
    here, so where it leads (and whether that exists) cannot change the answer. The stem is
    shortened when the counter would push the name past a file system's 255 bytes.
    """
    stem, suffix = os.path.splitext(filename)
    candidate, counter = filename, 1
    while os.path.lexists(directory / candidate):
        tail = f" ({counter}){suffix}"
        room = max(MAX_PART_BYTES - len(tail.encode("utf-8")), 0)
        candidate = stem.encode("utf-8")[:room].decode("utf-8", errors="ignore") + tail
        counter += 1
    return candidate


# What a failed file operation tells the client. A name the file system refuses is the client's
# to fix (400); a folder the server may not write, or a full disk, is the server's (403, 507).
_NAME_ERRNOS = frozenset({errno.ENAMETOOLONG, errno.ENOTDIR, errno.EISDIR, errno.EEXIST, errno.ELOOP,
                          errno.EINVAL, errno.EILSEQ, errno.ENOTEMPTY, errno.EXDEV})
_DENIED_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})
_FULL_ERRNOS = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)})


def file_error(err: OSError, action: str) -> web.Response:
    """The JSON answer for an OSError while ``action`` ("write that file", ...): never a bare 500,
    and never the server's own path (only the error's text)."""
    reason = f"cannot {action}: {err.strerror or type(err).__name__}"
    if err.errno == errno.ENOENT:
        return json_error(404, reason, "not_found")
    if err.errno in _NAME_ERRNOS:
        return json_error(400, reason, "unsafe_path")
    if err.errno in _DENIED_ERRNOS:
        return json_error(403, reason, "forbidden")
    if err.errno in _FULL_ERRNOS:
        return json_error(507, reason, "insufficient_storage")
    log.error("file operation failed (%s): %s", action, err)
    return json_error(500, reason, "os_error")
