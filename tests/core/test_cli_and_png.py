"""The CLI's exit codes and output, and the PNG metadata round trip."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from graph_helpers import Graph, load_image_graph, one_node, save_image_graph
from latentgraph import load_workflow
from latentgraph.cli import main
from latentgraph.executor.workflow import api_to_ui
from latentgraph.nodes import default_registry
from PIL import Image

GRAPHS = Path(__file__).resolve().parents[2] / "graphs"


def write(tmp_path: Path, graph: dict, name="wf.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(graph))
    return str(path)


def image_graph(color=0x336699, prefix="t"):
    return save_image_graph(prefix, width=16, height=8, batch_size=1, color=color)


def run_cli(*args: str) -> int:
    return main(list(args))


def test_run_writes_png_with_workflow_and_provenance(tmp_path, capsys):
    code = run_cli("run", write(tmp_path, image_graph()), "--data-dir", str(tmp_path), "--device", "cpu")
    assert code == 0
    png = tmp_path / "output" / "t_00001_.png"
    with Image.open(png) as img:
        assert img.size == (16, 8) and img.getpixel((0, 0)) == (0x33, 0x66, 0x99)
        text = img.text
    assert json.loads(text["prompt"]) == image_graph()
    ui = json.loads(text["workflow"])
    assert {n["type"] for n in ui["nodes"]} == {"LG_EmptyImage", "LG_SaveImage"}
    meta = json.loads(text["latentgraph"])
    assert meta["nodes"] == {"LG_EmptyImage": "1.0.0", "LG_SaveImage": "1.0.0"}
    assert {"version", "torch", "device", "dtype"} <= set(meta)
    assert "wrote" in capsys.readouterr().out


def test_run_from_png_with_override(tmp_path, capsys):
    assert run_cli("run", write(tmp_path, image_graph()), "--data-dir", str(tmp_path)) == 0
    png = str(tmp_path / "output" / "t_00001_.png")
    capsys.readouterr()
    assert run_cli("run", png, "--data-dir", str(tmp_path), "--set", "1.color=255", "--json") == 0
    out = json.loads(capsys.readouterr().out)
    assert out["executed"] == ["1", "2"] and out["files"][0].endswith("t_00002_.png")
    with Image.open(tmp_path / "output" / "t_00002_.png") as img:
        assert img.getpixel((0, 0)) == (0, 0, 255)


def test_load_workflow_reads_api_ui_and_png(tmp_path):
    api = image_graph()
    ui = api_to_ui(api, default_registry())
    assert load_workflow(api).nodes == api
    from_ui = load_workflow(write(tmp_path, ui, "ui.json")).nodes
    assert {k: v["inputs"] for k, v in from_ui.items()} == {k: v["inputs"] for k, v in api.items()}
    assert run_cli("run", write(tmp_path, api), "--data-dir", str(tmp_path)) == 0
    assert load_workflow(tmp_path / "output" / "t_00001_.png").nodes == api


def test_validation_errors_exit_2_and_list_every_problem(tmp_path, capsys):
    graph = image_graph()
    graph["1"]["inputs"].update(width=0, height="tall")
    code = run_cli("run", write(tmp_path, graph), "--data-dir", str(tmp_path), "--json")
    assert code == 2
    errors = json.loads(capsys.readouterr().out)["errors"]
    assert sorted(e["input"] for e in errors) == ["height", "width"]
    assert run_cli("validate", write(tmp_path, graph)) == 2
    assert "2 problem(s)" in capsys.readouterr().err


def test_runtime_error_exits_1_naming_the_node(tmp_path, capsys):
    g = Graph()
    g.node("LG_FloatMath", id="2", a=g.node("LG_FloatMath", id="1", a=1.0, b=0.0, op="div"), b=1.0)
    graph = g.build()
    code = run_cli("run", write(tmp_path, graph), "--target", "2", "--data-dir", str(tmp_path), "--json")
    assert code == 1
    out = json.loads(capsys.readouterr().out)
    assert out["node_id"] == "1" and out["class_type"] == "LG_FloatMath"
    assert "input 'b': division by zero" in out["error"]


@pytest.mark.parametrize("content", [b"not json", b"[1, 2]", b"\x89PNG\r\n\x1a\ngarbage", b'"text"'])
def test_validate_rejects_files_that_are_not_workflows(tmp_path, content):
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    assert run_cli("validate", str(path)) == 2


def test_bad_override_exits_2(tmp_path):
    assert run_cli("run", write(tmp_path, image_graph()), "--set", "nope") == 2
    assert run_cli("run", write(tmp_path, image_graph()), "--set", "9.value=1") == 2


def test_convert_and_nodes(tmp_path, capsys):
    ui = api_to_ui(image_graph(), default_registry())
    out = tmp_path / "api.json"
    assert run_cli("convert", write(tmp_path, ui, "ui.json"), "-o", str(out)) == 0
    assert json.loads(out.read_text())["2"]["class_type"] == "LG_SaveImage"
    assert run_cli("nodes", "--json") == 0
    info = json.loads(capsys.readouterr().out)
    assert info["LG_SaveImage"]["output_node"] is True


def test_shipped_core_graph_runs(tmp_path):
    assert run_cli("run", str(GRAPHS / "core_demo.json"), "--data-dir", str(tmp_path)) == 0
    assert list((tmp_path / "output").glob("core_demo_*.png"))


def test_load_image_stays_inside_input_folder(tmp_path, capsys):
    (tmp_path / "input").mkdir()
    Image.new("RGBA", (4, 4), (255, 0, 0, 128)).save(tmp_path / "input" / "red.png")
    graph = load_image_graph("red.png")
    assert run_cli("run", write(tmp_path, graph), "--data-dir", str(tmp_path)) == 0
    capsys.readouterr()
    (tmp_path / "output").mkdir(exist_ok=True)
    Image.new("RGB", (4, 4), (0, 0, 255)).save(tmp_path / "output" / "blue.png")
    graph["1"]["inputs"]["image"] = "blue.png [output]"  # ComfyUI's annotated names
    assert run_cli("run", write(tmp_path, graph), "--data-dir", str(tmp_path)) == 0
    capsys.readouterr()
    for bad in ("../wf.json", "/etc/passwd", "..%2fwf.json", "sub\\..\\x.png", "../input/red.png [output]"):
        graph["1"]["inputs"]["image"] = bad
        assert run_cli("run", write(tmp_path, graph), "--data-dir", str(tmp_path), "--json") == 1
        assert "input 'image'" in json.loads(capsys.readouterr().out)["error"]


def test_load_image_with_a_linked_name(tmp_path):
    (tmp_path / "input").mkdir()
    Image.new("RGB", (4, 4), (9, 9, 9)).save(tmp_path / "input" / "grey.png")
    g = Graph()
    name = g.node("LG_String", id="0", value="grey.png")
    g.node("LG_SaveImage", id="2", images=g.node("LG_LoadImage", id="1", image=name))
    graph = g.build()
    assert run_cli("run", write(tmp_path, graph), "--data-dir", str(tmp_path)) == 0


def test_set_keeps_text_inputs_as_typed(tmp_path):
    graph = image_graph()
    assert run_cli("run", write(tmp_path, graph), "--data-dir", str(tmp_path), "--set", "2.filename_prefix=123",
                   "--set", "1.width=8") == 0
    assert (tmp_path / "output" / "123_00001_.png").is_file()


# --- models search list -------------------------------------------------------------------------

def test_a_shipped_graph_runs_from_any_directory(tmp_path, monkeypatch):
    """The shipped weights come from the package's own models folder, wherever the CLI runs."""
    monkeypatch.chdir(tmp_path)
    assert run_cli("run", str(GRAPHS / "shapes_sd.json"), "--device", "cpu", "--set", "5.steps=2") == 0
    assert (tmp_path / "output" / "shapes_sd_00001_.png").is_file()


