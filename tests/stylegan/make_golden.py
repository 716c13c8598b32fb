"""Golden data for the StyleGAN2 parity tests, made by the official stylegan2-ada-pytorch code.

    python tests/stylegan/make_golden.py --official PATH/TO/stylegan2-ada-pytorch \
        --out tests/stylegan/golden [--pickle-out DIR]

For two tiny generators (32 px, class-conditional with 24 classes, and unconditional) built from
seeded random weights by the official ``training.networks.Generator`` (every parameter and
buffer but the resample filters redrawn, so the biases, noise strengths and ``w_avg`` are not
their zero initial values), it writes:

- ``{name}_weights.safetensors``: ``G_ema.state_dict()``, the official key layout;
- ``{name}_kwargs.json``: the init arguments the official pickle records for ``G_ema``;
- ``{name}_cases.safetensors``: z, c, the untruncated ws, and the images of
  ``G(z, c, truncation_psi, truncation_cutoff, noise_mode='const')`` for psi 1, 0.7 and 0.5
  (cutoff None) and psi 0.5 with cutoff 4, plus one style mix (rows from ``MIX_CROSSOVER`` on
  taken from a second z's ws, as the official style_mixing.py does with its column styles).

With ``--pickle-out`` it also writes the real network pickle (``pickle.dump`` of
``{"G": G, "D": D, "G_ema": G}``, as the official training loop saves snapshots) there; such a
pickle carries the official module source as text, so it is not committed. The custom CUDA ops
of the official code fall back to their reference implementations on the CPU.
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

CASES = {"psi1.0": (1.0, None), "psi0.7": (0.7, None), "psi0.5": (0.5, None),
         "psi0.5_cutoff4": (0.5, 4)}
MIX_CROSSOVER = 3
BATCH = 2

GENERATORS = {
    "conditional": dict(z_dim=16, c_dim=24, w_dim=32, img_resolution=32, img_channels=3,
                        mapping_kwargs=dict(num_layers=2),
                        synthesis_kwargs=dict(channel_base=256, channel_max=32)),
    "unconditional": dict(z_dim=16, c_dim=0, w_dim=24, img_resolution=16, img_channels=3,
                          mapping_kwargs=dict(num_layers=3),
                          synthesis_kwargs=dict(channel_base=128, channel_max=16)),
}


def randomise(module: torch.nn.Module, gen: torch.Generator) -> None:
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if name.endswith("resample_filter"):
                continue
            tensor.copy_(torch.randn(tensor.shape, generator=gen) * 0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", type=Path, required=True, help="stylegan2-ada-pytorch checkout")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--pickle-out", type=Path, default=None)
    args = parser.parse_args()
    sys.path.insert(0, str(args.official.resolve()))
    from training.networks import Discriminator, Generator  # the official code

    args.out.mkdir(parents=True, exist_ok=True)
    for index, (name, kwargs) in enumerate(GENERATORS.items()):
        torch.manual_seed(index)
        G = Generator(**kwargs).eval()  # noqa: N806 - the official names
        randomise(G, torch.Generator().manual_seed(100 + index))
        gen = torch.Generator().manual_seed(200 + index)
        z = torch.randn(BATCH, G.z_dim, generator=gen)
        z_mix = torch.randn(BATCH, G.z_dim, generator=gen)
        c = torch.zeros(BATCH, G.c_dim)
        if G.c_dim:
            c[torch.arange(BATCH), torch.tensor([3, 17])] = 1
        out = {"z": z, "z_mix": z_mix, "c": c}
        with torch.no_grad():
            out["ws"] = G.mapping(z, c)
            for case, (psi, cutoff) in CASES.items():
                out[f"ws_{case}"] = G.mapping(z, c, truncation_psi=psi, truncation_cutoff=cutoff)
                out[f"image_{case}"] = G(z, c, truncation_psi=psi, truncation_cutoff=cutoff,
                                         noise_mode="const")
            ws_mix = G.mapping(z_mix, c)
            mixed = out["ws"].clone()
            mixed[:, MIX_CROSSOVER:] = ws_mix[:, MIX_CROSSOVER:]
            out["image_mix"] = G.synthesis(mixed, noise_mode="const")
        save_file({k: v.contiguous() for k, v in out.items()}, args.out / f"{name}_cases.safetensors")
        save_file({k: v.contiguous() for k, v in G.state_dict().items()},
                  args.out / f"{name}_weights.safetensors")
        (args.out / f"{name}_kwargs.json").write_text(json.dumps(G._init_kwargs, indent=1) + "\n")
        if args.pickle_out is not None:
            D = Discriminator(c_dim=G.c_dim, img_resolution=G.img_resolution,  # noqa: N806
                              img_channels=3, channel_base=64, channel_max=16)
            args.pickle_out.mkdir(parents=True, exist_ok=True)
            with open(args.pickle_out / f"{name}.pkl", "wb") as f:
                pickle.dump({"G": G, "D": D, "G_ema": G, "training_set_kwargs": {}}, f)
        print(name, {k: tuple(v.shape) for k, v in out.items()})


if __name__ == "__main__":
    main()
