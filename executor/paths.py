"""Confining user-supplied file names to a folder.

Every name that comes from a workflow or a request goes through :func:`confined`, which refuses
anything that could leave the folder: absolute paths, ``..``, backslashes, NUL bytes,
percent-encoded separators, Windows drive and device names, and symlinks pointing outside.
"""

from __future__ import annotations

import re
from pathlib import Path

_DEVICE_NAMES = re.compile(r"^(con|prn|aux|nul|com[0-9]|lpt[0-9])(\..*)?$", re.IGNORECASE)


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
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if not parts:
        raise UnsafePath("a file name is required")
    for part in parts:
        if part == ".." or part.strip(". ") == "":
            raise UnsafePath("'..' and dot-only names are not allowed")
        if _DEVICE_NAMES.match(part):
            raise UnsafePath(f"'{part}' is a reserved device name")
        if any(ord(c) < 32 for c in part):
            raise UnsafePath("file names cannot contain control characters")
    return parts


def confined(folder: str | Path, name: str, *, must_exist: bool = False) -> Path:
    """``folder / name``, guaranteed (after resolving symlinks) to stay inside ``folder``."""
    root = Path(folder).resolve()
    path = root.joinpath(*check_name(name))
    resolved = path.resolve()
    if resolved != root and root not in resolved.parents:
        raise UnsafePath("the name resolves outside its folder (through a symbolic link?)")
    if must_exist and not resolved.is_file():
        raise FileNotFoundError(f"'{name}' does not exist in {root.name}/")
    return resolved
