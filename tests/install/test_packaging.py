"""What the package declares: every library the product imports is a dependency, the editor's
frontend is an optional extra, and requirements.txt (read by ComfyUI's installers) is the same
list without torch."""

from __future__ import annotations

import ast
import re
import sys
from importlib.metadata import PackageNotFoundError, packages_distributions, requires
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+; the checks below need no newer

REPO = Path(__file__).resolve().parents[2]
PRODUCT = ("executor", "nodes", "web", "cluster", "__init__.py", "__main__.py", "api.py", "cli.py", "comfy_plugin.py")
# Imported only inside ComfyUI, which provides them (behind ImportError guards).
HOST_MODULES = {"comfy", "folder_paths"}
FRONTEND = "comfyui-frontend-package"


def name_of(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


@pytest.fixture(scope="module")
def project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def requirements_txt() -> list[str]:
    lines = (REPO / "requirements.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def test_model_libraries_are_runtime_dependencies(project):
    runtime = {name_of(r) for r in project["dependencies"]}
    assert {"diffusers", "transformers", "tokenizers", "torch"} <= runtime
    test_extra = {name_of(r) for r in project["optional-dependencies"]["test"]}
    assert not test_extra & runtime


def test_torch_has_no_upper_bound(project):
    (torch,) = [r for r in project["dependencies"] if name_of(r) == "torch"]
    assert "<" not in torch and "==" not in torch


def test_the_frontend_is_the_editor_extra_only(project):
    assert FRONTEND not in {name_of(r) for r in project["dependencies"]}
    (pin,) = project["optional-dependencies"]["editor"]
    assert re.fullmatch(re.escape(FRONTEND) + r"==\d+\.\d+\.\d+", pin)
    assert '".[test,editor]"' in (REPO / "install.sh").read_text()


def test_requirements_txt_is_the_dependencies_less_torch(project):
    expected = [r for r in project["dependencies"] if name_of(r) != "torch"]
    assert requirements_txt() == expected
    assert FRONTEND not in {name_of(r) for r in requirements_txt()}


def _product_imports() -> list[tuple[str, str, bool]]:
    """(top-level module, file, whether at module level) for every absolute import of product
    code."""
    files = [p for entry in PRODUCT for p in ((REPO / entry).rglob("*.py") if (REPO / entry).is_dir()
                                              else [REPO / entry])]
    found = []
    for file in files:
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else [])
            for name in names:
                found.append((name.split(".")[0], str(file.relative_to(REPO)), node.col_offset == 0))
    return [f for f in found if f[0] not in sys.stdlib_module_names and f[0] != "latentgraph"]


def _imported_modules() -> dict[str, str]:
    """Top-level modules that product code imports by absolute name -> one file importing it."""
    found: dict[str, str] = {}
    for module, file, _ in _product_imports():
        found.setdefault(module, file)
    return found


def _with_dependencies(dists: set[str]) -> set[str]:
    """``dists`` and their own dependencies (pydantic_core, yarl come with their library)."""
    allowed = set(dists)
    for dist in dists:
        try:
            allowed |= {name_of(r) for r in requires(dist) or [] if "extra ==" not in r}
        except PackageNotFoundError:
            pass
    return allowed


def _product_extras(project: dict) -> set[str]:
    """The libraries of the optional features (editor, ray, gguf): every extra but the tests'."""
    extras = project["optional-dependencies"]
    return {name_of(r) for name, reqs in extras.items() if name != "test" for r in reqs}


def test_every_library_the_product_imports_is_declared(project):
    allowed = _with_dependencies({name_of(r) for r in project["dependencies"]} | _product_extras(project))
    owners = packages_distributions()
    missing = []
    for module, file in sorted(_imported_modules().items()):
        if module in HOST_MODULES:
            continue
        dists = {name_of(d) for d in owners.get(module, [module])}
        if not dists & allowed:
            missing.append(f"{module} ({file})")
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"


def test_optional_libraries_are_imported_only_where_their_feature_runs(project):
    """A library of an optional extra (ray, gguf) is imported inside the function that needs it,
    so the node pack, the server and the CLI import without it."""
    runtime = _with_dependencies({name_of(r) for r in project["dependencies"]})
    optional = _product_extras(project) - runtime - {FRONTEND}
    owners = packages_distributions()
    eager = [f"{module} ({file})" for module, file, top in _product_imports()
             if top and {name_of(d) for d in owners.get(module, [module])} & optional]
    assert not eager, f"optional libraries imported at module level: {eager}"


def test_transformers_has_what_the_loaders_use():
    """The declared floor (transformers 5): initialisation switched off, CLIP's tokenizer built
    from an in-memory vocabulary."""
    from latentgraph.nodes.ldm.clip import bundled_tokenizer
    from transformers.initialization import no_init_weights  # noqa: F401

    assert bundled_tokenizer()("a red circle").input_ids[:2] == [49406, 320]


def test_transformers_4_is_named_when_a_model_is_built(monkeypatch):
    from latentgraph.nodes.common.models import build_empty

    monkeypatch.setitem(sys.modules, "transformers.initialization", None)  # as on transformers 4.x
    with pytest.raises(RuntimeError, match=r"needs transformers 5 or newer.*pip install 'transformers>=5'"):
        build_empty(lambda: None)
