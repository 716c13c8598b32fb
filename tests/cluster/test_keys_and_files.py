"""Routing keys (what prompts share, without any machine's file facts) and the placing of the
files a worker sent into this side's folders."""

from __future__ import annotations

import copy
import json
from pathlib import Path

from latentgraph.cluster.files import OutputPlacer
from latentgraph.cluster.keys import routing_keys
from latentgraph.executor import Folders

NODES = json.loads((Path(__file__).resolve().parents[2] / "graphs" / "shapes_sd.json").read_text())


def test_prompts_share_the_keys_of_what_they_share():
    other = copy.deepcopy(NODES)
    other["5"]["inputs"]["seed"] = 7
    a, b = routing_keys(NODES), routing_keys(other)
    assert [n for n in a if a[n] == b[n]] == ["1", "2", "3", "4"]  # loader, both texts, latent
    assert a["5"] != b["5"] and a["6"] != b["6"] and a["7"] != b["7"]  # downstream of the seed
    assert routing_keys(copy.deepcopy(NODES)) == a  # the same prompt, the same keys


def test_malformed_prompts_still_get_keys():
    keys = routing_keys({"1": {"class_type": "X", "inputs": {"a": ["9", 0]}},
                         "2": {"class_type": "Y", "inputs": {"b": ["3", 0]}},
                         "3": {"class_type": "Y", "inputs": {"b": ["2", 0]}}, "4": "junk"})
    assert set(keys) == {"1", "2", "3"}


def folders(tmp_path: Path) -> Folders:
    f = Folders.under(tmp_path)
    f.output.mkdir(parents=True)
    return f


def image(name: str, kind: str = "output", sub: str = "") -> dict:
    return {"filename": name, "subfolder": sub, "type": kind}


def test_files_take_the_next_free_counter_of_their_prefix(tmp_path):
    f = folders(tmp_path)
    (f.output / "shapes_sd_00001_.png").write_bytes(b"here before")
    placer = OutputPlacer(f)
    key = ("output", "", "shapes_sd_00001_.png")
    first = placer.place("w1", {"images": [image(key[2])]}, {key: b"one"})
    second = placer.place("w2", {"images": [image(key[2])]}, {key: b"two"})
    assert first == {"images": [image("shapes_sd_00002_.png")]}
    assert second == {"images": [image("shapes_sd_00003_.png")]}
    assert (f.output / "shapes_sd_00002_.png").read_bytes() == b"one"
    # w1 names its file again (a cached re-run) without its bytes: the same file, nothing written
    again = placer.place("w1", {"images": [image(key[2])], "text": ["kept"]}, {key: None})
    assert again == {"images": [image("shapes_sd_00002_.png")], "text": ["kept"]}
    assert len(list(f.output.iterdir())) == 3


def test_subfolders_temp_files_and_other_names(tmp_path):
    f = folders(tmp_path)
    placer = OutputPlacer(f)
    sub = ("output", "runs/a", "x_00001_.png")
    tmp = ("temp", "", "preview_00001_.png")
    plain = ("output", "", "grid.png")
    (f.output / "grid.png").write_bytes(b"old")
    ui = {"images": [image(sub[2], sub=sub[1]), image(tmp[2], "temp"), image(plain[2])]}
    placed = placer.place("w", ui, {sub: b"s", tmp: b"t", plain: b"p"})["images"]
    assert placed == [image("x_00001_.png", sub="runs/a"), image("preview_00001_.png", "temp"),
                      image("grid (1).png")]
    assert (f.temp / "preview_00001_.png").read_bytes() == b"t"
    assert (f.output / "runs" / "a" / "x_00001_.png").read_bytes() == b"s"
