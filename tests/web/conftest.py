"""Fixtures for the server's tests: an app factory on a temporary data directory."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient
from latentgraph.web import ServerConfig, create_app
from web_helpers import reset_nodes, web_registry


@pytest.fixture(autouse=True)
def _fresh_test_nodes() -> None:
    reset_nodes()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def make_config(data_dir: Path) -> Callable[..., ServerConfig]:
    def make(**overrides: Any) -> ServerConfig:
        settings: dict[str, Any] = {"data_dir": data_dir, "device": "cpu", "shutdown_grace_s": 5.0}
        settings.update(overrides)
        return ServerConfig(**settings)

    return make


@pytest_asyncio.fixture
async def make_client(aiohttp_client: Any, make_config: Callable[..., ServerConfig]
                      ) -> Callable[..., Awaitable[TestClient]]:
    async def make(**overrides: Any) -> TestClient:
        return await aiohttp_client(create_app(make_config(**overrides), registry=web_registry()))

    return make


@pytest_asyncio.fixture
async def client(make_client: Callable[..., Awaitable[TestClient]]) -> TestClient:
    return await make_client()


@pytest_asyncio.fixture
async def paused_client(make_client: Callable[..., Awaitable[TestClient]]) -> TestClient:
    """A server that accepts prompts but does not run them (to look at the queue)."""
    return await make_client(run_queue=False)
