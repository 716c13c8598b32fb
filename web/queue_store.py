"""The prompt queue and the history, kept in SQLite so a killed server loses nothing.

Every change is one committed transaction: a prompt is either pending, running, or in the
history, never in two places and never in none. On open, a prompt left "running" by a server
that died is put back to pending, so it runs again. WAL with ``synchronous=NORMAL`` survives
the process being killed (committed pages are in the OS's hands); only a power cut can undo the
last commits.

Only plain JSON goes in (no pickle): prompts, extra data, outputs and status are JSON text.
Beside each history entry the store keeps the few facts the jobs API sorts and filters on (job
status, create time, duration, workflow id) as plain columns with covering indexes, so a page of
jobs reads a page of rows, not the whole history. A lock file stops a second server from sharing
the data directory and stealing its queue.

Schema changes are numbered migrations (``PRAGMA user_version``), applied in order inside the
opening transaction, so a database file from an older server is brought up to date in place.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory lock, one server per folder by hand
    fcntl = None  # type: ignore[assignment]

SCHEMA_VERSION = 2

# Version 1: the tables as first released. Later versions are the migrations below.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS queue (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    prompt_id TEXT NOT NULL UNIQUE,
    number REAL NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'running')),
    prompt TEXT NOT NULL,
    extra_data TEXT NOT NULL,
    outputs_to_execute TEXT NOT NULL,
    queued_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS queue_order ON queue (state, number, seq);
CREATE TABLE IF NOT EXISTS history (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    prompt_id TEXT NOT NULL UNIQUE,
    number REAL NOT NULL,
    prompt TEXT NOT NULL,
    extra_data TEXT NOT NULL,
    outputs_to_execute TEXT NOT NULL,
    outputs TEXT NOT NULL,
    status TEXT NOT NULL,
    finished_at REAL NOT NULL
);
"""


JOB_STATUSES = ("completed", "failed")  # what a history entry is as a job
# Sort orders of the jobs API -> the history column (each led by a covering index).
JOB_ORDERS = {"create_time": "create_time", "execution_duration": "duration"}


def _add_job_columns(db: sqlite3.Connection) -> None:
    """Version 2: the jobs API's sort and filter keys as columns, filled in for existing rows."""
    have = {row[1] for row in db.execute("PRAGMA table_info(history)")}
    for column, declaration in (("job_status", "TEXT NOT NULL DEFAULT 'completed'"),
                                ("create_time", "REAL NOT NULL DEFAULT 0"),
                                ("duration", "REAL NOT NULL DEFAULT 0"),
                                ("workflow_id", "TEXT")):
        if column not in have:
            db.execute(f"ALTER TABLE history ADD COLUMN {column} {declaration}")
    rows = db.execute("SELECT seq, extra_data, status FROM history").fetchall()
    db.executemany(
        "UPDATE history SET job_status=?, create_time=?, duration=?, workflow_id=? WHERE seq=?",
        [(*job_facts(_loads_object(extra), _loads_object(status)).columns(), seq) for seq, extra, status in rows])
    # seq in the index after the sort key: ties come out in insertion order, and with the filter
    # columns beside them a page (and a count) never touches the rows' JSON.
    for column in JOB_ORDERS.values():
        db.execute(f"CREATE INDEX IF NOT EXISTS history_by_{column}"
                   f" ON history ({column}, seq, job_status, workflow_id)")


# user_version -> the step that brings the previous version to it.
_MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {2: _add_job_columns}


def _loads_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def job_time(value: Any) -> float | None:
    """A client's or an event's timestamp as a finite number, or None (bools, NaN, text...)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def workflow_id(extra_data: dict[str, Any]) -> str | None:
    """The editor's workflow id, from ``extra_data.extra_pnginfo.workflow.id``."""
    pnginfo = extra_data.get("extra_pnginfo")
    workflow = pnginfo.get("workflow") if isinstance(pnginfo, dict) else None
    value = workflow.get("id") if isinstance(workflow, dict) else None
    return str(value) if value is not None else None


