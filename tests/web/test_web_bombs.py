"""Uploads that would decode to gigabytes are refused from their header with 400, and never
reach the input folder; the server's limits are its config's (--max-pixels / --max-frames)."""

from __future__ import annotations

import pytest
from aiohttp import FormData
from image_bombs import apng, forbid_decoding, grey_png

pytestmark = pytest.mark.asyncio


def image_form(data: bytes, filename: str, **fields: str) -> FormData:
    form = FormData()
    form.add_field("image", data, filename=filename, content_type="image/png")
    for name, value in fields.items():
        form.add_field(name, value)
    return form


@pytest.mark.parametrize(("route", "data", "found"), [
    ("/upload/image", apng(4000, 4000, 400), "4,000 x 4,000 x 401 frames = 6,416,000,000 pixels"),
    ("/upload/image", grey_png(9000, 9000), "9,000 x 9,000 = 81,000,000 pixels"),
    ("/upload/mask", grey_png(9000, 9000), "9,000 x 9,000 = 81,000,000 pixels"),
])
async def test_upload_refuses_a_bomb_from_its_header(client, data_dir, monkeypatch, route, data, found):
    forbid_decoding(monkeypatch)
    response = await client.post(route, data=image_form(data, "bomb.png", original_ref='{"filename": "x.png"}'))
    assert response.status == 400
    error = (await response.json())["error"]
    assert error["type"] == "image_too_large"
    assert found in error["message"] and "over the limit of 67,108,864 pixels" in error["message"]
    assert "--max-pixels" in error["message"]
    assert not [p for p in (data_dir / "input").rglob("*") if p.is_file()]  # nothing kept, not even a part


async def test_upload_frame_limit(make_client):
    client = await make_client(max_frames=3)
    response = await client.post("/upload/image", data=image_form(apng(4, 4, 3), "anim.png"))
    assert response.status == 400 and "4 frames are over the limit of 3" in (await response.json())["error"]["message"]


async def test_raised_pixel_limit_accepts_the_upload(make_client, data_dir):
    client = await make_client(max_pixels=81_000_000)
    response = await client.post("/upload/image", data=image_form(grey_png(9000, 9000), "big.png"))
    assert response.status == 200 and (data_dir / "input" / "big.png").is_file()


async def test_a_mask_whose_original_is_a_bomb_is_refused(client, data_dir, monkeypatch):
    """The original a mask is composited into is read from the folders, so it is bounded too."""
    (data_dir / "input" / "huge.png").write_bytes(grey_png(9000, 9000))
    forbid_decoding(monkeypatch)
    small = grey_png(4, 4)
    response = await client.post("/upload/mask", data=image_form(small, "m.png", original_ref='{"filename": "huge.png", "type": "input"}'))
    assert response.status == 400
    assert (await response.json())["error"]["type"] == "image_too_large"
    assert not (data_dir / "input" / "m.png").exists()


@pytest.mark.parametrize("original_ref", ["[" * 10_000 + "]" * 10_000, '{"filename": NaN}', "{"])
async def test_a_malformed_original_ref_is_a_400(client, original_ref):
    response = await client.post("/upload/mask", data=image_form(grey_png(4, 4), "m.png", original_ref=original_ref))
    assert response.status == 400
    assert "original_ref" in (await response.json())["error"]["message"]
