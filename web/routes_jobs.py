"""ComfyUI's jobs API (``/jobs``, ``/jobs/{id}``): the queue and the history as one list.

The editor's queue panel and job history read these instead of ``/queue`` and ``/history``.
A job is ``{id, status, priority, create_time, execution_start_time, execution_end_time,
execution_error, outputs_count, preview_output, workflow_id}``; statuses are ``pending``,
``in_progress``, ``completed`` and ``failed`` (an interrupted prompt is ``failed``, as ComfyUI).
Everything is derived from the queue store; ``create_time`` is the client's
``extra_data.create_time`` when it sent one, else the time the run started (for a prompt still
waiting, the first time this server listed it).
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from .queue_store import QueuedPrompt
from .routing import add_routes, json_error, query_int
from .state import state_of

routes = web.RouteTableDef()

STATUSES = ("pending", "in_progress", "completed", "failed")
PREVIEWABLE = frozenset({"images", "video", "audio"})
# prompt id -> when a waiting prompt was first listed (ms); bounded, oldest forgotten first.
FIRST_SEEN = web.AppKey("latentgraph_jobs_first_seen", dict)
_FIRST_SEEN_LIMIT = 10_000


def _workflow_id(extra: dict[str, Any]) -> str | None:
    pnginfo = extra.get("extra_pnginfo")
    workflow = pnginfo.get("workflow") if isinstance(pnginfo, dict) else None
    value = workflow.get("id") if isinstance(workflow, dict) else None
    return str(value) if value is not None else None


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
        "create_time": create_time if isinstance(create_time, int | float) else _seen(app, item.prompt_id),
        "outputs_count": 0, "workflow_id": _workflow_id(item.extra_data),
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
    status = "failed" if status_info.get("status_str") == "error" else "completed"
    start = end = error = None
    for message in status_info.get("messages") or []:
        if not (isinstance(message, list | tuple) and len(message) >= 2 and isinstance(message[1], dict)):
            continue
        name, data = message[0], message[1]
        if name == "execution_start":
            start = data.get("timestamp")
        elif name in ("execution_success", "execution_error", "execution_interrupted"):
            end = data.get("timestamp")
            if name == "execution_error":
                error = data
    outputs = entry.get("outputs") or {}
    count, preview = outputs_summary(outputs)
    create_time = extra.get("create_time")
    if not isinstance(create_time, int | float):
        create_time = start or end or 0
    job = _pruned({
        "id": prompt_id, "status": status, "priority": number, "create_time": create_time,
        "execution_start_time": start, "execution_end_time": end, "execution_error": error,
        "outputs_count": count, "preview_output": preview, "workflow_id": _workflow_id(extra),
    })
    if detail:
        job.update(outputs=outputs, execution_status=status_info,
                   workflow={"prompt": prompt, "extra_data": extra})
    return job


def all_jobs(request: web.Request, statuses: set[str]) -> list[dict[str, Any]]:
    store = state_of(request).store
    jobs: list[dict[str, Any]] = []
    if "in_progress" in statuses:
        jobs += [queue_job(request.app, item, "in_progress") for item in store.running()]
    if "pending" in statuses:
        jobs += [queue_job(request.app, item, "pending") for item in store.pending()]
    if statuses & {"completed", "failed"}:
        for prompt_id, entry in store.history().items():
            job = history_job(prompt_id, entry)
            if job["status"] in statuses:
                jobs.append(job)
    return jobs


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
    limit = query_int(request, "limit", None)
    offset = query_int(request, "offset", 0) or 0
    if (limit is not None and limit < 0) or offset < 0:
        return json_error(400, "limit and offset must not be negative")
    jobs = all_jobs(request, wanted)
    workflow_id = request.query.get("workflow_id")
    if workflow_id:
        jobs = [job for job in jobs if job.get("workflow_id") == workflow_id]
    if request.query.get("sort_by") == "execution_duration":
        def key(job: dict[str, Any]) -> float:
            start, end = job.get("execution_start_time"), job.get("execution_end_time")
            return end - start if start and end else 0
    else:
        def key(job: dict[str, Any]) -> float:
            return job.get("create_time", 0)
    jobs.sort(key=key, reverse=request.query.get("sort_order", "desc") != "asc")
    total = len(jobs)
    page = jobs[offset:] if limit is None else jobs[offset:offset + limit]
    return web.json_response({"jobs": page, "pagination": {
        "offset": offset, "limit": limit if limit is not None else total, "total": total,
        "has_more": offset + len(page) < total}})


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