@dataclass(frozen=True)
class JobFacts:
    """A finished prompt as the jobs API sees it. ``create_time`` is the client's
    ``extra_data.create_time`` when it sent one, else the time the run started (or ended)."""

    status: str
    create_time: int | float
    start: Any
    end: Any
    error: dict[str, Any] | None
    workflow_id: str | None

    @property
    def duration(self) -> float:
        start, end = job_time(self.start), job_time(self.end)
        return end - start if start and end else 0.0

    def columns(self) -> tuple[str, float, float, str | None]:
        return self.status, float(self.create_time), self.duration, self.workflow_id


def job_facts(extra_data: dict[str, Any], status: dict[str, Any]) -> JobFacts:
    start = end = error = None
    for message in status.get("messages") or []:
        if not (isinstance(message, list | tuple) and len(message) >= 2 and isinstance(message[1], dict)):
            continue
        name, data = message[0], message[1]
        if name == "execution_start":
            start = data.get("timestamp")
        elif name in ("execution_success", "execution_error", "execution_interrupted"):
            end = data.get("timestamp")
            if name == "execution_error":
                error = data
    create_time: Any = extra_data.get("create_time")
    if job_time(create_time) is None:
        create_time = next((t for t in (start, end) if job_time(t)), 0)
    return JobFacts("failed" if status.get("status_str") == "error" else "completed", create_time,
                    start, end, error, workflow_id(extra_data))


class DataDirInUse(RuntimeError):
    """Another server already holds this data directory."""


def _number(value: float) -> int | float:
    """ComfyUI reports queue numbers as integers unless a client sent a fractional one."""
    return int(value) if float(value).is_integer() else value


@dataclass(frozen=True)
class QueuedPrompt:
    """One queue item; ``as_list`` is ComfyUI's ``[number, prompt_id, prompt, extra_data, outputs]``."""

    number: float
    prompt_id: str
    prompt: dict[str, Any]
    extra_data: dict[str, Any]
    outputs_to_execute: list[str]

    @property
    def client_id(self) -> str | None:
        client = self.extra_data.get("client_id")
        return client if isinstance(client, str) else None

    def as_list(self) -> list[Any]:
        return [_number(self.number), self.prompt_id, self.prompt, self.extra_data, self.outputs_to_execute]


@dataclass(frozen=True)
class RunOutcome:
    """How a prompt ended: what the history records besides the prompt itself."""

    outputs: dict[str, Any]
    status_str: str  # "success" or "error", as ComfyUI
    completed: bool
    messages: list[list[Any]]

    def status(self) -> dict[str, Any]:
        return {"status_str": self.status_str, "completed": self.completed, "messages": self.messages}


