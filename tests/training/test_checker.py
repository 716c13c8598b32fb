"""The training-free (colour, shape) checker."""

from __future__ import annotations

import numpy as np
import torch
from latentgraph.nodes.shapes.dataset import TEST_SEED_BASE, sample
from latentgraph.training.checker import Verdict, check, degrade, is_correct, measure


def test_accuracy_on_200_fresh_images() -> None:
    acc, failures = measure(200, 32, TEST_SEED_BASE)
    print(f"checker accuracy on 200 fresh 32px images: {acc:.1%}")
    assert acc >= 0.98, failures


def test_accuracy_at_64px() -> None:
    acc, failures = measure(60, 64, TEST_SEED_BASE + 10_000)
    assert acc >= 0.98, failures


def test_accuracy_on_soft_noisy_images() -> None:
    # Stand-in for imperfect generated images: blurred edges and Gaussian noise on everything.
    acc, failures = measure(200, 32, TEST_SEED_BASE + 20_000, noise=0.08)
    assert acc >= 0.95, failures


def test_input_forms_agree() -> None:
    img, _, cid = sample(TEST_SEED_BASE + 1)
    arr = np.asarray(img)
    forms = [img, arr, arr / 255.0, torch.from_numpy(arr / 255.0).permute(2, 0, 1)]
    assert len({check(f) for f in forms}) == 1
    assert is_correct(img, cid)


def test_no_foreground() -> None:
    assert check(np.full((32, 32, 3), 0.1)) == Verdict(None, None)
    rng = np.random.default_rng(0)
    assert check(np.clip(0.08 + rng.normal(0, 0.02, (32, 32, 3)), 0, 1)) == Verdict(None, None)


def test_grey_shape_has_shape_but_no_colour() -> None:
    img, _, _ = sample(TEST_SEED_BASE + 2, class_id=12)  # a red triangle
    grey = np.asarray(img, dtype=np.float64).mean(axis=-1, keepdims=True).repeat(3, -1) / 255
    assert check(grey) == Verdict(None, "triangle")


def test_specks_are_ignored() -> None:
    img, _, cid = sample(TEST_SEED_BASE + 3, class_id=21)  # a cyan cross
    arr = np.asarray(img, dtype=np.float64) / 255
    arr[0, 0] = arr[31, 0] = arr[15, 31] = (1.0, 0.0, 0.0)  # isolated red pixels
    assert check(arr) == Verdict("cyan", "cross")


def test_degrade_is_reproducible() -> None:
    img, _, _ = sample(TEST_SEED_BASE)
    a = degrade(img, np.random.default_rng(1), 0.05)
    b = degrade(img, np.random.default_rng(1), 0.05)
    assert np.array_equal(a, b) and a.shape == (32, 32, 3)
