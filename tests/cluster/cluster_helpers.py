"""What the cluster tests share besides fixtures: the shipped graph at a few steps, the bound
on every Ray wait."""

from __future__ import annotations

import json
from pathlib import Path

GRAPHS = Path(__file__).resolve().parents[2] / "graphs"
#: Every Ray wait in these tests is bounded by this (a stuck worker fails the test, not CI).
RAY_TIMEOUT_S = 120


def shapes_prompt(seed: int = 0, text: str = "a red circle", steps: int = 3) -> dict:
    """The shipped tiny SD graph at a few steps."""
    nodes = json.loads((GRAPHS / "shapes_sd.json").read_text())
    nodes["5"]["inputs"].update(seed=seed, steps=steps)
    nodes["2"]["inputs"]["text"] = text
    return nodes
