"""The server's settings, gathered in one frozen object so every module reads the same values."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..executor.context import Folders

MiB = 1 << 20


@dataclass(frozen=True)
class ServerConfig:
    """What ``latentgraph serve`` was asked for; ``create_app`` takes one of these."""

    data_dir: Path = Path(".")
    models_dir: Path | None = None
    host: str = "127.0.0.1"
    port: int = 8188
    device: str = "auto"
    # Extra browser origins allowed to make state-changing requests (the server's own always is).
    cors_origins: tuple[str, ...] = ()
    auth_token: str | None = None
    max_upload_mb: float = 100.0
    # JSON bodies (a workflow with its editor layout); uploads have their own limit above.
    max_body_mb: float = 32.0
    # Finished prompts kept in the history; the oldest are dropped beyond this (as ComfyUI).
    history_limit: int = 10_000
    # False serves the API with the queue paused: prompts are accepted and kept, not run.
    run_queue: bool = True
    # How long shutdown waits for a running prompt to notice the interrupt before leaving it
    # in the database as "running" (so the next start runs it again).
    shutdown_grace_s: float = 10.0
    cache_bytes: int = 2 << 30  # the executor's in-memory result cache

    def __post_init__(self) -> None:
        object.__setattr__(self, "data_dir", Path(self.data_dir))
        if self.models_dir is not None:
            object.__setattr__(self, "models_dir", Path(self.models_dir))
        object.__setattr__(self, "cors_origins", tuple(o.rstrip("/") for o in self.cors_origins))

    @property
    def folders(self) -> Folders:
        # Workflows arrive from clients: loaders reach the models folder and nothing else.
        folders = Folders.under(self.data_dir, absolute_models=False)
        if self.models_dir is not None:
            folders = Folders(folders.input, folders.output, folders.temp, self.models_dir, absolute_models=False)
        return folders

    @property
    def database_path(self) -> Path:
        return self.data_dir / "latentgraph.sqlite3"

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * MiB)

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * MiB)