def vqvae_graph(path: str) -> dict:
    return one_node("LG_LoadVQVAE", path=path, patch_nums="1,2,3,4,6,8")


def test_models_dir_is_searched_first_and_a_missing_model_names_the_search(tmp_path, capsys):
    from latentgraph.executor.context import PACKAGE_MODELS

    mine = tmp_path / "mine"
    (mine / "copy").mkdir(parents=True)
    (mine / "copy" / "vq.safetensors").symlink_to(PACKAGE_MODELS / "shapes_var" / "vqvae.safetensors")
    args = ("--data-dir", str(tmp_path), "--models-dir", str(mine), "--target", "1", "--device", "cpu")
    assert run_cli("run", write(tmp_path, vqvae_graph("copy/vq.safetensors")), *args) == 0
    assert run_cli("run", write(tmp_path, vqvae_graph("shapes_var/vqvae.safetensors")), *args) == 0
    capsys.readouterr()
    assert run_cli("run", write(tmp_path, vqvae_graph("elsewhere/vq.safetensors")), *args) == 1
    err = capsys.readouterr().err
    assert str(mine) in err and str(PACKAGE_MODELS) in err and "--models-dir" in err
    assert str(tmp_path / "models") not in err  # --models-dir replaces DATA_DIR/models


# --- nodes NAME ---------------------------------------------------------------------------------

