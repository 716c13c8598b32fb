"""The node pack against ComfyUI's classic node interface, as ComfyUI's loader, validator and
executor use it; ComfyUI itself is not imported.

Each check mirrors code read in, and behaviour seen from, a real ComfyUI (0.8.0, commit
3cd7b32f, run on the CPU with this folder in ``custom_nodes/``):

* ``nodes.load_custom_node`` imports ``__init__.py`` under a module name made from the folder's
  path, reads ``WEB_DIRECTORY`` (a folder relative to ours), ``NODE_CLASS_MAPPINGS`` (it sets
  ``RELATIVE_PYTHON_MODULE`` on each class) and ``NODE_DISPLAY_NAME_MAPPINGS``.
* ``server.node_info`` builds ``/object_info`` from INPUT_TYPES, RETURN_TYPES, RETURN_NAMES,
  OUTPUT_NODE, CATEGORY, DESCRIPTION, OUTPUT_TOOLTIPS.
* ``execution.validate_inputs``: every "required" input must be in the prompt; any list value is
  a link and its RETURN_TYPES entry must equal the input's type (or be "*"); literals are
  converted (INT -> int ...), then checked against "min", "max" and a list of choices, except the
  inputs named in VALIDATE_INPUTS' arguments, which it checks instead (True or a message).
* ``execution.get_input_data`` passes only the inputs a node declares (literals as they are in
  the prompt, links as the upstream value) plus "hidden" ones by kind: UNIQUE_ID (the node id),
  PROMPT (the original prompt), DYNPROMPT, EXTRA_PNGINFO (``{"workflow": ...}`` from the editor).
* IS_CHANGED gets the literals, None for linked inputs and the hidden values; what it returns
  is stored in the prompt (so in ``/history`` JSON) and compared with the last run's.
* ``execution.get_output_from_returns``: a tuple of RETURN_TYPES length, or
  ``{"ui": {key: list}, "result": tuple}``, or ``{"result": links, "expand": graph}`` where each
  link passes ``comfy_execution.graph_utils.is_link`` (a *list* ``[str id, int index]``) and the
  graph's nodes are added to the prompt as they are: ids must be new, they are *not* validated.
* The editor (frontend 1.35) adds its upload button only to a "required" combo input with
  ``image_upload``, and lays out widgets required first, then optional.
* The server calls ``on_prompt`` handlers with the body of ``POST /prompt`` before validating.
"""

from __future__ import annotations

import copy
import inspect
import json
import subprocess
import sys
import textwrap
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import latentgraph
import numpy as np
import pytest
from latentgraph import Executor, comfy_plugin, load_workflow
from latentgraph.comfy_plugin import HostContext, comfy_class
from latentgraph.executor import Folders
from latentgraph.executor.schema import object_info
from latentgraph.nodes import default_registry
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
GRAPHS = sorted((ROOT / "graphs").glob("*.json"))
SELF_CONTAINED = ["core_demo.json", "ddim_unrolled.json", "ddpm_vs_ddim.json"]
MAPPINGS = latentgraph.NODE_CLASS_MAPPINGS
NAMES = sorted(MAPPINGS)
# execution.get_input_data's hidden kinds (classic nodes).
HIDDEN_KINDS = {"PROMPT", "DYNPROMPT", "EXTRA_PNGINFO", "UNIQUE_ID", "AUTH_TOKEN_COMFY_ORG", "API_KEY_COMFY_ORG"}


def spec_of(name: str):
    return MAPPINGS[name].latentgraph_node.spec


def comfy_is_link(value: Any) -> bool:
    """comfy_execution.graph_utils.is_link."""
    return (isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)
            and isinstance(value[1], int | float))


def sections(cls: type) -> dict[str, dict[str, tuple]]:
    types = cls.INPUT_TYPES()
    return {k: types[k] for k in ("required", "optional") if k in types}


def entry_parts(entry: tuple) -> tuple[Any, dict[str, Any]]:
    return entry[0], (entry[1] if len(entry) > 1 else {})


def validate_args(cls: type) -> list[str]:
    fn = getattr(cls, "VALIDATE_INPUTS", None)
    return inspect.getfullargspec(fn).args if fn is not None else []


# --- a mirror of ComfyUI's validator and executor, small enough to read ----------------------

