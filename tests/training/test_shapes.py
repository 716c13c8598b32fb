"""The synthetic shapes dataset: determinism, caption/class mapping, colours, geometry."""

from __future__ import annotations

import colorsys

import numpy as np
import pytest
import torch
from latentgraph.nodes.shapes.dataset import (
    CAPTIONS,
    COLOURS,
    HUE_CENTRES,
    NUM_CLASSES,
    SHAPES,
    TEST_SEED_BASE,
    ShapesDataset,
    caption_of,
    class_id_of,
    class_names,
    iterate_batches,
    make_pool,
    sample,
    sample_spec,
    to_tensor,
)


def pixels(img) -> np.ndarray:
    return np.asarray(img)


def test_sample_is_deterministic_per_seed() -> None:
    for seed in (0, 7, TEST_SEED_BASE + 3):
        (a, cap_a, id_a), (b, cap_b, id_b) = sample(seed), sample(seed)
        assert np.array_equal(pixels(a), pixels(b))
        assert (cap_a, id_a) == (cap_b, id_b)
    distinct = {pixels(sample(TEST_SEED_BASE + i)[0]).tobytes() for i in range(20)}
    assert len(distinct) == 20


def test_class_and_caption_mapping() -> None:
    assert SHAPES == ("circle", "square", "triangle", "cross")
    assert COLOURS == ("red", "yellow", "green", "cyan", "blue", "magenta")
    assert NUM_CLASSES == 24 and len(CAPTIONS) == 24
    assert class_id_of("circle", "red") == 0
    assert class_id_of("square", "red") == 6
    assert class_id_of("cross", "magenta") == 23
    for cid in range(NUM_CLASSES):
        shape, colour = SHAPES[cid // 6], COLOURS[cid % 6]
        assert class_names(cid) == (shape, colour)
        assert caption_of(cid) == CAPTIONS[cid] == f"a {colour} {shape}"
        assert class_id_of(shape, colour) == cid
        _, caption, got = sample(TEST_SEED_BASE + cid, class_id=cid)
        assert (caption, got) == (CAPTIONS[cid], cid)
    with pytest.raises(ValueError):
        class_names(24)


def test_random_classes_cover_all_24() -> None:
    assert {sample_spec(TEST_SEED_BASE + i).class_id for i in range(400)} == set(range(24))


def test_colours_stay_in_their_hue_sextant() -> None:
    for i in range(500):
        spec = sample_spec(TEST_SEED_BASE + i)
        h, s, v = colorsys.rgb_to_hsv(*spec.rgb)
        centre = HUE_CENTRES[COLOURS.index(spec.colour)]
        assert abs((h * 360 - centre + 180) % 360 - 180) <= 15
        assert s >= 0.75 and v >= 0.75
        assert 0.0 <= spec.background <= 0.15


@pytest.mark.parametrize("size", [32, 64])
def test_shape_is_fully_inside_on_a_grey_background(size: int) -> None:
    for i in range(50):
        img, _, _ = sample(TEST_SEED_BASE + i, size)
        arr = pixels(img).astype(int)
        assert arr.shape == (size, size, 3)
        border = np.concatenate([arr[0], arr[-1], arr[:, 0], arr[:, -1]])
        # The border is untouched background: one grey level, no shape colour.
        assert (border == border[0]).all() and border[0, 0] == border[0, 1] == border[0, 2]
        assert border[0, 0] <= round(0.15 * 255)
        assert (np.abs(arr - border[0]).max(axis=-1) > 100).sum() > 0.05 * size * size


def test_antialiased_edges() -> None:
    arr = pixels(sample(TEST_SEED_BASE, 32, class_id=0)[0])  # a circle
    levels = {tuple(p) for p in arr.reshape(-1, 3)}
    assert len(levels) > 5  # background, fill, and intermediate edge pixels


def test_tensor_form() -> None:
    img, _, _ = sample(5)
    t, _, _ = sample(5, as_tensor=True)
    assert isinstance(t, torch.Tensor) and t.shape == (3, 32, 32) and t.dtype == torch.float32
    assert 0.0 <= t.min() and t.max() <= 1.0
    assert torch.equal(t, to_tensor(img))


def test_dataset_pool_and_batches_agree() -> None:
    ds = ShapesDataset(48, seed_base=TEST_SEED_BASE)
    assert len(ds) == 48
    items = [ds[i] for i in range(48)]
    assert [cid for _, _, cid in items] == [i % 24 for i in range(48)]
    pool, ids = make_pool(48, seed_base=TEST_SEED_BASE)
    assert pool.dtype == torch.uint8 and pool.shape == (48, 3, 32, 32)
    assert ids.tolist() == [i % 24 for i in range(48)]
    assert torch.equal(pool.float() / 255, torch.stack([img for img, _, _ in items]))
    images, captions, batch_ids = next(iterate_batches(8, seed_base=TEST_SEED_BASE))
    assert images.shape == (8, 3, 32, 32) and captions == list(CAPTIONS[:8])
    assert torch.equal(images, torch.stack([img for img, _, _ in items[:8]]))
    assert batch_ids.tolist() == list(range(8))
    with pytest.raises(IndexError):
        ds[48]
