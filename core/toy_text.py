"""Text → tokens → ids → embeddings: the first two steps of the sentence page's layer.

A deliberately plain, deterministic tokenizer (any Unicode; an emoji that draws as one picture is
one token) and a seeded embedding table whose rows depend on the token's text, so a word keeps
its vector in every sentence for one seed, as a row of a learned table would. Split from
``core/toy_sentence.py`` (the forward pass), which re-exports every name here.
"""

from __future__ import annotations

import hashlib
import unicodedata
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "DEFAULT_SENTENCE", "DTYPE", "LABEL_CHARS", "EMBED_BLOCK", "Tokens", "Embedded", "clean_text",
    "tokenize", "build_vocab", "read_sentence", "sentence_problem", "token_labels", "token_embedding",
    "embedding_matrix", "embed",
]

DEFAULT_SENTENCE = "my name is Marcello Politi"
DTYPE = torch.float64
LABEL_CHARS = 12  # axis and index labels show at most this many characters of a token
EMBED_BLOCK = 16  # embeddings are drawn 16 coordinates at a time, so a wider D appends coordinates

# Einsum letters, one meaning each on the page: i query position (any position in a projection),
# j key position, d model coordinate, h head, l coordinate inside a head (0 … L−1). Not e (Euler's
# number in the softmax), not k (the key vectors, and the k of d_k).

# ---- text → tokens ----------------------------------------------------------------------------

# Bidirectional-text controls can make a label display in a different order from its characters
# ("Trojan source"); they carry no meaning for a toy tokenizer, so they are dropped.
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")
_ZWJ = "\u200d"  # zero-width joiner: glues emoji into one picture (👩‍💻)
_REGIONAL_INDICATORS = range(0x1F1E6, 0x1F200)  # two of them make a flag (🇮🇹)
_SKIN_TONES = range(0x1F3FB, 0x1F400)


def _splits_per_character(ch: str) -> bool:
    """Scripts written without spaces (Chinese, Japanese kana): one character, one token."""
    cp = ord(ch)
    return (
        0x3040 <= cp <= 0x30FF  # Hiragana, Katakana
        or 0x3400 <= cp <= 0x4DBF  # CJK Extension A
        or 0x4E00 <= cp <= 0x9FFF  # CJK Unified Ideographs
        or 0xF900 <= cp <= 0xFAFF  # CJK Compatibility Ideographs
        or 0x20000 <= cp <= 0x3FFFF  # CJK Extensions B and later
    )


def clean_text(text: str) -> str:
    """NFC-normalise, turn control characters into spaces, drop bidi controls, fix lone surrogates.

    NFC makes "é" typed as one code point or as "e" + accent the same token.
    """
    text = "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in text)
    text = unicodedata.normalize("NFC", text)
    out = []
    for ch in text:
        if ch in _BIDI_CONTROLS:
            continue
        out.append(" " if unicodedata.category(ch) == "Cc" else ch)
    return "".join(out)


def tokenize(text: str) -> list[str]:
    """Split text into tokens. Deterministic, any Unicode.

    Rules: whitespace separates; a run of letters, digits, marks and underscores is one token
    (any script); every other visible character (punctuation, symbols, emoji) is a token of its
    own; Chinese and Japanese characters are one token each. Combining marks, variation selectors,
    skin tones, zero-width joiners and flag pairs stay attached to the character before them, so
    an emoji that draws as one picture is one token.
    """
    tokens: list[str] = []
    current = ""
    kind = ""  # "word", "single" (a token that takes no more base characters) or "" (none open)
    glue = False  # the previous character was a zero-width joiner: the next one attaches

    def close() -> None:
        nonlocal current, kind
        if current:
            tokens.append(current)
        current, kind = "", ""

    for ch in clean_text(text):
        cat = unicodedata.category(ch)
        cp = ord(ch)
        if ch.isspace() or cat.startswith("Z"):
            close()
            glue = False
            continue
        attaches = (
            glue
            or cat.startswith("M")  # accents, vowel signs, variation selectors, keycaps
            or cat == "Cf"  # joiners, tag characters of subdivision flags
            or cp in _SKIN_TONES
            or (cp in _REGIONAL_INDICATORS and len(current) == 1 and ord(current) in _REGIONAL_INDICATORS)
        )
        glue = ch == _ZWJ
        if attaches and current:
            current += ch
            continue
        if _splits_per_character(ch):
            close()
            current, kind = ch, "single"
        elif cat[0] in "LN" or cat == "Pc" or cat.startswith("M"):
            if kind != "word":
                close()
            current += ch
            kind = "word"
        else:
            close()
            current, kind = ch, "single"
    close()
    return tokens


