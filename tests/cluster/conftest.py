"""One local Ray cluster for the whole test session (``ray.init(num_cpus=2)``), started by the
first test that asks for it and shut down at the end; without Ray those tests skip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

GRAPHS = Path(__file__).resolve().parents[2] / "graphs"
#: Every Ray wait in these tests is bounded by this (a stuck worker fails the test, not CI).
RAY_TIMEOUT_S = 120


@pytest.fixture(scope="session")
def ray_session():
    ray = pytest.importorskip("ray", reason="the ray extra is not installed")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


def shapes_prompt(seed: int = 0, text: str = "a red circle", steps: int = 3) -> dict:
    """The shipped tiny SD graph at a few steps."""
    nodes = json.loads((GRAPHS / "shapes_sd.json").read_text())
    nodes["5"]["inputs"].update(seed=seed, steps=steps)
    nodes["2"]["inputs"]["text"] = text
    return nodes
