"""The ``latentgraph`` command: run, batch, validate, convert, list nodes, serve, submit.

Exit codes: 0 success, 1 a node failed at run time (named), 2 the workflow is invalid (every
problem listed) or is not a workflow at all.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_RUNTIME, EXIT_INVALID = 0, 1, 2


def _parse_value(text: str, input_type: str | None) -> Any:
    """``--set`` values are JSON when they parse as JSON (numbers, true, lists), else text; a
    text input (STRING, or a choice of words) takes the text as typed ("3,7" or "16"), or the
    string a JSON string literal spells ('"a b"')."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return text
    if input_type in ("STRING", "COMBO") and not isinstance(value, str):
        return text
    return value


def _input_type(call: dict[str, Any], name: str) -> str | None:
    from .nodes import default_registry

    cls = default_registry().get(call.get("class_type", ""))
    spec = cls.spec.inputs.get(name) if cls is not None else None
    if spec is None or (spec.type == "COMBO" and not all(isinstance(c, str) for c in spec.socket.choices or ())):
        return None
    return spec.type


def apply_overrides(nodes: dict[str, dict[str, Any]], overrides: Sequence[str]) -> list[str]:
    """Apply ``NODE_ID.INPUT=VALUE`` overrides in place; returns a message per bad override."""
    problems = []
    for item in overrides:
        target, sep, value = item.partition("=")
        node_id, dot, name = target.partition(".")
        if not sep or not dot or not name:
            problems.append(f"--set {item!r}: expected NODE_ID.INPUT=VALUE")
        elif node_id not in nodes or not isinstance(nodes[node_id], dict):
            problems.append(f"--set {item!r}: there is no node '{node_id}' in the workflow")
        else:
            nodes[node_id].setdefault("inputs", {})[name] = _parse_value(value, _input_type(nodes[node_id], name))
    return problems