class QueueStore:
    """SQLite-backed queue and history. Methods are short transactions; safe from any thread."""

    def __init__(self, path: str | os.PathLike[str], history_limit: int = 10_000) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.history_limit = history_limit
        self._lock_file = self._take_lock(self.path.with_suffix(".lock"))
        self._mutex = threading.Lock()
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        with self._transaction() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise RuntimeError(f"{self.path} was written by a newer latentgraph (schema {version})")
            for statement in filter(str.strip, _SCHEMA.split(";")):
                db.execute(statement)  # not executescript: it would commit our transaction
            for step in range(max(version, 1) + 1, SCHEMA_VERSION + 1):
                _MIGRATIONS[step](db)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            # Whatever was running when the last server stopped never finished: run it again.
            self.requeued_on_open = db.execute(
                "UPDATE queue SET state='pending' WHERE state='running'").rowcount
            top = db.execute(
                "SELECT MAX(ABS(number)) FROM (SELECT number FROM queue UNION ALL SELECT number FROM history)"
            ).fetchone()[0]
        self._next_number = int(top or 0) + 1

    @staticmethod
    def _take_lock(path: Path) -> Any:
        handle = open(path, "a+")  # noqa: SIM115 - held open for the store's lifetime
        if fcntl is not None:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.close()
                raise DataDirInUse(f"another latentgraph server is using {path.parent}") from None
        return handle

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._mutex:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def close(self) -> None:
        with self._mutex:
            self._db.close()
        self._lock_file.close()

    # --- queue ---------------------------------------------------------------------------------

    def take_number(self, front: bool = False) -> int:
        """The next queue number; ``front`` negates it so the prompt sorts before all others."""
        with self._mutex:
            number = self._next_number
            self._next_number += 1
        return -number if front else number

    def enqueue(self, item: QueuedPrompt) -> None:
        """Add a pending prompt. Raises KeyError if its id is already queued or in the history."""
        with self._transaction() as db:
            if self._known(db, item.prompt_id):
                raise KeyError(item.prompt_id)
            db.execute(
                "INSERT INTO queue (prompt_id, number, state, prompt, extra_data, outputs_to_execute, queued_at)"
                " VALUES (?, ?, 'pending', ?, ?, ?, ?)",
                (item.prompt_id, item.number, _dump(item.prompt), _dump(item.extra_data),
                 _dump(item.outputs_to_execute), time.time()))

    def contains(self, prompt_id: str) -> bool:
        with self._mutex:
            return self._known(self._db, prompt_id)

    @staticmethod
    def _known(db: sqlite3.Connection, prompt_id: str) -> bool:
        return db.execute(
            "SELECT 1 FROM queue WHERE prompt_id=? UNION ALL SELECT 1 FROM history WHERE prompt_id=?",
            (prompt_id, prompt_id)).fetchone() is not None

    def claim_next(self) -> QueuedPrompt | None:
        """Mark the first pending prompt (lowest number, then oldest) running and return it."""
        with self._transaction() as db:
            row = db.execute(
                "SELECT seq, number, prompt_id, prompt, extra_data, outputs_to_execute FROM queue"
                " WHERE state='pending' ORDER BY number, seq LIMIT 1").fetchone()
            if row is None:
                return None
            db.execute("UPDATE queue SET state='running' WHERE seq=?", (row[0],))
        return _queued(row[1:])

    def requeue(self, prompt_id: str) -> None:
        """Put a running prompt back to pending (the server is stopping before it finished)."""
        with self._transaction() as db:
            db.execute("UPDATE queue SET state='pending' WHERE prompt_id=?", (prompt_id,))

    def _items(self, state: str) -> list[QueuedPrompt]:
        with self._mutex:
            rows = self._db.execute(
                "SELECT number, prompt_id, prompt, extra_data, outputs_to_execute FROM queue"
                " WHERE state=? ORDER BY number, seq", (state,)).fetchall()
        return [_queued(r) for r in rows]

    def running(self) -> list[QueuedPrompt]:
        return self._items("running")

    def pending(self) -> list[QueuedPrompt]:
        return self._items("pending")

    def remaining(self) -> int:
        """Pending plus running, ComfyUI's ``queue_remaining``."""
        with self._mutex:
            return self._db.execute("SELECT COUNT(*) FROM queue").fetchone()[0]

    def delete_pending(self, prompt_ids: Iterable[str]) -> int:
        ids = [str(i) for i in prompt_ids]
        with self._transaction() as db:
            return db.executemany(
                "DELETE FROM queue WHERE state='pending' AND prompt_id=?", [(i,) for i in ids]).rowcount

    def clear_pending(self) -> int:
        with self._transaction() as db:
            return db.execute("DELETE FROM queue WHERE state='pending'").rowcount

    # --- history -------------------------------------------------------------------------------

    def finish(self, prompt_id: str, outcome: RunOutcome) -> None:
        """Move a prompt from the queue to the history, in one transaction."""
        with self._transaction() as db:
            row = db.execute(
                "SELECT number, prompt, extra_data, outputs_to_execute FROM queue WHERE prompt_id=?",
                (prompt_id,)).fetchone()
            if row is None:
                return  # deleted meanwhile; nothing to record it against
            db.execute("DELETE FROM queue WHERE prompt_id=?", (prompt_id,))
            status = outcome.status()
            facts = job_facts(_loads_object(row[2]), status)
            db.execute(
                "INSERT OR REPLACE INTO history (prompt_id, number, prompt, extra_data, outputs_to_execute,"
                " outputs, status, finished_at, job_status, create_time, duration, workflow_id)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (prompt_id, *row, _dump(outcome.outputs), _dump(status), time.time(), *facts.columns()))
            db.execute(
                "DELETE FROM history WHERE seq <= (SELECT seq FROM history ORDER BY seq DESC LIMIT 1 OFFSET ?)",
                (self.history_limit,))

    def history(self, max_items: int | None = None, offset: int = -1) -> dict[str, Any]:
        """Oldest first, as ComfyUI: without an offset, ``max_items`` gives the most recent ones."""
        with self._mutex:
            total = self._db.execute("SELECT COUNT(*) FROM history").fetchone()[0]
            if offset < 0:
                offset = max(total - max_items, 0) if max_items is not None else 0
            limit = -1 if max_items is None else max(max_items, 0)
            rows = self._db.execute(
                "SELECT number, prompt_id, prompt, extra_data, outputs_to_execute, outputs, status"
                " FROM history ORDER BY seq LIMIT ? OFFSET ?", (limit, offset)).fetchall()
        return {row[1]: _history_entry(row) for row in rows}

    def history_entry(self, prompt_id: str) -> dict[str, Any] | None:
        with self._mutex:
            row = self._db.execute(
                "SELECT number, prompt_id, prompt, extra_data, outputs_to_execute, outputs, status"
                " FROM history WHERE prompt_id=?", (prompt_id,)).fetchone()
        return _history_entry(row) if row else None

    def job_keys(self, statuses: Collection[str], *, workflow: str | None = None, order: str = "create_time",
                 descending: bool = True, limit: int = 100, offset: int = 0) -> tuple[int, list[tuple[float, int]]]:
        """How many history entries are jobs of ``statuses`` (and ``workflow``), and the
        ``(sort key, seq)`` of ``limit`` of them from ``offset`` in ``order`` (ties in insertion
        order, the same direction). Read from the covering index alone: no JSON is decoded."""
        column = JOB_ORDERS[order]
        direction = "DESC" if descending else "ASC"
        wanted = sorted(set(statuses) & set(JOB_STATUSES))
        if not wanted:
            return 0, []
        where: list[str] = []
        params: list[Any] = []
        if len(wanted) < len(JOB_STATUSES):
            where.append(f"job_status IN ({', '.join('?' * len(wanted))})")
            params += wanted
        if workflow is not None:
            where.append("workflow_id = ?")
            params.append(workflow)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        with self._mutex:
            total = self._db.execute(f"SELECT COUNT(*) FROM history{clause}", params).fetchone()[0]
            rows = self._db.execute(
                f"SELECT {column}, seq FROM history{clause} ORDER BY {column} {direction}, seq {direction}"
                " LIMIT ? OFFSET ?", (*params, max(limit, 0), max(offset, 0))).fetchall()
        return total, [(key, seq) for key, seq in rows]

    def history_rows(self, seqs: Iterable[int]) -> dict[int, tuple[str, dict[str, Any]]]:
        """``seq -> (prompt_id, entry)`` for the given rows (those still there)."""
        wanted = [int(s) for s in seqs]
        if not wanted:
            return {}
        rows: list[tuple[Any, ...]] = []
        with self._mutex:
            for start in range(0, len(wanted), 500):  # SQLite's limit on bound parameters
                chunk = wanted[start:start + 500]
                rows += self._db.execute(
                    "SELECT seq, number, prompt_id, prompt, extra_data, outputs_to_execute, outputs, status"
                    f" FROM history WHERE seq IN ({', '.join('?' * len(chunk))})", chunk).fetchall()
        return {row[0]: (row[2], _history_entry(row[1:])) for row in rows}

    def delete_history(self, prompt_ids: Iterable[str]) -> None:
        with self._transaction() as db:
            db.executemany("DELETE FROM history WHERE prompt_id=?", [(str(i),) for i in prompt_ids])

    def clear_history(self) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM history")


def _dump(value: Any) -> str:
    # default=str: a stray non-JSON value in UI output must not lose the whole history entry.
    return json.dumps(value, separators=(",", ":"), default=str)


def _queued(row: tuple[Any, ...]) -> QueuedPrompt:
    number, prompt_id, prompt, extra, outputs = row
    return QueuedPrompt(number, prompt_id, json.loads(prompt), json.loads(extra), json.loads(outputs))


def _history_entry(row: tuple[Any, ...]) -> dict[str, Any]:
    item = _queued(row[:5])
    outputs = json.loads(row[5])
    return {
        "prompt": item.as_list(),
        "outputs": outputs,
        "status": json.loads(row[6]),
        "meta": {node_id: {"node_id": node_id, "display_node": node_id.split(".", 1)[0],
                           "parent_node": None, "real_node_id": node_id} for node_id in outputs},
    }
