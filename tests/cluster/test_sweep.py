"""``--sweep`` parsing: the three value forms, the product of several sweeps, and the errors
that name the flag and what was expected."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from latentgraph.cli import main
from latentgraph.cluster.sweep import SweepError, count, parse_sweep, prompts
from PIL import Image

GRAPH = Path(__file__).resolve().parents[2] / "graphs" / "shapes_sd.json"
NODES = json.loads(GRAPH.read_text())
INPUTS = {"LG_Sampler": ["seed", "steps", "cfg"], "LG_TextEncode": ["encoder", "text"]}


def parse(text: str, base: Path | None = None):
    return parse_sweep(text, NODES, INPUTS.get, base=base)


def test_range_file_and_list(tmp_path):
    assert parse("5.seed=1..4").values == (1, 2, 3, 4)
    assert parse("5.seed=-1..1").values == (-1, 0, 1)
    (tmp_path / "p.txt").write_text("a red circle\n\n  \na blue cross\n")
    sweep = parse("2.text=@p.txt", base=tmp_path)
    assert (sweep.node_id, sweep.input, sweep.values) == ("2", "text", ("a red circle", "a blue cross"))
    assert parse("5.cfg=[3.5, 4, 7.5]").values == (3.5, 4, 7.5)


def test_the_product_is_nested_loops_first_flag_outermost(tmp_path):
    sweeps = [parse("2.text=[\"a\", \"b\"]"), parse("5.seed=1..3")]
    assert count(sweeps) == 6
    made = [(p["2"]["inputs"]["text"], p["5"]["inputs"]["seed"]) for p in prompts(NODES, sweeps)]
    assert made == [("a", 1), ("a", 2), ("a", 3), ("b", 1), ("b", 2), ("b", 3)]
    assert NODES["5"]["inputs"]["seed"] == 0  # the workflow itself is left alone


@pytest.mark.parametrize(("flag", "expected"), [
    ("5.seed", "expected NODE_ID.INPUT=VALUES"),
    ("seed=1..3", "expected NODE_ID.INPUT=VALUES"),
    ("9.seed=1..3", "there is no node '9'"),
    ("5.sed=1..3", "node 5 (LG_Sampler) has no input 'sed'; its inputs are seed, steps, cfg"),
    ("5.seed=3..1", "the range 3..1 is empty (expected A <= B)"),
    ("5.seed=1..x", "expected A..B (integers, A <= B), @FILE or a JSON list"),
    ("5.seed=1.5..3", "expected A..B"),
    ("5.seed=[1, 2", "not a JSON list"),
    ("5.seed=[]", "no values to sweep"),
    ("2.text=@missing.txt", "cannot read 'missing.txt': No such file or directory"),
])
def test_bad_flags_name_the_flag_and_what_was_expected(flag, expected, tmp_path):
    with pytest.raises(SweepError) as caught:
        parse(flag, base=tmp_path)
    assert f"--sweep {flag!r}" in str(caught.value)
    assert expected in str(caught.value)


def test_unreadable_and_empty_files(tmp_path):
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(SweepError, match="expected a UTF-8 text file"):
        parse("2.text=@bin.txt", base=tmp_path)
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(SweepError, match="no values"):
        parse("2.text=@empty.txt", base=tmp_path)


def test_batch_command_refuses_a_bad_sweep_and_an_invalid_value(tmp_path, capsys):
    assert main(["batch", str(GRAPH), "--sweep", "5.sed=1..2", "--data-dir", str(tmp_path)]) == 2
    assert "--sweep '5.sed=1..2': node 5 (LG_Sampler) has no input 'sed'" in capsys.readouterr().err
    assert main(["batch", str(GRAPH), "--sweep", "5.steps=[2, 0]", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "prompt 2 of 2 (5.steps=0)" in err and "input 'steps'" in err
    assert not (tmp_path / "output").exists()  # nothing ran


def test_batch_command_runs_locally(tmp_path, capsys):
    demo = GRAPH.parent / "core_demo.json"
    code = main(["batch", str(demo), "--sweep", "1.value=[8, 16]", "--sweep", "3.color=[255, 65280]",
                 "--data-dir", str(tmp_path), "--device", "cpu"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "ran 4 prompt(s), 0 failed" in out
    written = sorted((tmp_path / "output").iterdir())
    assert [p.name for p in written] == [f"core_demo_0000{i}_.png" for i in range(1, 5)]
    sizes = [Image.open(p).size for p in written]
    assert sizes == [(16, 8), (16, 8), (32, 16), (32, 16)]  # the first sweep outermost
    assert Image.open(written[1]).getpixel((0, 0)) == (0, 255, 0)