CONVERT = {"INT": int, "FLOAT": float, "STRING": str, "BOOLEAN": bool}


def comfy_validate(prompt: dict[str, Any], classes: dict[str, type]) -> dict[str, list[str]]:
    """execution.validate_inputs for classic nodes: node id -> the error types it reports."""
    errors: dict[str, list[str]] = {}
    for node_id, node in prompt.items():
        cls, found = classes[node["class_type"]], []
        inputs = node["inputs"]
        own_checks = validate_args(cls)
        for category, section in sections(cls).items():
            for name, entry in section.items():
                kind, options = entry_parts(entry)
                if name not in inputs:
                    if category == "required":
                        found.append("required_input_missing")
                    continue
                value = inputs[name]
                if isinstance(value, list):
                    received = classes[prompt[value[0]]["class_type"]].RETURN_TYPES[value[1]]
                    if received != kind and "*" not in (received, kind):
                        found.append("return_type_mismatch")
                    continue
                if name in own_checks:
                    continue
                if isinstance(kind, str) and kind in CONVERT:
                    value = CONVERT[kind](value)
                if "min" in options and value < options["min"]:
                    found.append("value_smaller_than_min")
                elif "max" in options and value > options["max"]:
                    found.append("value_bigger_than_max")
                elif isinstance(kind, list) and value not in kind:
                    found.append("value_not_in_list")
        if own_checks:
            args = {a: (None if isinstance(inputs.get(a), list) else inputs.get(a))
                    for a in own_checks if a in inputs}
            if cls.VALIDATE_INPUTS(**args) is not True:
                found.append("custom_validation_failed")
        if found:
            errors[node_id] = found
    return errors


class DynPrompt:
    """The part of comfy_execution.graph.DynamicPrompt that nodes see."""

    def __init__(self, prompt: dict[str, Any]) -> None:
        self.original, self.ephemeral = prompt, {}

    def get_node(self, node_id: str) -> dict[str, Any]:
        return self.ephemeral[node_id] if node_id in self.ephemeral else self.original[node_id]

    def get_original_prompt(self) -> dict[str, Any]:
        return self.original


def comfy_execute(prompt: dict[str, Any], classes: dict[str, type], extra_pnginfo: Any = None,
                  targets: list[str] | None = None):
    """Run the output nodes (or ``targets``) as ComfyUI's executor would; returns (outputs, ui,
    expanded ids)."""
    dyn, outputs, ui, expanded = DynPrompt(prompt), {}, {}, []

    def value(link: list) -> Any:
        evaluate(link[0])
        return outputs[link[0]][link[1]]

    def evaluate(node_id: str) -> None:
        if node_id in outputs:
            return
        node = dyn.get_node(node_id)
        cls = classes[node["class_type"]]
        declared = {n for s in sections(cls).values() for n in s}
        kwargs = {n: value(v) if comfy_is_link(v) else v for n, v in node["inputs"].items() if n in declared}
        hidden = {"PROMPT": prompt, "DYNPROMPT": dyn, "EXTRA_PNGINFO": extra_pnginfo, "UNIQUE_ID": node_id}
        kwargs.update({n: hidden[k] for n, k in cls.INPUT_TYPES().get("hidden", {}).items()})
        returned = getattr(cls(), cls.FUNCTION)(**kwargs)
        if isinstance(returned, dict) and "ui" in returned:
            assert all(isinstance(v, list) for v in returned["ui"].values())  # ComfyUI concatenates them
            ui[node_id] = returned["ui"]
        if isinstance(returned, dict) and "expand" in returned:
            links = returned["result"]
            assert isinstance(links, tuple) and len(links) == len(cls.RETURN_TYPES)
            assert all(comfy_is_link(link) for link in links)
            for new_id, new_node in returned["expand"].items():
                assert new_id not in prompt and new_id not in dyn.ephemeral, f"expanded id {new_id} is taken"
                assert set(new_node) >= {"class_type", "inputs"} and new_node["class_type"] in classes
                dyn.ephemeral[new_id] = new_node
                expanded.append(new_id)
            outputs[node_id] = tuple(value(link) for link in links)
            return
        result = returned["result"] if isinstance(returned, dict) else returned
        assert isinstance(result, tuple) and len(result) == len(cls.RETURN_TYPES)
        outputs[node_id] = result

    if targets is None:
        targets = [i for i, node in prompt.items() if classes[node["class_type"]].OUTPUT_NODE]
    for node_id in targets:
        evaluate(node_id)
    return outputs, ui, expanded


