"""The shipped SD graphs run unchanged on the tiny model and save their PNGs."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("name", ["sd_txt2img", "sd_img2img"])
def test_shipped_graph_runs(name, sd_root, sd_executor, sd_graph):
    result = sd_executor.run(sd_graph(name))
    (ui,) = result.ui.values()
    (saved,) = ui["images"]
    assert saved["filename"].startswith(name) and (sd_root.output / saved["filename"]).is_file()
