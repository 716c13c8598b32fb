"""The shipped SANA graphs run unchanged on the tiny model and save their PNGs."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("name", ["sana_txt2img", "sana_stepwise"])
def test_shipped_graph_runs(name, sana_root, sana_executor, sana_graph):
    result = sana_executor.run(sana_graph(name))
    (ui,) = result.ui.values()
    (saved,) = ui["images"]
    assert saved["filename"].startswith(name) and (sana_root.output / saved["filename"]).is_file()
