"""Where the tests find the read-only golden data that the reference implementations made.

By default that is ``shared/fixtures/`` beside the repository (``../shared/fixtures`` from the
repository root, the parent of ``tests/``), as a development checkout and CI lay it out. Elsewhere
point at it with an environment variable:

- ``LATENTGRAPH_FIXTURES=DIR``: ``DIR`` holds the fixture folders (``DIR/var/configs.json``, ...);
- ``LATENTGRAPH_SHARED=DIR``: ``DIR`` is a ``shared/`` folder holding ``fixtures/``.

Tests that need a fixture folder skip, naming the folder they looked in, when it is absent.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HOW_TO_POINT = "set LATENTGRAPH_FIXTURES to the folder that holds var/ (see README, Tests)"


def fixtures_root(environ: Mapping[str, str] = os.environ) -> Path:
    """The folder holding the fixture folders, by the rules above."""
    if environ.get("LATENTGRAPH_FIXTURES"):
        return Path(environ["LATENTGRAPH_FIXTURES"]).expanduser()
    if environ.get("LATENTGRAPH_SHARED"):
        return Path(environ["LATENTGRAPH_SHARED"]).expanduser() / "fixtures"
    return REPO.parent / "shared" / "fixtures"


def var_fixtures(environ: Mapping[str, str] = os.environ) -> Path:
    """The VAR golden data (made by the official VAR code; its README says how)."""
    return fixtures_root(environ) / "var"
