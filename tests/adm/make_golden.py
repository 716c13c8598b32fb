"""Make the ADM golden data with openai/guided-diffusion's own code.

    python tests/adm/make_golden.py --official PATH/TO/guided-diffusion --out tests/adm/golden

PATH is a checkout of https://github.com/openai/guided-diffusion (its ``guided_diffusion``
package is imported from there; it is never copied here). The script builds tiny networks with
the official classes, fills them with seeded random weights (rounded to fp16 values, stored as
fp32, to keep the folder small), and saves, in the official key layout:

- ``unet.safetensors``: a class-conditional, learned-sigma U-Net with scale-shift norm,
  residual up/downsampling and 16 channels per head;
- ``classifier_head.safetensors``: the head (attention pool) of a noisy classifier of 5 classes
  at 8x8 whose encoder is the U-Net's: its state dict is the U-Net's time_embed, input_blocks
  and middle_block plus these;
- ``io.safetensors``: the inputs and what the official code made of them: U-Net outputs,
  classifier logits, the classifier gradient of classifier_sample.py's cond_fn, a guided
  p_sample (Algorithm 1) and guided ddim_sample (Algorithm 2, eta 0 and 0.5), with and without
  clipping x0, at a middle step
  and at the last step of a "10" respacing, with their noise, and the learned log variance;
  ``respacing.json``: the timesteps space_timesteps keeps for several respacing strings;
- ``released_layouts.json.gz``: the key names and shapes of the released checkpoints' networks
  (the README's flags for 64, 128, 256 and 512 px, diffusion and classifier), built on the meta
  device, so configuration reading is tested on the real layouts without their weights.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

RESPACINGS = ("250", "10", "21", "ddim25", "ddim50", "10,20,30", "7,3")
SIDE = 8
UNET = dict(image_size=SIDE, in_channels=3, model_channels=32, out_channels=6, num_res_blocks=1,
            attention_resolutions=(2,), channel_mult=(1, 1), num_classes=5, num_head_channels=16,
            use_scale_shift_norm=True, resblock_updown=True)
# The classifier's encoder is the U-Net's (same widths, blocks, attention, resampling), so its
# trunk weights are the U-Net's and only its head is stored: the folder stays small.
CLASSIFIER = dict(image_size=SIDE, in_channels=3, model_channels=32, out_channels=5, num_res_blocks=1,
                  attention_resolutions=(2,), channel_mult=(1, 1), num_head_channels=16,
                  use_scale_shift_norm=True, resblock_updown=True, pool="attention")
TRUNK = ("time_embed.", "input_blocks.", "middle_block.")
# guided-diffusion's README flags of its released checkpoints (the heads: channels per head, or
# a head count where that is -1)
_MODEL = dict(image_size=256, num_channels=256, num_res_blocks=2, channel_mult="", learn_sigma=True, class_cond=True,
              use_checkpoint=False, attention_resolutions="32,16,8", num_heads=4, num_head_channels=64,
              num_heads_upsample=-1, use_scale_shift_norm=True, dropout=0.0, resblock_updown=True, use_fp16=False,
              use_new_attention_order=False)
_CLASSIFIER = dict(image_size=256, classifier_use_fp16=False, classifier_width=128, classifier_depth=2,
                   classifier_attention_resolutions="32,16,8", classifier_use_scale_shift_norm=True,
                   classifier_resblock_updown=True, classifier_pool="attention")
RELEASED = {
    "64x64_diffusion": ("model", dict(image_size=64, num_channels=192, num_res_blocks=3, use_new_attention_order=True)),
    "128x128_diffusion": ("model", dict(image_size=128, num_head_channels=-1)),
    "256x256_diffusion": ("model", {}),
    "256x256_diffusion_uncond": ("model", dict(class_cond=False)),
    "512x512_diffusion": ("model", dict(image_size=512)),
    "64x64_classifier": ("classifier", dict(image_size=64, classifier_depth=4)),
    "128x128_classifier": ("classifier", dict(image_size=128)),
    "256x256_classifier": ("classifier", {}),
    "512x512_classifier": ("classifier", dict(image_size=512)),
}
SCALE = 3.0


def randomize(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Seeded weights (the official init zeroes the output convs, which would hide them)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            std = 0.3 if p.ndim == 1 else 1.0 / max(1, p[0].numel()) ** 0.5
            value = torch.randn(p.shape, generator=gen) * std + (1.0 if name.endswith("norm.weight") else 0.0)
            p.copy_(value.half().float())
    return module.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--official", required=True, type=Path, help="a guided-diffusion checkout")
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()
    sys.path.insert(0, str(args.official))
    from guided_diffusion.respace import space_timesteps
    from guided_diffusion.script_util import (
        create_classifier,
        create_gaussian_diffusion,
        create_model,
    )
    from guided_diffusion.unet import EncoderUNetModel, UNetModel

    args.out.mkdir(parents=True, exist_ok=True)
    unet = randomize(UNetModel(**UNET), 1)
    classifier = randomize(EncoderUNetModel(**CLASSIFIER), 3)
    trunk = {k: v for k, v in unet.state_dict().items() if k.startswith(TRUNK)}
    missing, unexpected = classifier.load_state_dict(trunk, strict=False)
    assert not unexpected and all(not k.startswith(TRUNK) for k in missing), (missing, unexpected)
    head = {k: v for k, v in classifier.state_dict().items() if not k.startswith(TRUNK)}
    # fp16 on disk (the values are fp16 ones): half the size, the same numbers
    for name, weights in (("unet", unet.state_dict()), ("classifier_head", head)):
        save_file({k: v.half().contiguous() for k, v in weights.items()}, str(args.out / f"{name}.safetensors"))

    gen = torch.Generator().manual_seed(4)
    x = torch.randn(2, 3, SIDE, SIDE, generator=gen)
    y = torch.tensor([1, 4])
    t_model = torch.tensor([555, 555])
    io = {"x": x, "y": y, "t": t_model}
    with torch.no_grad():
        io["unet_out"] = unet(x, t_model, y)
        io["logits"] = classifier(x, t_model)

    def cond_fn(x_t: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # classifier_sample.py's cond_fn, with its classifier_scale
        with torch.enable_grad():
            x_in = x_t.detach().requires_grad_(True)
            log_probs = F.log_softmax(classifier(x_in, t), dim=-1)
            selected = log_probs[range(len(log_probs)), y.view(-1)]
            return torch.autograd.grad(selected.sum(), x_in)[0] * SCALE

    io["gradient"] = cond_fn(x, t_model, y)
    diffusion = create_gaussian_diffusion(steps=1000, learn_sigma=True, noise_schedule="linear",
                                          timestep_respacing="10")
    model_kwargs = {"y": y}

    def model_fn(x_t: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return unet(x_t, t, y)

    for label, index in (("mid", 5), ("last", 0)):
        t = torch.tensor([index, index])
        with torch.no_grad():
            out = diffusion.p_mean_variance(model_fn, x, t, clip_denoised=True, model_kwargs=model_kwargs)
        io[f"log_variance_{label}"] = out["log_variance"]
        guided = {"cond_fn": cond_fn, "model_kwargs": model_kwargs}
        for name, call, options in (
            ("ddpm", diffusion.p_sample, {"clip_denoised": True, **guided}),
            ("ddpm_unguided", diffusion.p_sample, {"clip_denoised": True, "model_kwargs": model_kwargs}),
            ("ddpm_unclipped", diffusion.p_sample, {"clip_denoised": False, **guided}),
            ("ddim_unclipped", diffusion.ddim_sample, {"clip_denoised": False, **guided}),
            ("ddim", diffusion.ddim_sample, {"clip_denoised": True, **guided}),
            ("ddim_eta", diffusion.ddim_sample, {"clip_denoised": True, "eta": 0.5, **guided}),
        ):
            # The official steps draw their noise with randn_like first thing after the model
            # call; the same seed right before gives the tensor they used.
            torch.manual_seed(100)
            noise = torch.randn_like(x)
            torch.manual_seed(100)
            with torch.no_grad():
                result = call(model_fn, x, t, **options)
            io[f"{name}_{label}_sample"] = result["sample"]
            io[f"{name}_{label}_x0"] = result["pred_xstart"]
            io[f"noise_{name}_{label}"] = noise
    save_file({k: v.contiguous() for k, v in io.items()}, str(args.out / "io.safetensors"))
    spacings = {text: sorted(space_timesteps(1000, text)) for text in RESPACINGS}
    (args.out / "respacing.json").write_text(json.dumps(spacings) + "\n")
    layouts = {}
    for name, (kind, flags) in RELEASED.items():
        with torch.device("meta"):
            net = (create_model(**{**_MODEL, **flags}) if kind == "model"
                   else create_classifier(**{**_CLASSIFIER, **flags}))
        heads = flags.get("num_head_channels", 64) if kind == "model" else 64
        layouts[name] = {"num_head_channels": max(heads, 0), "num_heads": 4 if heads < 0 else 1,
                         "shapes": {k: list(v.shape) for k, v in net.state_dict().items()}}
    with gzip.open(args.out / "released_layouts.json.gz", "wt") as f:
        json.dump(layouts, f)
    print(f"wrote {args.out}: " + ", ".join(f"{p.name} {p.stat().st_size // 1024} KB"
                                           for p in sorted(args.out.iterdir())))


if __name__ == "__main__":
    main()
