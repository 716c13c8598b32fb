"""What the SD and SANA trainer tests share: the smoke recipe, reading a checkpoint, and the
stop / resume / finish check that a resumed run ends bit for bit where a straight one does."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

SMOKE = ["--vae-steps", "3", "--steps", "3", "--batch", "8", "--pool", "48"]
SMOKE += ["--eval-samples", "2", "--eval-steps", "2", "--log-every", "1", "--ckpt-every", "100"]


def load_state(out: Path) -> dict:
    return torch.load(Path(f"{out}.ckpt") / "state.pt", map_location="cpu", weights_only=True)


def assert_resumes_bit_exact(main: Callable[[list[str]], Path | None], trained: Path, out: Path,
                             final_stage: str, parts: tuple[str, ...]) -> None:
    """Stop inside the autoencoder stage, then across the switch to ``final_stage``, then finish:
    every module in ``parts``, the random stream and the latent scale equal the straight run's."""
    assert main(["--out", str(out), *SMOKE, "--stop-after", "2"]) is None
    assert load_state(out)["stage"] == "vae"
    assert main(["--out", str(out), *SMOKE, "--stop-after", "2"]) is None
    assert (load_state(out)["stage"], load_state(out)["step"]) == (final_stage, 1)
    assert (out / "model_index.json").is_file()  # the export is rewritten at every checkpoint
    assert main(["--out", str(out), *SMOKE]) == out
    straight, resumed = load_state(trained), load_state(out)
    for part in parts:
        for name, tensor in straight[part].items():
            assert torch.equal(tensor, resumed[part][name]), f"{part}.{name}"
    assert torch.equal(straight["gen"], resumed["gen"])
    assert straight["scaling_factor"] == resumed["scaling_factor"]
