"""One local Ray cluster (``ray.init(num_cpus=2)``) for the Ray tests of this folder, started by
the first test that asks for it and shut down after the last test here, so no Ray process
outlives these tests into the rest of the suite; without Ray those tests skip."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def local_ray():
    ray = pytest.importorskip("ray", reason="the ray extra is not installed")
    # A small object store (the images are kilobytes): a CI container's /dev/shm is often small.
    ray.init(num_cpus=2, object_store_memory=128 << 20, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item, nextitem):
    if nextitem is None or Path(nextitem.path).resolve().parent != HERE:
        ray = sys.modules.get("ray")
        if ray is not None and ray.is_initialized():
            ray.shutdown()
