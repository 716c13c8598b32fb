"""A tiny Gemma-format tokenizer for the shapes caption grammar and SANA's instruction.

Gemma's tokenizer is a byte-fallback BPE without pre-tokenisation: spaces become "▁", the whole
text is one BPE "word", and characters outside the vocabulary fall back to <0xNN> byte tokens. This
one has the same special tokens and ids (<pad> 0, <eos> 1, <bos> 2, <unk> 3, <mask> 4), the 256
byte tokens, single characters, and whole-word tokens for

* every caption word, both at the start of a prompt ("a") and after a space ("▁red"), and
* every space-separated piece of SanaPipeline's complex human instruction ("▁colors,", "▁Prompt:"),
  so the instruction SanaPipeline prepends costs ~160 tokens, not ~1000 characters.

Any other text still tokenises (into characters, or bytes), into pieces the model never trained on.
It is transformers' own GemmaTokenizer built from our vocab and merges, so SanaPipeline and
latentgraph's Gemma loader (AutoTokenizer on the saved tokenizer.json) read it as they read Gemma's.

As in training/tokenizer.py, tokenizers' BpeTrainer is not used (it breaks count ties by hash-map
order, so ids changed between processes): for each word in sorted order the word is tokenised with
the merges so far by tokenizers' own BPE model and its first two pieces merged, until it is one
token. Appended merges never fire inside an earlier word, so every listed word is one id. A merge's
right side never starts with "▁" (that is always a word's first piece), so no merge spans a space:
tokenising a whole prompt equals tokenising its words one by one.
"""

from __future__ import annotations

import string
from functools import lru_cache

from tokenizers import models
from transformers import GemmaTokenizer

from ..nodes.sana.models import COMPLEX_HUMAN_INSTRUCTION
from ..nodes.shapes.dataset import CAPTIONS

SPACE = "▁"
PAD, EOS, BOS, UNK, MASK = "<pad>", "<eos>", "<bos>", "<unk>", "<mask>"
SPECIALS = (PAD, EOS, BOS, UNK, MASK)
BYTE_TOKENS = tuple(f"<0x{i:02X}>" for i in range(256))


def pieces(text: str) -> list[str]:
    """`text` split before every space, after Gemma's normalisation (" " -> "▁")."""
    out: list[str] = []
    for ch in text.replace(" ", SPACE):
        if ch == SPACE or not out:
            out.append(ch)
        else:
            out[-1] += ch
    return out


def vocabulary_words() -> list[str]:
    words = set(pieces("\n".join(COMPLEX_HUMAN_INSTRUCTION)))
    for caption in CAPTIONS:
        for word in caption.split():
            words |= {word, SPACE + word}
    return sorted(words)


def _bpe(vocab: dict[str, int], merges: list[tuple[str, str]]) -> models.BPE:
    # The model GemmaTokenizer builds.
    return models.BPE(vocab, merges, unk_token=UNK, fuse_unk=True, byte_fallback=True)


@lru_cache(maxsize=1)
def train_bpe() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """(vocab, merges) in which every word of vocabulary_words() is a single token."""
    words = vocabulary_words()
    alphabet = set(string.ascii_letters + string.digits + string.punctuation + "\n" + SPACE)
    chars = sorted(alphabet | {ch for w in words for ch in w})
    tokens = [*SPECIALS, *BYTE_TOKENS, *chars]
    merges: list[tuple[str, str]] = []
    for word in words:
        while True:
            vocab = {t: i for i, t in enumerate(tokens)}
            got = [t.value for t in _bpe(vocab, merges).tokenize(word)]
            if len(got) == 1:
                break
            merges.append((got[0], got[1]))
            tokens.append(got[0] + got[1])
    return {t: i for i, t in enumerate(tokens)}, merges


def build_tokenizer() -> GemmaTokenizer:
    """The tokenizer, in memory; save_pretrained writes tokenizer.json + tokenizer_config.json."""
    vocab, merges = train_bpe()
    return GemmaTokenizer(
        vocab=dict(vocab),
        merges=list(merges),
        add_bos_token=True,
        add_eos_token=False,
        padding_side="right",  # SanaPipeline sets it anyway
    )
