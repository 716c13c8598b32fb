"""The command line's cluster flags reach the server's settings; a bad worker count is refused
by the parser, before anything starts."""

from __future__ import annotations

import latentgraph.web as web
from latentgraph.cli import build_parser, main


def test_serve_ray_flags_reach_the_config(monkeypatch, tmp_path):
    seen = {}
    monkeypatch.setattr(web, "serve", lambda config: seen.setdefault("config", config))
    assert main(["serve", "--ray", "10.0.0.5:6379", "--ray-workers", "3", "--data-dir", str(tmp_path)]) == 0
    config = seen["config"]
    assert (config.ray_address, config.ray_workers) == ("10.0.0.5:6379", 3)
    plain = build_parser().parse_args(["serve"])
    assert plain.ray is None and plain.ray_workers is None


def test_a_worker_count_below_one_is_refused(capsys):
    for argv in (["batch", "w.json", "--ray", "auto", "--workers", "0"], ["serve", "--ray-workers", "x"]):
        try:
            build_parser().parse_args(argv)
        except SystemExit as stop:
            assert stop.code == 2
        else:
            raise AssertionError(f"{argv} was accepted")
        assert "expected a whole number of workers, at least 1" in capsys.readouterr().err
    args = build_parser().parse_args(["batch", "w.json", "--ray", "auto", "--workers", "2"])
    assert (args.ray, args.workers, args.sweep) == ("auto", 2, None)
