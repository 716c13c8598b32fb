"""SD 1.x's text encoder: OpenAI CLIP ViT-L/14's text transformer and its BPE tokenizer.

A single-file SD checkpoint carries the transformer but no tokenizer, so the BPE vocabulary ships
with latentgraph: ``bpe_simple_vocab_16e6.txt.gz``, the merges file of OpenAI's CLIP as packaged
by open_clip (MIT; see CLIP_VOCAB_LICENSE.txt). From it we build the vocabulary exactly as CLIP
does (256 byte symbols, the same with ``</w>``, one token per merge, then the two specials: 49408
tokens) and hand both to transformers' CLIPTokenizer, so tokenisation follows its semantics.
"""

from __future__ import annotations

import functools
import gzip
from pathlib import Path
from typing import Any

import torch

from ..common.files import read_tokenizer
from ..common.models import TextEncoder
from ..diffusion.denoiser import TextEmbeds

BPE_VOCAB = Path(__file__).with_name("bpe_simple_vocab_16e6.txt.gz")
CLIP_MAX_LENGTH = 77
# CLIP's merges file holds more merges than the released vocabulary uses (49152 - 256 - 2).
CLIP_NUM_MERGES = 49152 - 256 - 2
TOKENIZER_FILES = ("tokenizer.json", "vocab.json")


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable character table (the BPE base alphabet)."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    chars = list(printable)
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, chars), strict=True))


@functools.cache
def bundled_vocabulary() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """CLIP's (vocab, merges), built from the bundled merges file as CLIP's own tokenizer does."""
    lines = gzip.decompress(BPE_VOCAB.read_bytes()).decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1 : CLIP_NUM_MERGES + 1]]
    symbols = list(_bytes_to_unicode().values())
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {t: i for i, t in enumerate(tokens)}, merges  # type: ignore[return-value]


def bundled_tokenizer() -> Any:
    """transformers' CLIPTokenizer over the bundled vocabulary, padded with <|endoftext|> to 77
    tokens as SD 1.x's tokenizer is."""
    from transformers import CLIPTokenizer

    vocab, merges = bundled_vocabulary()
    return CLIPTokenizer(vocab=dict(vocab), merges=list(merges), model_max_length=CLIP_MAX_LENGTH)  # type: ignore[arg-type]


def folder_tokenizer(folder: Path) -> Any:
    """A CLIP tokenizer saved by transformers (vocab.json + merges.txt, or tokenizer.json)."""
    from transformers import CLIPTokenizer

    return read_tokenizer(folder, CLIPTokenizer, TOKENIZER_FILES, "CLIP")


class ClipTextEncoder(TextEncoder):
    """CLIP as StableDiffusionPipeline.encode_prompt uses it: pad/truncate to 77 tokens, no
    attention mask (unless the config asks for one), the last hidden state, no pooled output."""

    family = "sd1"
    _modules = ("model",)

    def __init__(self, model: torch.nn.Module, tokenizer: Any) -> None:
        self.model = model
        self.tokenizer = tokenizer

    def encode(self, texts: list[str], instruction: bool = True) -> TextEmbeds:
        tokens = self.tokenizer(
            texts,
            padding="max_length",
            max_length=self.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        )
        device, dtype = self.placement
        mask = None
        if getattr(self.model.config, "use_attention_mask", False):
            mask = tokens.attention_mask.to(device)
        with torch.no_grad():
            hidden = self.model(tokens.input_ids.to(device), attention_mask=mask)[0]
        return TextEmbeds(hidden.to(dtype))