def test_nodes_name_shows_one_node(capsys):
    assert run_cli("nodes", "LG_Sampler") == 0
    out = capsys.readouterr().out
    spec = default_registry()["LG_Sampler"].spec
    assert out.startswith("LG_Sampler (Sampler)") and f"category: {spec.category}" in out
    assert spec.description.split()[0] in out
    assert "steps     INT, default 20, 1..1000" in out
    assert "guidance scale; <= 1 turns guidance off" in out  # a tooltip
    assert "ddpm | ddim | euler" in out and "positive  TEXT_EMBEDS, optional" in out
    assert out.split("outputs:")[1].split() == ["latent", "LATENT"]


def test_nodes_name_json_is_its_object_info_entry(capsys):
    from latentgraph.executor.schema import object_info

    assert run_cli("nodes", "LG_Int", "--json") == 0
    assert json.loads(capsys.readouterr().out) == {"LG_Int": json.loads(json.dumps(
        object_info(default_registry()["LG_Int"].spec)))}


def test_nodes_unknown_name_exits_2_with_close_matches(capsys):
    assert run_cli("nodes", "LG_Samplr") == 2
    err = capsys.readouterr().err
    assert "no node 'LG_Samplr'" in err and "did you mean LG_Sampler" in err
    assert run_cli("nodes", "lg_sampler", "--json") == 2
    assert json.loads(capsys.readouterr().out)["close_matches"][0] == "LG_Sampler"
    assert run_cli("nodes", "qqqqqqqq") == 2
    assert "`latentgraph nodes` lists them" in capsys.readouterr().err
    assert run_cli("nodes") == 0
    assert len(capsys.readouterr().out.splitlines()) == len(default_registry())


# --- the progress bar ---------------------------------------------------------------------------

def test_progress_total_grows_with_expansions_and_ends_at_the_count():
    from latentgraph.cli import _Progress
    from latentgraph.executor import Event

    bar = _Progress(3, enabled=True, file=io.StringIO())
    seen = []
    for event in [Event("execution_start", {}), Event("executing", {"node": "1"}),
                  Event("executing", {"node": "2"}), Event("executing", {"node": "2.a"}),
                  Event("progress", {"node": "2", "value": 1, "max": 3}),
                  Event("execution_cached", {"nodes": ["2.b", "2.c"]}), Event("executing", {"node": "2.d"}),
                  Event("executing", {"node": "3"}), Event("executing", {"node": None}),
                  Event("execution_success", {})]:
        bar(event)
        seen.append((bar.graph.n, bar.graph.total))
    bar.close()
    assert seen[3] == (3, 4)  # the first step node: the total grew
    assert seen[-1] == (7, 7)  # 1, 2, 2.a-2.d and 3, as the summary counts them


def test_progress_bar_ends_where_the_summary_does(tmp_path):
    from latentgraph import Executor
    from latentgraph.cli import _Progress
    from latentgraph.executor import Folders

    graph = load_workflow(GRAPHS / "ddpm_vs_ddim.json").nodes
    for call in graph.values():
        if call["class_type"] == "LG_Sampler":
            call["inputs"]["steps"] = 3
    executor = Executor(device="cpu", folders=Folders.under(tmp_path))
    counts = []
    for _ in range(2):  # a cold run (the samplers expand), then one from the cache
        bar = _Progress(len(graph), enabled=True, file=io.StringIO())
        result = executor.run(graph, on_event=bar)
        assert bar.graph.n == bar.graph.total == len(result.executed) + len(result.cached)
        counts.append(bar.graph.n)
        bar.close()
    assert counts[0] > len(graph) and result.cached