def build_vocab(tokens: list[str]) -> list[str]:
    """The sentence's distinct tokens, sorted by Unicode code point; a token's id is its index.

    Code-point order puts digits before capitals before lower case ("Marcello" < "my").
    """
    return sorted(set(tokens))


@dataclass(frozen=True)
class Tokens:
    """A sentence read into tokens and ids."""

    tokens: list[str]  # the first max_tokens tokens, in order
    vocab: list[str]  # distinct tokens, sorted: vocab[id] is the token
    ids: list[int]  # one id per token
    found: int  # tokens in the whole sentence, before the cap


def read_sentence(text: str, max_tokens: int) -> Tokens:
    """Tokenize, keep the first ``max_tokens``, build the vocabulary of what is kept."""
    every = tokenize(text)
    kept = every[:max_tokens]
    vocab = build_vocab(kept)
    index = {t: i for i, t in enumerate(vocab)}
    return Tokens(kept, vocab, [index[t] for t in kept], len(every))


def sentence_problem(text: str) -> str | None:
    """Why ``text`` cannot be read as a sentence, in words; None when it can."""
    if not text.strip():
        return "The sentence is empty. Type a few words (the tutorial's was “my name is Marcello Politi”)."
    if not tokenize(text):
        return (
            "The sentence has no visible characters once spaces and invisible control characters "
            "are removed, so there is nothing to attend to. Type a few words."
        )
    return None


def token_labels(tokens: list[str]) -> list[str]:
    """Unique, short labels "position:token" for axes and table rows (a word may occur twice).

    A colon, not "·": on this page "·" multiplies."""
    def short(t: str) -> str:
        return t if len(t) <= LABEL_CHARS else t[: LABEL_CHARS - 1] + "…"

    return [f"{i}:{short(t)}" for i, t in enumerate(tokens)]


# ---- ids → embeddings ---------------------------------------------------------------------------

_EMBED_SALT = b"toy-embedding"  # BLAKE2b personalisation (at most 16 bytes)


def _token_seed(token: str, seed: int) -> int:
    """A 63-bit generator seed from (seed, token text): BLAKE2b, stable across machines and runs."""
    data = f"{int(seed)}\x00".encode() + token.encode("utf-8", "surrogatepass")
    digest = hashlib.blake2b(data, digest_size=8, person=_EMBED_SALT).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


def token_embedding(token: str, d_model: int, seed: int) -> Tensor:
    """The embedding of one token, [D]: standard normal numbers from a generator seeded by the
    token's text and ``seed``. So a word has the same vector in every sentence (for one seed),
    as a row of a real, learned embedding table would. Drawn in blocks of EMBED_BLOCK (torch's
    CPU normal sampler fills a tensor of 16 or more in another order than a shorter one), so a
    wider D appends coordinates to the same vector at every width."""
    gen = torch.Generator(device="cpu").manual_seed(_token_seed(token, seed))
    blocks = -(-d_model // EMBED_BLOCK)
    drawn = torch.cat([torch.randn(EMBED_BLOCK, generator=gen, dtype=DTYPE) for _ in range(blocks)])
    return drawn[:d_model]  # [D]


def embedding_matrix(vocab: list[str], d_model: int, seed: int) -> Tensor:
    """W_E [V, D]: row ``id`` is the embedding of ``vocab[id]``."""
    return torch.stack([token_embedding(t, d_model, seed) for t in vocab])  # [V, D]


@dataclass
class Embedded:
    """A token sequence looked up in its seeded embedding table."""

    vocab: list[str]
    ids: list[int]
    W_E: Tensor  # [V, D] embedding table of this sentence's vocabulary
    one_hot: Tensor  # [S, V]
    x: Tensor  # [S, D] one_hot @ W_E: row s is W_E[ids[s]]


def embed(tokens: list[str], d_model: int, seed: int) -> Embedded:
    """Tokens → ids → one-hot rows → embeddings, the first two steps of the layer."""
    if not tokens:
        raise ValueError("no tokens to embed")
    vocab = build_vocab(tokens)
    index = {t: i for i, t in enumerate(vocab)}
    ids = [index[t] for t in tokens]
    W_E = embedding_matrix(vocab, d_model, seed)  # [V, D]
    one_hot = torch.nn.functional.one_hot(torch.tensor(ids), len(vocab)).to(DTYPE)  # [S, V]
    x = one_hot @ W_E  # [S, D] the same rows as W_E[ids], written as the product it is
    return Embedded(vocab, ids, W_E, one_hot, x)