def _print_issues(issues: list[Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps({"ok": False, "errors": [i.to_dict() for i in issues]}, indent=2))
        return
    print(f"The workflow has {len(issues)} problem(s):", file=sys.stderr)
    for issue in issues:
        print(f"  - {issue}", file=sys.stderr)
        if issue.expected is not None:
            print(f"      expected: {json.dumps(issue.expected)}; received: {json.dumps(issue.received)}",
                  file=sys.stderr)


def _format_error(message: str, as_json: bool, **extra: Any) -> None:
    if as_json:
        print(json.dumps({"ok": False, "error": message, **extra}, indent=2))
    else:
        print(f"error: {message}", file=sys.stderr)


class _Progress:
    """tqdm bars on a terminal: one for the graph, one for the node reporting progress.

    The graph bar counts what the run's summary counts: every node executed or taken from the
    cache, the step nodes a sampler expands into at run time included. An expansion's size is
    known only as it runs, so the total starts at the workflow's size and grows by each expanded
    node as it arrives; a finished run sets it to the count, so the bar ends at N/N, the N of
    "executed X node(s), Y from cache".
    """

    def __init__(self, total: int, enabled: bool, file: Any = None) -> None:
        from tqdm import tqdm

        self.enabled = enabled
        self.done = 0
        self.total = total
        self.graph = tqdm(total=total, desc="nodes", unit="node", disable=not enabled, leave=False, file=file)
        self.step: Any = None
        self.tqdm = tqdm
        self.file = file

    def _count(self, node_ids: Sequence[str]) -> None:
        self.done += len(node_ids)
        self.total = max(self.total + sum("." in n for n in node_ids), self.done)
        self.graph.total = self.total
        self.graph.update(len(node_ids))

    def __call__(self, event: Any) -> None:
        if event.type == "executing" and event.data.get("node") is not None:
            self._count([event.data["node"]])
            self.graph.set_postfix_str(event.data["node"])
        elif event.type == "execution_cached":
            self._count(list(event.data["nodes"]))
        elif event.type == "execution_success":
            self.total = self.graph.total = self.done
            self.graph.refresh()
        elif event.type == "progress" and self.enabled:
            if self.step is None or self.step.total != event.data["max"]:
                if self.step is not None:
                    self.step.close()
                self.step = self.tqdm(total=event.data["max"], desc=f"node {event.data['node']}", leave=False,
                                      file=self.file)
            self.step.n = event.data["value"]
            self.step.refresh()

    def close(self) -> None:
        if self.step is not None:
            self.step.close()
        self.graph.close()


def _folders(args: argparse.Namespace) -> Any:
    """The folders of ``run`` and ``batch``: DATA_DIR's, or those the flags name."""
    from .executor import Folders
    from .executor.context import PACKAGE_MODELS

    data_dir = Path(args.data_dir)
    return Folders(
        input=Path(args.input_dir) if args.input_dir else data_dir / "input",
        output=Path(args.output_dir) if args.output_dir else data_dir / "output",
        temp=data_dir / "temp",
        models=Path(args.models_dir) if args.models_dir else data_dir / "models",
        more_models=(PACKAGE_MODELS,),  # the shipped weights, found from any working directory
    )


def cmd_run(args: argparse.Namespace) -> int:
    from .api import Executor, load_workflow
    from .executor import Interrupted, NodeFailed, WorkflowFormatError, WorkflowInvalid

    try:
        workflow = load_workflow(args.workflow)
    except WorkflowFormatError as err:
        _format_error(str(err), args.json)
        return EXIT_INVALID
    problems = apply_overrides(workflow.nodes, args.set or [])
    if problems:
        for p in problems:
            _format_error(p, args.json)
        return EXIT_INVALID
    if args.set:
        workflow.ui = None  # the editor layout no longer matches the overridden graph
    folders = _folders(args)
    try:
        executor = Executor(device=args.device, cache_dir=args.cache_dir, folders=folders,
                            limits=_limits(args))
    except ValueError as err:
        _format_error(str(err), args.json)
        return EXIT_RUNTIME
    issues = executor.validate(workflow, args.target)
    if issues:
        _print_issues(issues, args.json)
        return EXIT_INVALID
    progress = _Progress(len(workflow.nodes), enabled=not args.json and sys.stderr.isatty())
    try:
        result = executor.run(workflow, args.target, on_event=progress)
    except WorkflowInvalid as err:
        _print_issues(err.issues, args.json)
        return EXIT_INVALID
    except NodeFailed as err:
        _format_error(str(err), args.json, node_id=err.node_id, class_type=err.class_type,
                      input=err.input, exception_type=type(err.error).__name__)
        return EXIT_RUNTIME
    except (Interrupted, KeyboardInterrupt):
        _format_error("interrupted", args.json)
        return EXIT_RUNTIME
    finally:
        progress.close()
    files = [
        str(folders.output / img["subfolder"] / img["filename"]) if img.get("type") == "output"
        else str(folders.temp / img["subfolder"] / img["filename"])
        for ui in result.ui.values() for img in ui.get("images", [])
    ]
    if args.json:
        print(json.dumps({
            "ok": True, "prompt_id": result.prompt_id, "executed": result.executed,
            "cached": result.cached, "files": files, "ui": result.ui,
            "outputs": {n: [_summary(v) for v in outs] for n, outs in result.outputs.items()},
        }, indent=2))
    else:
        print(f"executed {len(result.executed)} node(s), {len(result.cached)} from cache")
        for node_id in args.target or []:
            print(f"  node {node_id}: " + ", ".join(_summary(v) for v in result.outputs[node_id]))
        for f in files:
            print(f"wrote {f}")
    return EXIT_OK


def _summary(value: Any) -> Any:
    """A JSON-friendly description of an output value."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    shape = getattr(value, "shape", None)
    if shape is not None:
        return f"{type(value).__name__}{tuple(shape)}"
    if isinstance(value, dict) and "samples" in value:
        return f"LATENT{tuple(value['samples'].shape)}"
    return type(value).__name__


def cmd_validate(args: argparse.Namespace) -> int:
    from .api import Executor, load_workflow
    from .executor import WorkflowFormatError

    try:
        workflow = load_workflow(args.workflow)
        issues = Executor(device="cpu").validate(workflow)
    except WorkflowFormatError as err:
        _format_error(str(err), args.json)
        return EXIT_INVALID
    if issues:
        _print_issues(issues, args.json)
        return EXIT_INVALID
    print(json.dumps({"ok": True}) if args.json else f"{args.workflow}: valid ({len(workflow.nodes)} nodes)")
    return EXIT_OK


def cmd_convert(args: argparse.Namespace) -> int:
    from .api import load_workflow
    from .executor import WorkflowFormatError

    try:
        workflow = load_workflow(args.workflow)
    except WorkflowFormatError as err:
        _format_error(str(err), False)
        return EXIT_INVALID
    text = json.dumps(workflow.nodes, indent=2)
    if args.output:
        Path(args.output).write_text(text + "\n")
    else:
        print(text)
    return EXIT_OK


def _range(low: Any, high: Any) -> str | None:
    if low is not None and high is not None:
        return f"{low}..{high}"
    if low is not None:
        return f">= {low}"
    return f"<= {high}" if high is not None else None


def describe_node(spec: Any) -> list[str]:
    """The lines ``latentgraph nodes NAME`` prints: what the node does and each of its sockets."""
    import textwrap

    lines = [f"{spec.class_type} ({spec.display_name}), version {spec.version}", f"category: {spec.category}"]
    if spec.description:
        lines += textwrap.wrap(spec.description, 96)
    width = max((len(n) for n in [*spec.inputs, *(o.name for o in spec.outputs)]), default=0)
    lines.append("\ninputs:" if spec.inputs else "\ninputs: none")
    for name, inp in spec.inputs.items():
        kind = " | ".join(map(str, inp.socket.choices or ())) if inp.type == "COMBO" else inp.type
        facts = [kind]
        if not inp.required:
            facts.append("optional")
        if inp.has_default and inp.default is not None:
            facts.append(f"default {json.dumps(inp.default)}")
        values, length = _range(inp.ge, inp.le), _range(inp.min_length, inp.max_length)
        facts += [values] if values else []
        facts += [f"length {length}"] if length else []
        lines.append(f"  {name:<{width}}  {', '.join(facts)}")
        if inp.tooltip:
            lines += textwrap.wrap(inp.tooltip, 96, initial_indent=" " * (width + 6),
                                   subsequent_indent=" " * (width + 6))
    lines.append("outputs:" if spec.outputs else "outputs: none")
    for out in spec.outputs:
        lines.append(f"  {out.name:<{width}}  {out.type}" + (f": {out.tooltip}" if out.tooltip else ""))
    return lines


def cmd_nodes(args: argparse.Namespace) -> int:
    import difflib

    from .executor.schema import object_info
    from .nodes import default_registry

    registry = default_registry()
    if args.name is not None:
        cls = registry.get(args.name)
        if cls is None:
            names = sorted(n.class_type for n in registry)
            by_lower = {n.lower(): n for n in names}
            close = [by_lower[m] for m in difflib.get_close_matches(args.name.lower(), list(by_lower), n=5, cutoff=0.6)]
            hint = f"; did you mean {', '.join(close)}?" if close else "; `latentgraph nodes` lists them"
            _format_error(f"there is no node '{args.name}'{hint}", args.json, close_matches=close)
            return EXIT_INVALID
        if args.json:
            print(json.dumps({cls.class_type: object_info(cls.spec)}, indent=2))
        else:
            print("\n".join(describe_node(cls.spec)))
        return EXIT_OK
    specs = sorted(registry.specs(), key=lambda s: (s.category, s.class_type))
    if args.json:
        print(json.dumps({s.class_type: object_info(s) for s in specs}, indent=2))
        return EXIT_OK
    for spec in specs:
        ins = ", ".join(f"{n}: {s.type}" for n, s in spec.inputs.items())
        outs = ", ".join(f"{o.name}: {o.type}" for o in spec.outputs) or "-"
        print(f"{spec.class_type:<28} {spec.category:<28} ({ins}) -> ({outs})")
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    from .web import ServerConfig, serve
    from .web.queue_store import DataDirInUse
    from .web.security import UnsafeBind

    config = ServerConfig(
        data_dir=Path(args.data_dir), models_dir=Path(args.models_dir) if args.models_dir else None,
        host=args.host, port=args.port, device=args.device, cors_origins=tuple(args.cors_origin or ()),
        auth_token=args.auth_token, max_upload_mb=args.max_upload_mb,
        max_pixels=args.max_pixels, max_frames=args.max_frames,
        max_body_mb=args.max_body_mb, max_prompt_nodes=args.max_prompt_nodes or None,
        ray_address=args.ray, ray_workers=args.ray_workers,
    )
    try:
        serve(config)
    except (UnsafeBind, DataDirInUse) as err:
        _format_error(str(err), False)
        return EXIT_INVALID
    except (ValueError, OSError) as err:  # CUDA asked for but absent; the port is taken
        _format_error(str(err), False)
        return EXIT_RUNTIME
    return EXIT_OK


def _sweeps(args: argparse.Namespace, nodes: dict[str, Any]) -> list[Any]:
    """The ``--sweep`` flags against the workflow (SweepError names the flag at fault)."""
    from .cluster.sweep import check_size, parse_sweep
    from .nodes import default_registry

    registry = default_registry()

    def input_names(class_type: str) -> list[str] | None:
        cls = registry.get(class_type)
        return list(cls.spec.inputs) if cls is not None else None

    def parse(text: str, call: Any, name: str) -> Any:
        return _parse_value(text, _input_type(call, name))

    sweeps = [parse_sweep(flag, nodes, input_names, parse) for flag in args.sweep or []]
    check_size(sweeps)
    return sweeps


def _combination(sweeps: Sequence[Any], prompt: dict[str, Any]) -> str:
    return ", ".join(f"{s.node_id}.{s.input}={json.dumps(prompt[s.node_id]['inputs'][s.input])}"
                     for s in sweeps) or "the workflow as it is"


def cmd_batch(args: argparse.Namespace) -> int:
    import uuid

    from tqdm import tqdm

    from .api import Executor, load_workflow
    from .cluster.batch import BatchReport, run_local
    from .cluster.protocol import Job
    from .cluster.sweep import SweepError, count, prompts
    from .executor import WorkflowFormatError

    try:
        workflow = load_workflow(args.workflow)
    except WorkflowFormatError as err:
        _format_error(str(err), False)
        return EXIT_INVALID
    problems = apply_overrides(workflow.nodes, args.set or [])
    try:
        sweeps = _sweeps(args, workflow.nodes) if not problems else []
    except SweepError as err:
        problems.append(str(err))
    if problems:
        for p in problems:
            _format_error(p, False)
        return EXIT_INVALID
    folders = _folders(args)

    def local_executor() -> Any:
        return Executor(device=args.device, cache_dir=args.cache_dir, folders=folders, limits=_limits(args))

    try:  # with --ray, only to validate: the device asked for may be the workers' alone
        executor = Executor(device="cpu", folders=folders, limits=_limits(args)) if args.ray else local_executor()
    except ValueError as err:
        _format_error(str(err), False)
        return EXIT_RUNTIME
    total, tag = count(sweeps), uuid.uuid4().hex[:8]
    for index, prompt in enumerate(prompts(workflow.nodes, sweeps), 1):  # all valid before any runs
        issues = executor.validate(prompt)
        if issues:
            print(f"prompt {index} of {total} ({_combination(sweeps, prompt)}):", file=sys.stderr)
            _print_issues(issues, False)
            return EXIT_INVALID
    jobs = (Job(f"{tag}-{i}", prompt, events=False)  # the bar counts prompts, not their nodes
            for i, prompt in enumerate(prompts(workflow.nodes, sweeps), 1))
    report = BatchReport()
    bar = tqdm(total=total, unit="prompt", desc="prompts", disable=not sys.stderr.isatty())

    def done(job: Any, outcome: Any) -> None:
        report.record(job, outcome)
        bar.update(1)
        if outcome.status != "success":
            bar.write(f"error: prompt {job.prompt_id.rsplit('-', 1)[1]} of {total} "
                      f"({_combination(sweeps, job.prompt)}): {outcome.message}", file=sys.stderr)

    try:
        left = _batch_on_cluster(args, folders, jobs, done, report) if args.ray else jobs
        if left is None:
            return EXIT_RUNTIME
        if left and args.ray:
            print(f"warning: no worker left; running the last {len(left)} prompt(s) here",
                  file=sys.stderr)
            executor = local_executor()
        run_local(executor, left, done)
    except ValueError as err:  # no worker left, and the device asked for is not here
        _format_error(f"{err}; {total - report.done} prompt(s) not run", False)
        return EXIT_RUNTIME
    except KeyboardInterrupt:
        _format_error(f"interrupted after {report.done} of {total} prompt(s)", False)
        return EXIT_RUNTIME
    finally:
        bar.close()
    where = {"output": folders.output, "temp": folders.temp}
    print(f"ran {report.done} prompt(s), {len(report.failed)} failed"
          + (f", {report.lost_workers} worker(s) lost" if report.lost_workers else ""))
    for img in report.files:
        print(f"wrote {where.get(str(img.get('type')), folders.output) / img.get('subfolder', '') / img['filename']}")
    return EXIT_RUNTIME if report.failed else EXIT_OK


def _batch_on_cluster(args: argparse.Namespace, folders: Any, jobs: Any, done: Any, report: Any) -> Any:
    """Run ``jobs`` on the cluster at ``--ray``; the jobs left if every worker died, None if
    there is no cluster to run on (the error is printed)."""
    import asyncio

    from .cluster.backend import Cluster, ClusterUnavailable
    from .cluster.batch import run_on_cluster
    from .cluster.worker import WorkerSettings

    settings = WorkerSettings(
        input_dir=str(folders.input.resolve()), models_dir=str(folders.models.resolve()),
        device=args.device, absolute_models=True, models_hint="pass --models-dir DIR to search another folder",
        limits=_limits(args), more_models=tuple(str(p) for p in folders.more_models),
    )
    try:
        cluster = Cluster.start(args.ray, settings, folders, workers=args.workers)
    except ClusterUnavailable as err:
        _format_error(str(err), False)
        return None

    started = cluster.alive
    try:
        return asyncio.run(run_on_cluster(cluster, jobs, done))
    finally:
        report.lost_workers = started - cluster.alive
        cluster.close()


def cmd_submit(args: argparse.Namespace) -> int:
    import asyncio

    from .api import load_workflow
    from .executor import WorkflowFormatError
    from .web.client import SubmitError, describe_rejection, output_files, submit

    try:
        workflow = load_workflow(args.workflow)
    except WorkflowFormatError as err:
        _format_error(str(err), False)
        return EXIT_INVALID
    problems = apply_overrides(workflow.nodes, args.set or [])
    if problems:
        for p in problems:
            _format_error(p, False)
        return EXIT_INVALID
    ui = None if args.set else workflow.ui  # the editor layout no longer matches an overridden graph
    progress = _Progress(len(workflow.nodes), enabled=sys.stderr.isatty())
    try:
        outcome = asyncio.run(submit(args.server, workflow.nodes, ui_workflow=ui, token=args.token,
                                     on_event=progress))
    except SubmitError as err:
        _format_error(str(err), False)
        return EXIT_RUNTIME
    except KeyboardInterrupt:
        _format_error("stopped following the prompt; it stays queued on the server", False)
        return EXIT_RUNTIME
    finally:
        progress.close()
    if outcome.rejection is not None:
        for line in describe_rejection(outcome.rejection):
            print(line, file=sys.stderr)
        return outcome.exit_code
    if outcome.error is not None:
        error = outcome.error
        if error.get("kind") == "execution_interrupted":
            _format_error(f"prompt {outcome.prompt_id} was interrupted", False)
        else:
            _format_error(f"node {error.get('node_id')} ({error.get('node_type')}) failed: "
                          f"{error.get('exception_type')}: {error.get('exception_message')}", False)
        return outcome.exit_code
    print(f"prompt {outcome.prompt_id} done")
    for item in output_files(outcome.outputs):
        where = "/".join(p for p in (item.get("subfolder"), item.get("filename")) if p)
        print(f"wrote {item.get('type', 'output')}/{where}")
    return EXIT_OK


def _add_limit_options(parser: argparse.ArgumentParser) -> None:
    from .executor.limits import Limits

    parser.add_argument("--max-pixels", type=int, default=Limits.max_pixels, metavar="N",
                        help="most pixels (width x height x frames or batch) an image or latent may have "
                             f"(default {Limits.max_pixels:,})")
    parser.add_argument("--max-frames", type=int, default=Limits.max_frames, metavar="N",
                        help=f"most frames of one image file (default {Limits.max_frames:,})")


def _limits(args: argparse.Namespace) -> Any:
    from .executor.limits import Limits

    return Limits(max_pixels=args.max_pixels, max_frames=args.max_frames)


def _workers(text: str) -> int:
    """``--workers`` / ``--ray-workers``: a count of at least one."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of workers, at least 1, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="latentgraph", description="Typed node graphs for image generators.")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a workflow (API JSON, UI JSON or a PNG from LG_SaveImage)")
    run.add_argument("workflow")
    run.add_argument("--set", action="append", metavar="NODE_ID.INPUT=VALUE", help="override an input (repeatable)")
    run.add_argument("--target", action="append", metavar="NODE_ID", help="also compute this node's outputs")
    run.add_argument("--output-dir", help="where LG_SaveImage writes (default DATA_DIR/output)")
    run.add_argument("--input-dir", help="where LG_LoadImage reads (default DATA_DIR/input)")
    run.add_argument("--models-dir", help="where loaders look for weights first (default DATA_DIR/models); "
                     "the weights latentgraph ships are looked for next")
    run.add_argument("--data-dir", default=".", help="root of input/, output/, temp/, models/ (default .)")
    run.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    run.add_argument("--cache-dir", help="keep expensive results on disk here for later runs")
    run.add_argument("--json", action="store_true", help="print the result or the errors as JSON")
    _add_limit_options(run)
    run.set_defaults(func=cmd_run)

    val = sub.add_parser("validate", help="check a workflow without running it")
    val.add_argument("workflow")
    val.add_argument("--json", action="store_true")
    val.set_defaults(func=cmd_validate)

    conv = sub.add_parser("convert", help="convert a UI-format workflow (or a PNG) to the API format")
    conv.add_argument("workflow")
    conv.add_argument("-o", "--output", help="file to write (default: stdout)")
    conv.set_defaults(func=cmd_convert)

    nodes = sub.add_parser("nodes", help="list the installed nodes, or show one")
    nodes.add_argument("name", nargs="?", metavar="NAME", help="show this node's inputs and outputs (e.g. LG_Sampler)")
    nodes.add_argument("--json", action="store_true", help="print the /object_info schema (of NAME only, if given)")
    nodes.set_defaults(func=cmd_nodes)

    serve = sub.add_parser("serve", help="run the HTTP server (ComfyUI-compatible API)")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default 127.0.0.1; others need --auth-token)")
    serve.add_argument("--port", type=int, default=8188)
    serve.add_argument("--data-dir", default=".",
                       help="root of input/, output/, temp/, models/ and the queue database (default .)")
    serve.add_argument("--models-dir", help="where loaders look for weights first (default DATA_DIR/models); "
                       "the weights latentgraph ships are looked for next")
    serve.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    serve.add_argument("--cors-origin", nargs="+", metavar="ORIGIN",
                       help="other browser origins allowed to use the API (e.g. http://localhost:5173)")
    serve.add_argument("--auth-token", help="require this token (Authorization: Bearer, or ?token=)")
    serve.add_argument("--max-upload-mb", type=float, default=100.0, help="largest upload accepted (default 100)")
    _add_limit_options(serve)
    serve.add_argument("--max-body-mb", type=float, default=32.0,
                       help="largest JSON body accepted, such as a prompt with its editor layout (default 32)")
    serve.add_argument("--max-prompt-nodes", type=int, default=50_000,
                       help="most nodes one posted prompt may have (default 50000; 0: no limit)")
    serve.add_argument("--ray", metavar="ADDRESS",
                       help="run prompts on the Ray cluster at ADDRESS (HOST:PORT of its head), or auto to "
                            "start one here; if it cannot be reached the server says so and runs them itself")
    serve.add_argument("--ray-workers", type=_workers, metavar="N",
                       help="with --ray: how many workers (default one per GPU of the cluster, else per CPU)")
    serve.set_defaults(func=cmd_serve)

    batch = sub.add_parser("batch", help="run a workflow over sweeps of its inputs, here or on a Ray cluster")
    batch.add_argument("workflow")
    batch.add_argument("--sweep", action="append", metavar="NODE_ID.INPUT=VALUES",
                       help="values for one input: A..B (integers), @FILE (one per line) or a JSON list; "
                            "several sweeps make every combination, the first flag outermost")
    batch.add_argument("--set", action="append", metavar="NODE_ID.INPUT=VALUE", help="override an input (repeatable)")
    batch.add_argument("--ray", metavar="ADDRESS",
                       help="run on the Ray cluster at ADDRESS (HOST:PORT of its head), or auto to start one here")
    batch.add_argument("--workers", type=_workers, metavar="N",
                       help="with --ray: how many workers (default one per GPU of the cluster, else per CPU)")
    batch.add_argument("--output-dir", help="where LG_SaveImage writes (default DATA_DIR/output)")
    batch.add_argument("--input-dir", help="where LG_LoadImage reads (default DATA_DIR/input)")
    batch.add_argument("--models-dir", help="where loaders look for weights first (default DATA_DIR/models)")
    batch.add_argument("--data-dir", default=".", help="root of input/, output/, temp/, models/ (default .)")
    batch.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    batch.add_argument("--cache-dir", help="keep expensive results on disk here for later runs")
    _add_limit_options(batch)
    batch.set_defaults(func=cmd_batch)

    submit = sub.add_parser("submit", help="queue a workflow on a running server and follow its progress")
    submit.add_argument("workflow")
    submit.add_argument("--server", default="http://127.0.0.1:8188", help="server URL (default http://127.0.0.1:8188)")
    submit.add_argument("--set", action="append", metavar="NODE_ID.INPUT=VALUE", help="override an input (repeatable)")
    submit.add_argument("--token", help="the server's --auth-token")
    submit.set_defaults(func=cmd_submit)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # A workflow's strings reach the messages; one JSON may spell that the terminal cannot
    # encode (a lone surrogate, "\ud800") is printed escaped rather than as a traceback.
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")
    if args.command in ("run", "serve", "batch"):
        from .executor.run import settle_heap
        from .nodes import default_registry

        default_registry()  # import every node family before settling the heap
        settle_heap()
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
