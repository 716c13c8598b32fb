"""Pieces every shapes trainer shares: EMA weights, the learning-rate schedule, autocast,
atomic checkpoints, sample grids, and the command line built from the config dataclasses."""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import MISSING, Field, asdict, fields, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..executor.pixels import image_to_uint8
from ..nodes.shapes.dataset import NUM_CLASSES

_SCALAR_TYPES = {"int": int, "float": float, "str": str}


def _field_default(f: Field) -> Any:
    # The declared default, not an instance's: __post_init__ may derive values (batch from device).
    return f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]


def _add_options(
    parser: argparse.ArgumentParser, config_cls: type, help: Mapping[str, str],
    choices: Mapping[str, Sequence[str]],
) -> None:
    for f in fields(config_cls):
        default = _field_default(f)
        if is_dataclass(default):
            _add_options(parser, type(default), help, choices)
            continue
        flag = "--" + f.name.replace("_", "-")
        if f.type == "bool":
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=help.get(f.name))
        elif isinstance(default, tuple):
            parser.add_argument(flag, type=lambda text: tuple(int(v) for v in text.split(",")),
                                default=default, help=help.get(f.name, "comma-separated"))
        else:
            parser.add_argument(flag, type=_SCALAR_TYPES[f.type], default=default, choices=choices.get(f.name),
                                help=help.get(f.name))


def _build(config_cls: type, values: argparse.Namespace) -> Any:
    kwargs = {}
    for f in fields(config_cls):
        default = _field_default(f)
        kwargs[f.name] = _build(type(default), values) if is_dataclass(default) else getattr(values, f.name)
    return config_cls(**kwargs)


def parse_config(
    config_cls: type, argv: Sequence[str] | None, description: str, *,
    help: Mapping[str, str] | None = None, choices: Mapping[str, Sequence[str]] | None = None,
) -> Any:
    """A trainer's config from its command line: one ``--option`` per field of the (nested)
    config dataclasses, defaulting to the declared defaults; tuples are comma-separated ints."""
    parser = argparse.ArgumentParser(description=description)
    _add_options(parser, config_cls, help or {}, {"device": ("cpu", "cuda"), **(choices or {})})
    return _build(config_cls, parser.parse_args(argv))


def train(trainer_cls: type, cfg: Any) -> Path | None:
    """Run a diffusers/transformers trainer with the libraries' progress noise off and TF32
    matmuls on CUDA; returns what its run() does (the export, or None when stopped early)."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.set_verbosity_error()
    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    if cfg.device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return trainer_cls(cfg).run()


def param_count(*modules: torch.nn.Module) -> int:
    return sum(p.numel() for m in modules for p in m.parameters())


class EMA:
    """Exponential moving average of a module's parameters, kept in a frozen copy of it."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.module = copy.deepcopy(module).requires_grad_(False).eval()

    @torch.no_grad()
    def update(self, source: torch.nn.Module, step: int, decay: float) -> None:
        # Warm-up (1 + s) / (10 + s): early weights are garbage and must not linger.
        d = min(decay, (1 + step) / (10 + step))
        ema = list(self.module.parameters())
        src = [p.detach() for p in source.parameters()]
        torch._foreach_lerp_(ema, src, 1.0 - d)


def lr_at(step: int, total: int, peak: float, warmup: int) -> float:
    """Linear warm-up, then cosine decay to 10 % of the peak."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def autocast(device: torch.device) -> AbstractContextManager:
    # bf16 on GPU: no loss scaling needed; CPU stays fp32 (bf16 CPU kernels are slower there).
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()


def save_state(path: Path, state: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # atomic: a kill mid-save leaves the previous checkpoint intact


def to_cpu(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu() for k, v in sd.items()}


def save_grid(images: np.ndarray, path: Path, cols: int = NUM_CLASSES // 4) -> None:
    n, h, w, _ = images.shape
    rows = math.ceil(n / cols)
    grid = np.zeros((rows * h, cols * w, 3), dtype=np.uint8)
    for i, img in enumerate(images):
        r, c = divmod(i, cols)
        grid[r * h : (r + 1) * h, c * w : (c + 1) * w] = image_to_uint8(torch.from_numpy(img))
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).resize((cols * w * 4, rows * h * 4), Image.Resampling.NEAREST).save(path)


class StopTraining(Exception):
    """Raised when --stop-after steps are done in this process (the checkpoint is written)."""


class ResumableTrainer:
    """Checkpoint bookkeeping shared by the shapes trainers: one file holds the model config,
    stage, step, random stream, every module and optimiser, so a killed run resumes bit for bit.

    Subclasses set ``cfg`` (with ckpt_path, ckpt_every), ``mcfg``, ``stage``, ``step``,
    ``steps_left``, ``scaling_factor``, ``gen``, name what they save, and export().
    """

    final_stage: str  # checkpoints in this stage also rewrite the exported model
    cfg: Any
    mcfg: Any
    stage: str
    step: int
    steps_left: int
    scaling_factor: float
    gen: torch.Generator

    def saved_modules(self) -> dict[str, torch.nn.Module]:
        raise NotImplementedError

    def saved_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        raise NotImplementedError

    def export(self) -> None:
        raise NotImplementedError

    def state(self) -> dict:
        return {
            "model_config": json.dumps(asdict(self.mcfg)),
            "stage": self.stage,
            "step": self.step,
            "scaling_factor": self.scaling_factor,
            "gen": self.gen.get_state(),
            **{name: to_cpu(module.state_dict()) for name, module in self.saved_modules().items()},
            **{name: opt.state_dict() for name, opt in self.saved_optimizers().items()},
        }

    def resume(self) -> None:
        path = self.cfg.ckpt_path
        if not path.exists():
            return
        s = torch.load(path, map_location="cpu", weights_only=True)
        if s["model_config"] != json.dumps(asdict(self.mcfg)):
            raise SystemExit(f"{path} was trained with another model config: {s['model_config']}")
        self.stage, self.step, self.scaling_factor = s["stage"], s["step"], s["scaling_factor"]
        self.gen.set_state(s["gen"])
        for name, module in self.saved_modules().items():
            module.load_state_dict(s[name])
        for name, opt in self.saved_optimizers().items():
            opt.load_state_dict(s[name])
        print(f"resumed from {path}: stage {self.stage}, step {self.step}", flush=True)

    def checkpoint(self) -> None:
        save_state(self.cfg.ckpt_path, self.state())

    def count_step(self) -> None:
        """Advance the step counter; checkpoint every ckpt_every steps; honour --stop-after."""
        self.step += 1
        self.steps_left -= 1
        if self.step % self.cfg.ckpt_every == 0 or self.steps_left <= 0:
            self.checkpoint()
            if self.stage == self.final_stage:
                self.export()  # a killed long run still leaves a usable model behind
        if self.steps_left <= 0:
            raise StopTraining
