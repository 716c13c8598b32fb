"""One local Ray cluster for the whole test session (``ray.init(num_cpus=2)``), started by the
first test that asks for it and shut down at the end; without Ray those tests skip."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def ray_session():
    ray = pytest.importorskip("ray", reason="the ray extra is not installed")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()
