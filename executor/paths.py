"""Confining user-supplied file names to a folder.

Every name that comes from a workflow or a request goes through :func:`confined`, which refuses
anything that could leave the folder: absolute paths, ``..``, backslashes, NUL bytes,
percent-encoded separators, Windows drive and device names, names longer or deeper than file
systems take (255 bytes a part, 1024 in all, 32 levels), and symlinks pointing outside.

A models folder is different: it is the user's own (nothing a client sends is ever written there),
and keeping weights on another disk behind a link (``models/sd -> /big/disk/sd``) is common, so
``confined(..., follow_links=True)`` still refuses every name above but follows the links the
folder holds wherever they lead.
"""

from __future__ import annotations

import re
from pathlib import Path

_DEVICE_NAMES = re.compile(r"^(con|prn|aux|nul|com[0-9]|lpt[0-9])(\..*)?$", re.IGNORECASE)
# Limits every common file system shares: a name of at most 255 bytes per folder or file (NAME_MAX
# on Linux and macOS; Windows counts 255 UTF-16 units, never more bytes than UTF-8's), and a
# whole relative name well inside PATH_MAX (4096) once it is joined to its folder. The depth cap
# keeps a hostile "a/a/a/..." from costing thousands of mkdir calls (and Path.mkdir's recursion).
MAX_PART_BYTES = 255
MAX_NAME_BYTES = 1024
MAX_DEPTH = 32


class UnsafePath(ValueError):
    """A file name that would leave its folder, or that no portable file system allows."""


def check_name(name: str) -> list[str]:
    """Split a relative name into parts, or raise UnsafePath naming what is wrong with it."""
    if not isinstance(name, str) or not name:
        raise UnsafePath("a file name is required")
    if "\x00" in name:
        raise UnsafePath("file names cannot contain NUL bytes")
    if "\\" in name:
        raise UnsafePath("use '/' between folders; backslashes are not allowed")
    if "%" in name and re.search(r"%[0-9a-fA-F]{2}", name):
        raise UnsafePath("percent-encoded file names are not allowed")
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name) or name.startswith("~"):
        raise UnsafePath("absolute paths are not allowed; give a name inside the folder")
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate: no file system call could take it
        raise UnsafePath("file names must be valid Unicode text") from None
    if size > MAX_NAME_BYTES:
        raise UnsafePath(f"the name is too long ({size} bytes; at most {MAX_NAME_BYTES})")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if not parts:
        raise UnsafePath("a file name is required")
    if len(parts) > MAX_DEPTH:
        raise UnsafePath(
            f"the name is {len(parts)} folders deep; at most {MAX_DEPTH} levels are allowed"
        )
    for part in parts:
        if part == ".." or part.strip(". ") == "":
            raise UnsafePath("'..' and dot-only names are not allowed")
        if _DEVICE_NAMES.match(part):
            raise UnsafePath(f"'{part}' is a reserved device name")
        if any(ord(c) < 32 for c in part):
            raise UnsafePath("file names cannot contain control characters")
        if len(part.encode("utf-8")) > MAX_PART_BYTES:
            raise UnsafePath(f"each folder or file name is at most {MAX_PART_BYTES} bytes (UTF-8)")
    return parts


def confined(
    folder: str | Path, name: str, *, must_exist: bool = False, follow_links: bool = False
) -> Path:
    """``folder / name``, guaranteed (after resolving symlinks) to stay inside ``folder``.

    With ``follow_links`` only the name is checked: links inside the folder may lead anywhere,
    and the path is returned as named, not resolved, since a link's name may be all that says what
    the file is (a Hugging Face snapshot links ``model.safetensors`` to a blob without a suffix).
    """
    root = Path(folder).resolve()
    path = root.joinpath(*check_name(name))
    if follow_links:
        if must_exist and not path.is_file():
            raise FileNotFoundError(f"'{name}' does not exist in {root.name}/")
        return path
    resolved = path.resolve()
    if resolved != root and root not in resolved.parents:
        raise UnsafePath("the name resolves outside its folder (through a symbolic link?)")
    if must_exist and not resolved.is_file():
        raise FileNotFoundError(f"'{name}' does not exist in {root.name}/")
    return resolved
