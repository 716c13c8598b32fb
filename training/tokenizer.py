"""A tiny CLIP-compatible BPE tokenizer for the shapes caption grammar.

Built with the `tokenizers` library's BPE model over the caption grammar, so every caption word
is one token, then saved as vocab.json + merges.txt in CLIP's BPE format ("</w>" end-of-word suffix, "#version"
header line), which transformers' CLIPTokenizer (fast or slow, old or new) loads from a folder.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

from tokenizers import models
from transformers import CLIPTokenizer

from ..nodes.shapes.dataset import CAPTIONS

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
EOW = "</w>"
DEFAULT_MAX_LENGTH = 16  # "a red circle" is 5 tokens with BOS/EOS; room for longer user prompts


def caption_words(corpus: list[str] | None = None) -> list[str]:
    return sorted({w for text in (corpus or CAPTIONS) for w in text.lower().split()})


def train_bpe(corpus: list[str] | None = None) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """(vocab, merges) of a BPE in which every word of the caption grammar is a single token.

    tokenizers' BpeTrainer is not used: it breaks count ties by hash-map order, so token ids
    changed from process to process, which would change the text encoder's initialisation and
    break resuming. Instead, for each word in sorted order, the word is tokenised with the merges
    so far (by tokenizers' BPE model, i.e. exactly as CLIPTokenizer will) and the first two pieces
    are merged, appended at the lowest priority, until the word is one token. Appended merges
    never fire inside an earlier word (it is already one token before they are reached), so the
    result is deterministic and every grammar word encodes to one id.
    """
    chars = list(string.ascii_lowercase + string.digits + ".,!?-'")
    # Single characters, with and without the end-of-word suffix, so unseen words and punctuation
    # still tokenise (into pieces the model has never seen) instead of becoming <unk> = EOS.
    tokens = [BOS, EOS, *chars, *(ch + EOW for ch in chars)]
    merges: list[tuple[str, str]] = []
    for word in caption_words(corpus):
        while True:
            vocab = {t: i for i, t in enumerate(tokens)}
            pieces = [
                t.value
                for t in models.BPE(vocab, merges, end_of_word_suffix=EOW, unk_token=EOS).tokenize(
                    word
                )
            ]
            if len(pieces) == 1:
                break
            merges.append((pieces[0], pieces[1]))
            tokens.append(pieces[0] + pieces[1])
    return {t: i for i, t in enumerate(tokens)}, merges


def save_clip_tokenizer_files(
    folder: str | Path, vocab: dict[str, int], merges: list[tuple[str, str]], max_length: int
) -> None:
    """Write vocab.json, merges.txt and tokenizer_config.json (CLIP layout) into `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False, indent=1))
    # The first line is skipped by CLIP's loaders, as in OpenAI's merges file.
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": max_length,
        "bos_token": BOS,
        "eos_token": EOS,
        "unk_token": EOS,
        "pad_token": EOS,
        "do_lower_case": True,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=1))


def build_tokenizer(folder: str | Path, max_length: int = DEFAULT_MAX_LENGTH) -> CLIPTokenizer:
    """Train, save into `folder` and load back the CLIPTokenizer the SD pipeline will use."""
    vocab, merges = train_bpe()
    save_clip_tokenizer_files(folder, vocab, merges, max_length)
    return CLIPTokenizer.from_pretrained(str(folder))
