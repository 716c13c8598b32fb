"""Package discovery for a repository whose root *is* the package ``latentgraph``.

Every folder below the root that holds an ``__init__.py`` becomes ``latentgraph.<folder>``;
pyproject.toml carries all other metadata.
"""

import os

from setuptools import setup

SKIP = {"tests", "bench", "build", "dist", "node_modules", "training_runs"}


def find_packages() -> list[str]:
    found = ["latentgraph"]
    for root, dirs, files in os.walk("."):
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "_")) and d not in SKIP)
        if root != "." and "__init__.py" in files:
            found.append("latentgraph." + os.path.relpath(root).replace(os.sep, "."))
    return found


setup(
    packages=find_packages(),
    package_dir={"latentgraph": "."},
    package_data={
        "": ["*.json", "*.js", "*.css", "*.html", "*.safetensors", "*.txt", "*.gz", "*.model"],
        # Folders without an __init__.py that an installed (non-editable) package still needs:
        # the shipped weights its default graphs read, the graphs, and their input pictures.
        "latentgraph": ["models/README.md", "models/shapes_*/**/*", "graphs/*", "input/*.png"],
    },
    include_package_data=True,
)
