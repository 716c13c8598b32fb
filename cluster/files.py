"""The files a worker's output nodes wrote, placed in the server's own folders.

A worker writes into a scratch folder and sends each file's bytes with the event that names it;
here they land in the output (or temp) folder under the name a local run would have given them:
``prefix_00001_.png`` becomes the next free counter of that prefix in the server's folder (so two
workers' first images never overwrite each other), any other name the first free ``name (n)``.
The event's (and the history's) ui then names the server's file. A file sent before (a cached
output re-announced by the worker that made it) is named where it was put the first time.
"""

from __future__ import annotations

import os
import re
from collections import OrderedDict
from pathlib import Path
from typing import Any

from ..executor import Folders
from ..executor.paths import UnsafePath, check_name, confined
from .protocol import FileKey

_COUNTED = re.compile(r"^(?P<stem>.+)_(?P<n>\d+)_\.(?P<ext>[A-Za-z0-9]+)$")
#: Names remembered per server for re-announced outputs; the oldest are forgotten first.
REMEMBERED = 100_000


class OutputPlacer:
    """Writes shipped files into ``folders`` and rewrites ui entries to name them."""

    def __init__(self, folders: Folders) -> None:
        self.folders = folders
        self._placed: OrderedDict[tuple[str, FileKey], dict[str, Any]] = OrderedDict()

    def place(self, worker: str, ui: dict[str, Any], files: dict[FileKey, bytes | None]) -> dict[str, Any]:
        """``ui`` (one node's output, ``{"images": [...], ...}``) naming the server's files."""
        images = ui.get("images")
        if not isinstance(images, list):
            return ui
        placed = []
        for image in images:
            key: FileKey = (str(image.get("type")), str(image.get("subfolder", "")), str(image.get("filename", "")))
            known = self._placed.get((worker, key))
            if known is None and files.get(key) is not None:
                known = self._write(key, files[key] or b"")
                self._placed[(worker, key)] = known
                while len(self._placed) > REMEMBERED:
                    self._placed.popitem(last=False)
            placed.append(known if known is not None else image)
        return {**ui, "images": placed}

    def _write(self, key: FileKey, data: bytes) -> dict[str, Any]:
        kind, subfolder, filename = key
        root = self.folders.output if kind == "output" else self.folders.temp
        try:
            check_name(filename)
            folder = confined(root, subfolder) if subfolder else root.resolve()
        except UnsafePath:  # a worker never names such a file; refuse rather than trust it
            raise ValueError(f"a worker sent a file named {subfolder}/{filename!r}") from None
        folder.mkdir(parents=True, exist_ok=True)
        for name in _candidates(folder, filename):
            try:
                fd = os.open(folder / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                continue  # taken meanwhile: the next one
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            return {"filename": name, "subfolder": subfolder, "type": kind}
        raise RuntimeError("unreachable")  # pragma: no cover - the candidates never end


def _candidates(folder: Path, filename: str) -> Any:
    match = _COUNTED.match(filename)
    if match is not None:  # the saving nodes' own pattern: the next counter of the stem here
        stem, ext, width = match["stem"], match["ext"], len(match["n"])
        pattern = re.compile(re.escape(stem) + r"_(\d+)_\." + re.escape(ext) + "$")
        taken = [int(m.group(1)) for f in os.listdir(folder) if (m := pattern.match(f))]
        n = max(taken, default=0) + 1
        while True:
            yield f"{stem}_{n:0{width}d}_.{ext}"
            n += 1
    base, dot, ext = filename.rpartition(".")
    base, ext = (base, "." + ext) if dot else (filename, "")
    yield filename
    n = 1
    while True:
        yield f"{base} ({n}){ext}"
        n += 1
