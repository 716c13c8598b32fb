"""ComfyUI's jobs API (``/jobs``, ``/jobs/{id}``): the queue and the history as one list.

The editor's queue panel and job history read these instead of ``/queue`` and ``/history``.
A job is ``{id, status, priority, create_time, execution_start_time, execution_end_time,
execution_error, outputs_count, preview_output, workflow_id}``; statuses are ``pending``,
``in_progress``, ``completed`` and ``failed`` (an interrupted prompt is ``failed``, as ComfyUI).
Everything is derived from the queue store; ``create_time`` is the client's
``extra_data.create_time`` when it sent one, else the time the run started (for a prompt still
waiting, the first time this server listed it).

A page is read, not the whole history: the store sorts and counts finished jobs on indexed
columns, the queue's few jobs are merged in by the same key, and only the history rows on the
page are decoded. ``limit`` is capped at ``ServerConfig.history_page_limit`` (also its default).
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from .queue_store import JOB_STATUSES, QueuedPrompt, job_facts, job_time, workflow_id
from .routing import add_routes, json_error, query_int
from .state import state_of

routes = web.RouteTableDef()

STATUSES = ("pending", "in_progress", "completed", "failed")
PREVIEWABLE = frozenset({"images", "video", "audio"})
# prompt id -> when a waiting prompt was first listed (ms); bounded, oldest forgotten first.
FIRST_SEEN = web.AppKey("latentgraph_jobs_first_seen", dict)
_FIRST_SEEN_LIMIT = 10_000


def _pruned(job: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in job.items() if v is not None}


def _seen(app: web.Application, prompt_id: str) -> int:
    seen: dict[str, int] = app[FIRST_SEEN]
    if prompt_id not in seen:
        if len(seen) >= _FIRST_SEEN_LIMIT:
            del seen[next(iter(seen))]
        seen[prompt_id] = int(time.time() * 1000)
    return seen[prompt_id]


def queue_job(app: web.Application, item: QueuedPrompt, status: str) -> dict[str, Any]:
    create_time = item.extra_data.get("create_time")
    return _pruned({
        "id": item.prompt_id, "status": status, "priority": item.number,
        "create_time": create_time if job_time(create_time) is not None else _seen(app, item.prompt_id),
        "outputs_count": 0, "workflow_id": workflow_id(item.extra_data),
    })


def outputs_summary(outputs: dict[str, Any]) -> tuple[int, dict[str, Any] | None]:
    """How many output items, and the one to show (an ``output`` image first)."""
    count, preview, fallback = 0, None, None
    for node_id, node_outputs in outputs.items():
        if not isinstance(node_outputs, dict):
            continue
        for media_type, items in node_outputs.items():
            if media_type == "animated" or not isinstance(items, list):
                continue
            for item in items:
                if not isinstance(item, dict):
                    continue
                count += 1
                if preview is None and media_type in PREVIEWABLE and "filename" in item:
                    enriched = {**item, "nodeId": node_id, "mediaType": media_type}
                    if item.get("type") == "output":
                        preview = enriched
                    elif fallback is None:
                        fallback = enriched
    return count, preview or fallback


def history_job(prompt_id: str, entry: dict[str, Any], detail: bool = False) -> dict[str, Any]:
    number, _, prompt, extra, _ = entry["prompt"]
    status_info = entry.get("status") or {}
    facts = job_facts(extra, status_info)  # the same facts the store sorts and filters on
    outputs = entry.get("outputs") or {}
    count, preview = outputs_summary(outputs)
    job = _pruned({
        "id": prompt_id, "status": facts.status, "priority": number, "create_time": facts.create_time,
        "execution_start_time": facts.start, "execution_end_time": facts.end, "execution_error": facts.error,
        "outputs_count": count, "preview_output": preview, "workflow_id": facts.workflow_id,
    })
    if detail:
        job.update(outputs=outputs, execution_status=status_info,
                   workflow={"prompt": prompt, "extra_data": extra})
    return job


def queue_jobs(request: web.Request, statuses: set[str]) -> list[dict[str, Any]]:
    """The running and pending prompts of ``statuses``, running first, each in queue order."""
    store = state_of(request).store
    jobs: list[dict[str, Any]] = []
    if "in_progress" in statuses:
        jobs += [queue_job(request.app, item, "in_progress") for item in store.running()]
    if "pending" in statuses:
        jobs += [queue_job(request.app, item, "pending") for item in store.pending()]
    return jobs


def _sort_key(order: str) -> Any:
    if order == "execution_duration":
        def key(job: dict[str, Any]) -> float:
            start, end = job.get("execution_start_time"), job.get("execution_end_time")
            return end - start if start and end else 0
    else:
        def key(job: dict[str, Any]) -> float:
            return job.get("create_time", 0)
    return key


@routes.get("/jobs")
async def get_jobs(request: web.Request) -> web.Response:
    raw = request.query.get("status", "")
    # "cancelled" is the frontend's word for interrupted runs, which we record as failed.
    wanted = {s.strip() for s in raw.split(",") if s.strip()} if raw else set(STATUSES)
    if "cancelled" in wanted:
        wanted = (wanted - {"cancelled"}) | {"failed"}
    unknown = wanted - set(STATUSES)
    if unknown:
        return json_error(400, f"unknown status {sorted(unknown)}; use {', '.join(STATUSES)}")
    state = state_of(request)
    cap = max(state.config.history_page_limit, 1)
    limit = query_int(request, "limit", None)
    offset = query_int(request, "offset", 0) or 0
    if (limit is not None and limit < 0) or offset < 0:
        return json_error(400, "limit and offset must not be negative")
    limit = cap if limit is None else min(limit, cap)
    workflow = request.query.get("workflow_id") or None
    order = "execution_duration" if request.query.get("sort_by") == "execution_duration" else "create_time"
    descending = request.query.get("sort_order", "desc") != "asc"
    key = _sort_key(order)

    queued = [job for job in queue_jobs(request, wanted) if workflow is None or job.get("workflow_id") == workflow]
    queued.sort(key=key, reverse=descending)  # stable: queue order among equal keys
    # Without queue jobs the store's page is the page. With them, a page can start anywhere in
    # the history's first offset + limit entries, so those keys (from the index, no JSON) are
    # merged with the queue's; a queue job sorts before a finished one of the same key.
    history_total, keys = state.store.job_keys(
        wanted & set(JOB_STATUSES), workflow=workflow, order=order, descending=descending,
        limit=offset + limit if queued else limit, offset=0 if queued else offset)
    sign = -1 if descending else 1
    merged: list[tuple[float, int, int, Any]] = [(sign * key(job), 0, i, job) for i, job in enumerate(queued)]
    merged += [(sign * value, 1, i, seq) for i, (value, seq) in enumerate(keys)]
    merged.sort(key=lambda item: item[:3])
    chosen = merged[offset:offset + limit] if queued else merged[:limit]
    rows = state.store.history_rows(item[3] for item in chosen if item[1] == 1)
    page = [item[3] if item[1] == 0 else history_job(*rows[item[3]]) for item in chosen
            if item[1] == 0 or item[3] in rows]  # a row deleted meanwhile is left out
    total = history_total + len(queued)
    return web.json_response({"jobs": page, "pagination": {
        "offset": offset, "limit": limit, "total": total, "has_more": offset + len(page) < total}})


@routes.get("/jobs/{job_id}")
async def get_job(request: web.Request) -> web.Response:
    job_id = request.match_info["job_id"]
    store = state_of(request).store
    entry = store.history_entry(job_id)
    if entry is not None:
        return web.json_response(history_job(job_id, entry, detail=True))
    for status, items in (("in_progress", store.running()), ("pending", store.pending())):
        for item in items:
            if item.prompt_id == job_id:
                return web.json_response(queue_job(request.app, item, status))
    return json_error(404, "no such job", "not_found")


def register(app: web.Application) -> None:
    app[FIRST_SEEN] = {}
    add_routes(app, routes)
