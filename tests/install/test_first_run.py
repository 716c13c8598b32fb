"""A first run from the repository root: the pictures the shipped graphs read are there and found
by the default input folder, and `run` / `serve` write only what the repository ignores."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from graph_helpers import Graph
from latentgraph import Executor
from latentgraph.executor import Folders
from latentgraph.training import example_inputs
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
GRAPHS = REPO / "graphs"
INPUT = REPO / "input"  # the CLI's and the server's default input folder, run from the root
SHAPES_VAR = ["--set", "1.path=shapes_var/vqvae.safetensors", "--set", "1.patch_nums=1,2,3,4,6,8",
              "--set", "2.path=shapes_var/var.safetensors", "--set", "4.top_k=0", "--set", "4.top_p=0"]


def git(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    inside = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--show-toplevel"], capture_output=True,
                            text=True)
    if inside.returncode != 0 or Path(inside.stdout.strip()).resolve() != REPO.resolve():
        pytest.skip("the repository is not a git work tree here")
    return subprocess.run(["git", "-C", str(REPO), *args], input=stdin, capture_output=True, text=True)


def ignored(paths: list[str]) -> set[str]:
    """Those of ``paths`` (relative to the repository root) that .gitignore keeps out."""
    result = git("check-ignore", "--no-index", "--stdin", stdin="\n".join(paths) + "\n")
    assert result.returncode in (0, 1), result.stderr
    return set(result.stdout.split())


def images_read_by_graphs() -> dict[str, str]:
    """Picture name -> graph, for every LG_LoadImage literal in graphs/."""
    found = {}
    for path in sorted(GRAPHS.glob("*.json")):
        for call in json.loads(path.read_text()).values():
            if isinstance(call, dict) and call.get("class_type") == "LG_LoadImage":
                found[call["inputs"]["image"]] = path.name
    return found


def test_the_shipped_graphs_pictures_are_in_the_input_folder():
    wanted = images_read_by_graphs()
    assert {"example.png", "var_inpaint_source.png"} <= set(wanted)
    for name, graph in wanted.items():
        assert (INPUT / name).is_file(), f"{graph} reads input/{name}"
    # Tracked, although the rest of input/ (uploads) is ignored.
    shipped = [f"input/{name}" for name in wanted]
    assert not ignored(shipped)
    assert ignored(["input/an_upload.png", "input/sub/x.png"]) == {"input/an_upload.png", "input/sub/x.png"}


def test_load_image_finds_the_shipped_pictures(tmp_path):
    folders = Folders(input=INPUT, output=tmp_path / "output", temp=tmp_path / "temp", models=tmp_path)
    g = Graph()
    g.node("LG_LoadImage", id="img2img", image="example.png")
    g.node("LG_LoadImage", id="inpaint", image="var_inpaint_source.png")
    outputs = Executor(device="cpu", folders=folders).run(g.build(), targets=["img2img", "inpaint"]).outputs

    image, mask = outputs["img2img"]
    assert image.shape == (1, 512, 512, 3) and not mask.any()  # SD 1.5's size, opaque
    assert image.shape[1] % 8 == 0 and image.shape[2] % 8 == 0  # the SD-VAE's factor
    image, mask = outputs["inpaint"]
    assert image.shape == (1, 64, 64, 3)  # 64-pixel VAR weights
    assert np.array_equal(mask[0].numpy() > 0.5, example_inputs.inpaint_hole())  # the hole is the mask


def test_the_script_draws_the_shipped_pictures_again(tmp_path):
    for path in example_inputs.write(tmp_path):
        ours = np.asarray(Image.open(path), dtype=np.int16)
        shipped = np.asarray(Image.open(INPUT / path.name), dtype=np.int16)
        assert ours.shape == shipped.shape
        # Equal but for a few antialiased edge pixels, should another Pillow round differently.
        assert np.mean(np.abs(ours - shipped)) < 0.5, path.name


def test_var_inpaint_runs_from_the_repository_root(tmp_path, monkeypatch):
    """The graph finds input/var_inpaint_source.png by default; the shipped VAR draws the hole."""
    from latentgraph.cli import main

    monkeypatch.chdir(REPO)
    assert main(["run", "graphs/var_inpaint.json", *SHAPES_VAR, "--output-dir", str(tmp_path)]) == 0
    (saved,) = tmp_path.glob("var_inpaint_*.png")
    source = np.asarray(Image.open(INPUT / "var_inpaint_source.png").convert("RGB"), dtype=np.float32)
    result = np.asarray(Image.open(saved).convert("RGB"), dtype=np.float32)
    keep = ~example_inputs.inpaint_hole()
    assert result.shape == source.shape
    assert np.abs(result - source)[keep].mean() < 40  # outside the hole: the source, re-decoded


def _written(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) + ("/" if p.is_dir() else "") for p in root.rglob("*"))


def test_run_writes_only_ignored_paths(tmp_path):
    from latentgraph.cli import main

    data = tmp_path / "data"
    data.mkdir()
    assert main(["run", str(GRAPHS / "core_demo.json"), "--data-dir", str(data)]) == 0
    written = [p for p in _written(data) if not p.endswith("/")]
    assert written and ignored(written) == set(written)


@pytest.mark.asyncio
async def test_serve_writes_only_ignored_paths(tmp_path, aiohttp_client):
    from latentgraph.web import ServerConfig, create_app

    data = tmp_path / "data"
    client = await aiohttp_client(create_app(ServerConfig(data_dir=data, device="cpu")))
    form = {"image": (INPUT / "example.png").open("rb")}
    assert (await client.post("/upload/image", data=form)).status == 200
    assert (await client.post("/api/settings/Comfy.TestSetting", json=1)).status == 200
    assert (await client.post("/api/userdata/workflows%2Fmine.json?overwrite=true", data=b"{}")).status == 200
    written = [p for p in _written(data) if not p.endswith("/")]
    await client.close()
    written = sorted({*written, *(p for p in _written(data) if not p.endswith("/"))})
    assert {"latentgraph.sqlite3", "input/example.png"} <= set(written)
    # input/example.png is an upload here, so it is named in the index; everything else is ignored.
    assert ignored([p for p in written if p != "input/example.png"]) == set(written) - {"input/example.png"}
