"""The server's settings, gathered in one frozen object so every module reads the same values."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..executor.context import Folders
from ..executor.limits import Limits

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
    # Nodes in one posted prompt (API format, or a UI-format graph's nodes); a larger one is
    # refused with 413 before it is converted or validated. None: no limit.
    max_prompt_nodes: int | None = 50_000
    # Finished prompts kept in the history; the oldest are dropped beyond this (as ComfyUI).
    history_limit: int = 10_000
    # The most entries one /history or /jobs answer holds (without max_items / limit, the most
    # recent ones): a full history of large workflows would be tens of megabytes in one answer.
    history_page_limit: int = 1_000
    # False serves the API with the queue paused: prompts are accepted and kept, not run.
    run_queue: bool = True
    # How long shutdown waits for a running prompt to notice the interrupt before leaving it
    # in the database as "running" (so the next start runs it again).
    shutdown_grace_s: float = 10.0
    cache_bytes: int = 2 << 30  # the executor's in-memory result cache
    # Bounds on decoded images (uploads, LG_LoadImage) and on empty images and latents:
    # width x height x frames (or batch), and frames per file. See executor/limits.py.
    max_pixels: int = Limits.max_pixels
    max_frames: int = Limits.max_frames
    # Run prompts on a Ray cluster (HOST:PORT of its head, or "auto" to start one here) with
    # ray_workers workers (None: one per GPU of the cluster, else per CPU). See web/cluster_runner.py.
    ray_address: str | None = None
    ray_workers: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "data_dir", Path(self.data_dir))
        if self.models_dir is not None:
            object.__setattr__(self, "models_dir", Path(self.models_dir))
        object.__setattr__(self, "cors_origins", tuple(o.rstrip("/") for o in self.cors_origins))
        self.limits  # noqa: B018 -- a bad limit fails here, not at the first upload

    @property
    def folders(self) -> Folders:
        # Workflows arrive from clients: loaders reach the models folders (models_dir or
        # DATA_DIR/models, then the package's own) and nothing else.
        return Folders.under(self.data_dir, absolute_models=False, models=self.models_dir,
                             models_hint="start the server with --models-dir DIR to search another folder")

    @property
    def limits(self) -> Limits:
        return Limits(max_pixels=self.max_pixels, max_frames=self.max_frames)

    @property
    def database_path(self) -> Path:
        return self.data_dir / "latentgraph.sqlite3"

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * MiB)

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * MiB)