def comfy_classes(folders: Folders) -> dict[str, type]:
    host = HostContext(folders)
    return {n.class_type: comfy_class(n, host) for n in default_registry()}


def small(prompt: dict[str, Any]) -> dict[str, Any]:
    """The same graph with fewer sampler steps, to keep the suite quick."""
    prompt = copy.deepcopy(prompt)
    for node in prompt.values():
        if node["class_type"] == "LG_Sampler":
            node["inputs"]["steps"] = min(node["inputs"].get("steps", 20), 6)
    return prompt


# --- loading ----------------------------------------------------------------------------------

def test_pack_loads_the_way_comfyui_loads_it(tmp_path):
    """Under a module name made from the folder path, with no importable `latentgraph` (ComfyUI's
    environment does not install us): the mappings, the web folder, and a run that saves a PNG."""
    script = textwrap.dedent(f"""
        import importlib.util, json, os, sys
        sys.modules["latentgraph"] = None   # an absolute `import latentgraph...` fails, as there
        path = {str(ROOT)!r}
        name = path.replace(".", "_x_")
        spec = importlib.util.spec_from_file_location(name, os.path.join(path, "__init__.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        assert os.path.isdir(os.path.abspath(os.path.join(path, module.WEB_DIRECTORY)))
        classes = module.NODE_CLASS_MAPPINGS
        assert set(module.NODE_DISPLAY_NAME_MAPPINGS) <= set(classes)
        for cls in classes.values():
            cls.RELATIVE_PYTHON_MODULE = "custom_nodes.latentgraph"
        image = classes["LG_EmptyImage"]().execute(unique_id="1", width=8, height=4)[0]
        save = classes["LG_SaveImage"]()
        out = save.execute(unique_id="2", prompt={{"2": {{"class_type": "LG_SaveImage", "inputs": {{}}}}}},
                           extra_pnginfo=None, images=image, filename_prefix="loaded")
        print(json.dumps({{"n": len(classes), "ui": out["ui"]}}))
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["n"] == len(default_registry())
    assert report["ui"] == {"images": [{"filename": "loaded_00001_.png", "subfolder": "", "type": "output"}]}
    assert (tmp_path / "output" / "loaded_00001_.png").is_file()


def test_mappings_cover_the_registry():
    assert set(MAPPINGS) == {n.class_type for n in default_registry()}
    assert set(latentgraph.NODE_DISPLAY_NAME_MAPPINGS) == set(MAPPINGS)
    assert all(isinstance(v, str) and v for v in latentgraph.NODE_DISPLAY_NAME_MAPPINGS.values())


# --- the classic interface, class by class ------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_input_types_have_comfyui_shape(name):
    cls = MAPPINGS[name]
    types = cls.INPUT_TYPES()
    assert isinstance(types, dict) and "required" in types
    assert set(types) <= {"required", "optional", "hidden"}
    json.dumps(types)  # /object_info sends it as JSON
    for section in sections(cls).values():
        for input_name, entry in section.items():
            assert isinstance(input_name, str) and isinstance(entry, tuple) and len(entry) in (1, 2)
            kind, options = entry_parts(entry)
            assert isinstance(kind, str) or (isinstance(kind, list) and kind == list(kind))
            assert isinstance(options, dict)
            if isinstance(kind, list) and "default" in options:
                assert options["default"] in kind
            if "default" in options and "min" in options:
                assert options["min"] <= options["default"] <= options.get("max", options["default"])
    hidden = types.get("hidden", {})
    assert set(hidden.values()) <= HIDDEN_KINDS
    assert not set(hidden) & {n for s in sections(cls).values() for n in s}, "a hidden name hides an input"


@pytest.mark.parametrize("name", NAMES)
def test_class_attributes_have_comfyui_types(name):
    cls = MAPPINGS[name]
    assert isinstance(cls.RETURN_TYPES, tuple) and all(isinstance(t, str) for t in cls.RETURN_TYPES)
    assert isinstance(cls.RETURN_NAMES, tuple) and len(cls.RETURN_NAMES) == len(cls.RETURN_TYPES)
    assert len(cls.OUTPUT_TOOLTIPS) == len(cls.RETURN_TYPES)
    assert isinstance(cls.FUNCTION, str) and callable(getattr(cls, cls.FUNCTION))
    assert isinstance(cls.CATEGORY, str) and cls.CATEGORY
    assert isinstance(cls.DESCRIPTION, str)
    assert type(cls.OUTPUT_NODE) is bool and cls.OUTPUT_NODE == spec_of(name).output_node
    assert cls.OUTPUT_NODE or cls.RETURN_TYPES, "ComfyUI would never run a node with no outputs"
    # The function takes every input and hidden value ComfyUI may pass, by keyword.
    params = inspect.signature(getattr(cls(), cls.FUNCTION)).parameters
    assert any(p.kind is p.VAR_KEYWORD for p in params.values())
    if cls.OUTPUT_NODE:  # what a saved PNG carries: the prompt and the editor's workflow
        assert {"PROMPT", "EXTRA_PNGINFO"} <= set(cls.INPUT_TYPES()["hidden"].values())


@pytest.mark.parametrize("name", NAMES)
def test_comfyui_object_info_matches_ours(name):
    """server.node_info over the class equals our own /object_info entry, but for what ComfyUI
    adds or leaves out (hidden inputs, its module name, false flags) and upload inputs, which
    both hosts show as a combo of the input folder's files."""
    cls, spec = MAPPINGS[name], spec_of(name)
    types = cls.INPUT_TYPES()
    theirs = {
        "input": {k: v for k, v in types.items() if k != "hidden"},
        "input_order": {k: list(v) for k, v in types.items() if k != "hidden"},
        "output": list(cls.RETURN_TYPES), "output_is_list": [False] * len(cls.RETURN_TYPES),
        "output_name": list(cls.RETURN_NAMES), "name": name,
        "display_name": latentgraph.NODE_DISPLAY_NAME_MAPPINGS[name], "description": cls.DESCRIPTION,
        "category": cls.CATEGORY, "output_node": cls.OUTPUT_NODE, "output_tooltips": list(cls.OUTPUT_TOOLTIPS),
    }
    ours = json.loads(json.dumps(object_info(spec)))
    for key in ("python_module", "deprecated", "experimental"):
        ours.pop(key)
    for section in ours["input"].values():
        for input_name, entry in section.items():
            if spec.inputs[input_name].hints.get("image_upload"):
                section[input_name] = [list(types["required"][input_name][0]), entry[1]]
    assert json.loads(json.dumps(theirs)) == ours


@pytest.mark.parametrize("name", NAMES)
def test_editor_widget_order_is_the_declaration_order(name):
    """ComfyUI's editor lays widgets out required first, then optional; UI workflows (and the
    PNGs we write) list widget values in declaration order. They must agree, or a workflow
    moved between the hosts puts values in the wrong widgets."""
    cls, spec = MAPPINGS[name], spec_of(name)
    laid_out = [n for s in sections(cls).values() for n in s]
    widgets = [n for n, s in spec.inputs.items() if s.socket.is_widget and not s.hints.get("forceInput")]
    assert [n for n in laid_out if n in widgets] == widgets


@pytest.mark.parametrize("name", [n for n in NAMES if any(
    s.hints.get("image_upload") for s in spec_of(n).inputs.values())])
def test_upload_inputs_are_combos_with_their_own_check(name, tmp_path):
    folders = Folders.under(tmp_path)
    (folders.input / "sub").mkdir(parents=True)
    for file in ("b.png", "a.jpg", ".hidden.png", "sub/c.webp"):
        Image.new("RGB", (2, 2)).save(folders.input / file, format="PNG")
    (folders.input / "notes.txt").write_text("not an image")
    cls = comfy_classes(folders)[name]
    uploads = [n for n, s in cls.latentgraph_node.spec.inputs.items() if s.hints.get("image_upload")]
    for upload in uploads:
        kind, options = entry_parts(cls.INPUT_TYPES()["required"][upload])
        assert kind == ["a.jpg", "b.png", "sub/c.webp"] and options["image_upload"] is True
    spec = inspect.getfullargspec(cls.VALIDATE_INPUTS)
    assert spec.args == ["cls", *uploads] and spec.varkw is None  # only these skip ComfyUI's checks
    good = {n: "x.png [output]" for n in uploads}  # annotated names and new uploads are not listed
    assert cls.VALIDATE_INPUTS(**good) is True
    assert isinstance(cls.VALIDATE_INPUTS(**{n: 5 for n in uploads}), str)


# --- IS_CHANGED -------------------------------------------------------------------------------

def test_is_changed_only_on_file_reading_nodes():
    assert {n for n in NAMES if hasattr(MAPPINGS[n], "IS_CHANGED")} == {n for n in NAMES if spec_of(n).reads_files}


@pytest.mark.parametrize("name", [n for n in NAMES if spec_of(n).reads_files])
def test_is_changed_as_comfyui_calls_it(name, tmp_path):
    """Literals from the prompt, None for the inputs ComfyUI lets be linked (not combos: it
    refuses links into them), and the hidden values; a hashable that survives JSON."""
    cls = comfy_classes(Folders.under(tmp_path))[name]
    kinds = {n: entry_parts(e)[0] for s in sections(cls).values() for n, e in s.items()}
    hidden = {n: {"UNIQUE_ID": "5"}.get(k) for n, k in cls.INPUT_TYPES()["hidden"].items()}
    literal = {}
    for input_name, s in cls.latentgraph_node.spec.inputs.items():
        kind = kinds[input_name]
        literal[input_name] = s.default if s.has_default else (kind[:1] or ["absent.png"])[0] if isinstance(
            kind, list) else "absent.bin"
    linked = {n: v if isinstance(kinds[n], list) else None for n, v in literal.items()}
    for inputs in (literal, linked):
        first = cls.IS_CHANGED(**inputs, **hidden)
        assert isinstance(first, Hashable) and json.loads(json.dumps(first)) == first
        assert cls.IS_CHANGED(**inputs, **hidden) == first


def test_is_changed_follows_the_file(tmp_path):
    folders = Folders.under(tmp_path)
    folders.input.mkdir(parents=True)
    cls = comfy_classes(folders)["LG_LoadImage"]
    Image.new("RGB", (4, 4), (255, 0, 0)).save(folders.input / "a.png")
    before = cls.IS_CHANGED(image="a.png", unique_id="1", dynprompt=None)
    Image.new("RGB", (8, 4), (0, 255, 0)).save(folders.input / "a.png")
    assert cls.IS_CHANGED(image="a.png", unique_id="1", dynprompt=None) != before


# --- calling the function ---------------------------------------------------------------------

PRIMITIVES = [n for n in NAMES if not spec_of(n).output_node and not spec_of(n).reads_files and all(
    s.socket.is_widget and s.has_default for s in spec_of(n).inputs.values() if s.required)]


def test_there_are_primitive_nodes():
    assert {"LG_Int", "LG_FloatMath", "LG_EmptyImage"} <= set(PRIMITIVES)


@pytest.mark.parametrize("name", PRIMITIVES)
def test_primitive_node_runs_on_its_defaults(name, tmp_path):
    cls = comfy_classes(Folders.under(tmp_path))[name]
    defaults = {n: entry_parts(e)[1]["default"] for s in sections(cls).values() for n, e in s.items()
                if "default" in entry_parts(e)[1]}
    result = getattr(cls(), cls.FUNCTION)(unique_id="1", dynprompt=DynPrompt({}), **defaults)
    assert isinstance(result, tuple) and len(result) == len(cls.RETURN_TYPES)


def test_output_node_returns_ui_and_a_png_carrying_the_prompt_and_workflow(tmp_path):
    classes = comfy_classes(Folders.under(tmp_path))
    prompt = {"1": {"class_type": "LG_EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 2}},
              "2": {"class_type": "LG_SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "sub/x"}}}
    workflow = {"last_node_id": 2, "nodes": [], "links": []}
    _, ui, _ = comfy_execute(prompt, classes, extra_pnginfo={"workflow": workflow})
    assert ui == {"2": {"images": [{"filename": f"x_0000{i}_.png", "subfolder": "sub", "type": "output"}
                                   for i in (1, 2)]}}
    text = Image.open(tmp_path / "output" / "sub" / "x_00001_.png").text
    assert json.loads(text["prompt"]) == prompt and json.loads(text["workflow"]) == workflow


# --- expansion --------------------------------------------------------------------------------

def _sampler_inputs(tmp_path) -> tuple[dict[str, type], dict[str, Any], dict[str, Any]]:
    """LG_Sampler's inputs, computed by running the upstream nodes through the ComfyUI classes."""
    classes = comfy_classes(Folders.under(tmp_path))
    prompt = small(load_workflow(ROOT / "graphs" / "ddpm_vs_ddim.json").nodes)
    comfy_plugin.fill_defaults({"prompt": prompt})
    sampler_id = next(i for i, n in prompt.items() if n["class_type"] == "LG_Sampler")
    own = prompt[sampler_id]["inputs"]
    sources = [v[0] for v in own.values() if comfy_is_link(v)]
    outputs, _, _ = comfy_execute(prompt, classes, targets=sources)
    kwargs = {n: outputs[v[0]][v[1]] if comfy_is_link(v) else v for n, v in own.items()}
    return classes, prompt, {"sampler_id": sampler_id, "kwargs": kwargs}


def test_expansion_has_comfyui_shape_and_ids_unique_per_node(tmp_path):
    classes, prompt, got = _sampler_inputs(tmp_path)
    cls, dyn = classes["LG_Sampler"], DynPrompt({**prompt, "99": prompt[got["sampler_id"]]})
    runs = {uid: cls().execute(unique_id=uid, dynprompt=dyn, **got["kwargs"]) for uid in (got["sampler_id"], "99")}
    for uid, out in runs.items():
        assert set(out) == {"result", "expand"}
        assert isinstance(out["result"], tuple) and len(out["result"]) == len(cls.RETURN_TYPES)
        assert all(comfy_is_link(link) and link[0] in out["expand"] for link in out["result"])
        for new_id, node in out["expand"].items():
            assert new_id.startswith(f"{uid}.") and new_id not in prompt
            assert set(node) == {"class_type", "inputs"} and node["class_type"] in classes
            # A link goes to a sibling or to a node of the prompt (the sampler's own sources).
            for value in node["inputs"].values():
                if comfy_is_link(value):
                    assert value[0] in out["expand"] or value[0] in prompt
    a, b = (set(runs[uid]["expand"]) for uid in runs)
    assert not a & b
    again = cls().execute(unique_id=got["sampler_id"], dynprompt=dyn, **got["kwargs"])
    assert again == runs[got["sampler_id"]]  # stable ids: ComfyUI's subcache finds them next run


def test_expanded_nodes_would_pass_comfyui_validation(tmp_path):
    """ComfyUI runs expanded nodes unvalidated, so they must be valid as they are (an input with
    a default may be left out: the adapter fills it in)."""
    classes, prompt, got = _sampler_inputs(tmp_path)
    out = classes["LG_Sampler"]().execute(unique_id=got["sampler_id"], dynprompt=DynPrompt(prompt), **got["kwargs"])
    errors = comfy_validate({**prompt, **out["expand"]}, classes)
    assert {i: e for i, e in errors.items() if set(e) != {"required_input_missing"}} == {}
    for new_id, node in out["expand"].items():
        spec = classes[node["class_type"]].latentgraph_node.spec
        # None reaches the node as it is: only an optional input may get it.
        assert all(v is not None or not spec.inputs[n].required for n, v in node["inputs"].items()), new_id
        left_out = {n for n, s in spec.inputs.items() if s.required and n not in node["inputs"]}
        assert all(spec.inputs[n].has_default for n in left_out), (new_id, left_out)


def test_expansion_passes_defaults_for_inputs_left_out_of_the_prompt(tmp_path):
    from nodes_for_tests import Repeat

    class Dyn:
        def get_node(self, node_id):
            return {"class_type": "LG_TestRepeat", "inputs": {"latent": ["4", 0], "times": 2}}

    cls = comfy_class(Repeat, HostContext(Folders.under(tmp_path)))
    out = cls().execute(unique_id="12", dynprompt=Dyn(), latent={"samples": None}, times=2)
    assert out["expand"]["12.add0"]["inputs"] == {"latent": ["4", 0], "amount": 1.0}


# --- whole workflows --------------------------------------------------------------------------

@pytest.mark.parametrize("path", GRAPHS, ids=[p.name for p in GRAPHS])
def test_shared_graphs_pass_comfyui_validation_once_defaults_are_filled(path):
    prompt = load_workflow(path).nodes
    body = comfy_plugin.fill_defaults({"prompt": copy.deepcopy(prompt), "client_id": "x"})
    assert comfy_validate(body["prompt"], MAPPINGS) == {}
    for node_id, node in prompt.items():  # only left-out inputs were added
        assert {k: body["prompt"][node_id]["inputs"][k] for k in node["inputs"]} == node["inputs"]


def test_fill_defaults_touches_only_our_left_out_inputs():
    body = {"prompt": {"1": {"class_type": "LG_EmptyImage", "inputs": {"width": 16}},
                       "2": {"class_type": "EmptyImage", "inputs": {}},
                       "3": {"class_type": "LG_SaveImage", "inputs": {"images": ["1", 0]}}}}
    out = comfy_plugin.fill_defaults(body)
    assert out["prompt"]["1"]["inputs"] == {"width": 16, "height": 512, "batch_size": 1, "color": 0}
    assert out["prompt"]["2"]["inputs"] == {}
    assert out["prompt"]["3"]["inputs"] == {"images": ["1", 0], "filename_prefix": "latentgraph"}
    assert comfy_plugin.fill_defaults({"no": "prompt"}) == {"no": "prompt"}
    assert comfy_plugin.fill_defaults({"prompt": {"1": "junk", "2": {"class_type": 3}}})


def test_fill_defaults_is_installed_once_on_comfyuis_prompt_server(monkeypatch):
    class PromptServer:
        def __init__(self):
            self.on_prompt_handlers = []

        def add_on_prompt_handler(self, handler):
            self.on_prompt_handlers.append(handler)

    PromptServer.instance = PromptServer()
    monkeypatch.setitem(sys.modules, "server", type(sys)("server"))
    sys.modules["server"].PromptServer = PromptServer
    comfy_plugin.comfy_mappings()
    comfy_plugin.comfy_mappings()
    assert PromptServer.instance.on_prompt_handlers == [comfy_plugin.fill_defaults]


@pytest.mark.parametrize("error, prompt", [
    ("required_input_missing", {"1": {"class_type": "LG_SaveImage", "inputs": {}}}),
    ("return_type_mismatch", {"1": {"class_type": "LG_NoiseSchedule", "inputs": {}},
                              "2": {"class_type": "LG_SaveImage", "inputs": {"images": ["1", 0]}}}),
    ("value_smaller_than_min", {"1": {"class_type": "LG_EmptyImage", "inputs": {"width": 0}}}),
    ("value_not_in_list", {"1": {"class_type": "LG_IntMath", "inputs": {"op": "mod"}}}),
    ("custom_validation_failed", {"1": {"class_type": "LG_LoadImage", "inputs": {"image": 5}}}),
])
def test_mirror_validator_reports_what_comfyui_reported(error, prompt):
    """The errors the real ComfyUI gave for these prompts (after on_prompt filled defaults)."""
    body = comfy_plugin.fill_defaults({"prompt": prompt})
    assert error in comfy_validate(body["prompt"], MAPPINGS)["1" if error != "return_type_mismatch" else "2"]


@pytest.mark.parametrize("name", SELF_CONTAINED)
def test_workflow_gives_the_same_pixels_as_our_executor(name, tmp_path):
    """What the real ComfyUI showed (every pixel equal), through the mirror of its executor."""
    prompt = small(load_workflow(ROOT / "graphs" / name).nodes)
    ours, theirs = Folders.under(tmp_path / "ours"), Folders.under(tmp_path / "comfy")
    result = Executor(device="cpu", folders=ours).run(copy.deepcopy(prompt))
    body = comfy_plugin.fill_defaults({"prompt": copy.deepcopy(prompt)})
    _, ui, expanded = comfy_execute(body["prompt"], comfy_classes(theirs))
    assert ui == result.ui
    assert bool(expanded) == any(n["class_type"] == "LG_Sampler" for n in prompt.values())
    files = [(i["type"], i["subfolder"], i["filename"]) for u in ui.values() for i in u["images"]]
    assert files
    for kind, sub, file in files:
        a = np.asarray(Image.open(getattr(ours, kind) / sub / file))
        b = np.asarray(Image.open(getattr(theirs, kind) / sub / file))
        assert a.shape == b.shape and np.array_equal(a, b), file
