"""Valid PNG and APNG files that are small on disk and huge once decoded, written chunk by chunk
so that making them never holds the decoded image in memory (for the decompression-bomb tests)."""

from __future__ import annotations

import functools
import struct
import zlib

import pytest

SIGNATURE = b"\x89PNG\r\n\x1a\n"


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _ihdr(width: int, height: int, bits: int) -> bytes:
    return chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bits, 0, 0, 0, 0))  # greyscale


def _black_rows(width: int, height: int, bits: int = 8) -> bytes:
    """The zlib stream of ``height`` black rows (filter byte 0, then the row's zero bytes),
    compressed a few megabytes at a time: a uniform image compresses about a thousandfold."""
    row = 1 + (width * bits + 7) // 8
    packer = zlib.compressobj(9)
    per_block = max(1, (4 << 20) // row)
    full, rest = divmod(height, per_block)
    block = bytes(row * per_block)
    parts = [packer.compress(block) for _ in range(full)]
    parts.append(packer.compress(bytes(row * rest)))
    return b"".join(parts) + packer.flush()


@functools.cache
def grey_png(width: int, height: int, bits: int = 1) -> bytes:
    """A black greyscale PNG (1 bit a pixel by default: quick to write, and PIL still decodes
    it to a byte a pixel, then LG_LoadImage to 12 bytes of float RGB)."""
    return (SIGNATURE + _ihdr(width, height, bits) + chunk(b"IDAT", _black_rows(width, height, bits))
            + chunk(b"IEND", b""))


@functools.cache
def apng(width: int, height: int, frames: int) -> bytes:
    """An animated PNG of ``frames`` frames on a ``width`` x ``height`` canvas. The default image
    (the canvas, black) is not part of the animation (PIL counts it as one frame more); each
    frame then redraws one pixel, so the file grows by some 60 bytes a frame while PIL composes
    every frame at the canvas's size."""
    parts = [SIGNATURE, _ihdr(width, height, 8), chunk(b"acTL", struct.pack(">II", frames, 0)),
             chunk(b"IDAT", _black_rows(width, height))]
    pixel = zlib.compress(b"\x00\xff")  # one row: filter 0, one white pixel
    for frame in range(frames):
        # fcTL: sequence, width, height, x, y, delay 1/10 s, dispose none, blend source
        parts.append(chunk(b"fcTL", struct.pack(">IIIIIHHBB", 2 * frame, 1, 1, 0, 0, 1, 10, 0, 0)))
        parts.append(chunk(b"fdAT", struct.pack(">I", 2 * frame + 1) + pixel))
    parts.append(chunk(b"IEND", b""))
    return b"".join(parts)


def forbid_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """From now on in this test, fail loudly if PIL decodes any pixel (every decode goes
    through ImageFile.load): a bomb must be refused from its header alone."""
    from PIL import ImageFile

    def refuse(self: ImageFile.ImageFile) -> None:
        raise AssertionError(f"decoded a {self.size} image that should have been refused from its header")

    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)
