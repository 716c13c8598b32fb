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
PRODUCT = ("executor", "nodes", "web", "__init__.py", "__main__.py", "api.py", "cli.py", "comfy_plugin.py")
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


def _imported_modules() -> dict[str, str]:
    """Top-level modules that product code imports by absolute name -> one file importing it."""
    files = [p for entry in PRODUCT for p in ((REPO / entry).rglob("*.py") if (REPO / entry).is_dir()
                                              else [REPO / entry])]
    found: dict[str, str] = {}
    for file in files:
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else [])
            for name in names:
                found.setdefault(name.split(".")[0], str(file.relative_to(REPO)))
    return {m: f for m, f in found.items() if m not in sys.stdlib_module_names and m != "latentgraph"}


def test_every_library_the_product_imports_is_declared(project):
    declared = {name_of(r) for r in project["dependencies"]}
    declared |= {name_of(r) for r in project["optional-dependencies"]["editor"]}
    allowed = set(declared)
    for dist in declared:  # a library's own dependencies (pydantic_core, yarl) come with it
        try:
            allowed |= {name_of(r) for r in requires(dist) or [] if "extra ==" not in r}
        except PackageNotFoundError:
            pass
    owners = packages_distributions()
    missing = []
    for module, file in sorted(_imported_modules().items()):
        if module in HOST_MODULES:
            continue
        dists = {name_of(d) for d in owners.get(module, [module])}
        if not dists & allowed:
            missing.append(f"{module} ({file})")
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"


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
