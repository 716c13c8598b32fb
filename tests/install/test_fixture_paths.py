"""Where the golden-fixture tests look: beside the repository, or where an environment variable
points."""

from __future__ import annotations

from pathlib import Path

from fixture_paths import REPO, var_fixtures


def test_by_default_beside_the_repository():
    assert REPO == Path(__file__).resolve().parents[2]  # the parent of tests/
    assert var_fixtures({}) == REPO.parent / "shared" / "fixtures" / "var"


def test_latentgraph_fixtures_names_the_folder_holding_var(tmp_path):
    env = {"LATENTGRAPH_FIXTURES": str(tmp_path), "LATENTGRAPH_SHARED": "/elsewhere"}
    assert var_fixtures(env) == tmp_path / "var"  # it wins over LATENTGRAPH_SHARED


def test_latentgraph_shared_names_a_shared_folder(tmp_path):
    assert var_fixtures({"LATENTGRAPH_SHARED": str(tmp_path)}) == tmp_path / "fixtures" / "var"
