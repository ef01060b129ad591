"""A tiny multi-head attention on a sentence, computed step by step with ``torch.einsum``.

This is the from-scratch walk-through of the sentence page: text → tokens → ids → embeddings →
per-head queries, keys and values → scores → softmax → weighted sums of values → concatenate →
W_O. Every intermediate is kept so the page can print it, and the result is checked against
:func:`core.attention.multi_head_attention` (same weights) in the tests.

Shapes drop the batch axis, as the hand computation does: S = tokens, V = distinct tokens,
D = d_model, H = heads, L = d_head = D / H. Weights are TransformerLens-style and right-multiply:
W_Q, W_K, W_V [H, D, L], W_O [H, L, D]. Everything runs in float64 on the CPU, so that the
digits on screen are the mathematics and not rounding (rounding is the concat-vs-sum page's topic).
"""

from __future__ import annotations

import hashlib
import math
import unicodedata
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from core.attention import AttentionWeights

__all__ = [
    "DEFAULT_SENTENCE",
    "DTYPE",
    "Tokens",
    "ToyTrace",
    "clean_text",
    "tokenize",
    "build_vocab",
    "read_sentence",
    "token_embedding",
    "embedding_matrix",
    "Embedded",
    "embed",
    "run_toy",
    "context_terms",
    "row_entropy",
    "score_spread",
    "scale_effect",
    "ScaleEffect",
    "sentence_problem",
    "token_labels",
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


# ---- the forward pass -----------------------------------------------------------------------------


@dataclass
class ToyTrace:
    """Every number of one forward pass over a sentence (no batch axis)."""

    tokens: list[str]
    vocab: list[str]
    ids: list[int]
    causal: bool
    scale: bool
    weights: AttentionWeights  # W_Q, W_K, W_V [H, D, L], W_O [H, L, D]
    W_E: Tensor  # [V, D] embedding table of this sentence's vocabulary
    one_hot: Tensor  # [S, V]
    x: Tensor  # [S, D] embeddings, one_hot @ W_E
    q: Tensor  # [H, S, L]
    k: Tensor  # [H, S, L]
    v: Tensor  # [H, S, L]
    raw_scores: Tensor  # [H, S, S] q·k, before scaling and masking
    scores: Tensor  # [H, S, S] scaled (if scale) and masked (−inf at future keys, if causal)
    mask: Tensor  # [S, S] bool, True where a key is hidden from a query (all False unless causal)
    pattern: Tensor  # [H, S, S] softmax over keys: rows sum to 1, masked entries are 0
    z: Tensor  # [H, S, L] pattern @ v: each head's weighted average of values
    z_concat: Tensor  # [S, H·L] heads side by side
    out: Tensor  # [S, D] z_concat @ W_O as one [H·L, D] matrix
    per_head: Tensor  # [S, H, D] z[h] @ W_O[h]: what each head adds to the output
    out_sum: Tensor  # [S, D] per_head summed over heads

    @property
    def n_heads(self) -> int:
        return self.weights.n_heads

    @property
    def d_head(self) -> int:
        return self.weights.d_head

    @property
    def d_model(self) -> int:
        return self.weights.d_model

    @property
    def labels(self) -> list[str]:
        return token_labels(self.tokens)


def run_toy(
    tokens: list[str], d_model: int, n_heads: int, *, seed: int = 0, causal: bool = False,
    scale: bool = True,
) -> ToyTrace:
    """The seed's einsum computation on ``tokens``, with seeded embeddings and weights.

    The weights are ``AttentionWeights.random(d_model, n_heads, seed=seed)`` — the same ones every
    other page draws for that seed — so the result can be checked against
    ``core.attention.multi_head_attention``.
    """
    emb = embed(tokens, d_model, seed)
    x = emb.x  # [S, D]
    S = len(tokens)
    weights = AttentionWeights.random(d_model, n_heads, seed=seed, dtype=DTYPE)
    W_Q, W_K, W_V, W_O = weights.W_Q, weights.W_K, weights.W_V, weights.W_O  # [H, D, L] ×3, [H, L, D]
    H, L = weights.n_heads, weights.d_head

    q = torch.einsum("id,hdl->hil", x, W_Q)  # [H, S, L]
    k = torch.einsum("id,hdl->hil", x, W_K)  # [H, S, L]
    v = torch.einsum("id,hdl->hil", x, W_V)  # [H, S, L]

    raw_scores = torch.einsum("hil,hjl->hij", q, k)  # [H, S, S] query i, key j
    scores = raw_scores / math.sqrt(L) if scale else raw_scores.clone()  # [H, S, S]
    mask = torch.ones(S, S, dtype=torch.bool).triu(diagonal=1) if causal else torch.zeros(S, S, dtype=torch.bool)
    scores = scores.masked_fill(mask, float("-inf"))  # [H, S, S] e^(−inf) = 0: no weight on the future
    pattern = scores.softmax(dim=-1)  # [H, S, S]

    z = torch.einsum("hij,hjl->hil", pattern, v)  # [H, S, L]
    z_concat = z.permute(1, 0, 2).reshape(S, H * L)  # [S, H·L] head h in columns hL … hL+L−1
    out = z_concat @ W_O.reshape(H * L, d_model)  # [S, D]
    per_head = torch.einsum("hil,hld->ihd", z, W_O)  # [S, H, D]
    out_sum = per_head.sum(dim=1)  # [S, D]
    return ToyTrace(
        tokens=list(tokens), vocab=emb.vocab, ids=emb.ids, causal=causal, scale=scale, weights=weights,
        W_E=emb.W_E, one_hot=emb.one_hot, x=x, q=q, k=k, v=v, raw_scores=raw_scores, scores=scores,
        mask=mask, pattern=pattern, z=z, z_concat=z_concat, out=out, per_head=per_head,
        out_sum=out_sum,
    )


def context_terms(trace: ToyTrace, i: int) -> tuple[Tensor, Tensor]:
    """Query token ``i`` alone, as the tutorial does it first: z_i = Σ_j a_ij v_j.

    Returns (terms [H, S, L], z_i [H, L]); terms[h, j] = a_ij v_j is what key j adds for head h.
    """
    a_i = trace.pattern[:, i, :]  # [H, S] row i of every head's pattern
    terms = a_i[:, :, None] * trace.v  # [H, S, L]
    z_i = terms.sum(dim=1)  # [H, L]
    return terms, z_i


# ---- why the scale -----------------------------------------------------------------------------


def row_entropy(pattern: Tensor) -> Tensor:
    """Entropy of every row of a pattern in bits, [..., S]: 0 = all weight on one key,
    log2(n) = spread evenly over n keys. Masked (zero) weights contribute 0 (0·log 0 = 0)."""
    p = pattern.clamp_min(0)
    logs = torch.where(p > 0, p.log2(), torch.zeros_like(p))
    return -(p * logs).sum(dim=-1)


def score_spread(trace: ToyTrace) -> dict[str, object]:
    """The measured case for the 1/√d_k: spread of the raw scores, and the softmax's entropy
    with and without the scale (the other setting is recomputed from the same scores).

    Scores count only visible (unmasked) query–key pairs. With unit-variance queries and keys,
    q·k is a sum of L products, so its standard deviation grows like √L; dividing by √L brings
    it back to about 1 whatever the head width.
    """
    visible = ~trace.mask  # [S, S]
    raw = trace.raw_scores[:, visible]  # [H, n_visible]
    L = trace.d_head
    hidden = torch.where(trace.mask, float("-inf"), 0.0).to(DTYPE)  # [S, S]
    p_scaled = (trace.raw_scores / math.sqrt(L) + hidden).softmax(-1)  # [H, S, S]
    p_raw = (trace.raw_scores + hidden).softmax(-1)  # [H, S, S]
    n_visible = visible.sum(-1).to(DTYPE)  # [S] keys each query can see
    return {
        "d_head": L,
        "sqrt_d_head": math.sqrt(L),
        "raw_std": float(raw.std(correction=0)) if raw.numel() > 1 else 0.0,
        "raw_std_per_head": [float(r.std(correction=0)) if r.numel() > 1 else 0.0 for r in raw],
        "raw_absmax": float(raw.abs().max()),
        "scaled_std": float((raw / math.sqrt(L)).std(correction=0)) if raw.numel() > 1 else 0.0,
        "q_std": float(trace.q.std(correction=0)) if trace.q.numel() > 1 else 0.0,
        "k_std": float(trace.k.std(correction=0)) if trace.k.numel() > 1 else 0.0,
        "entropy_scaled": row_entropy(p_scaled).numpy(),  # [H, S]
        "entropy_raw": row_entropy(p_raw).numpy(),  # [H, S]
        "entropy_max": n_visible.log2().numpy(),  # [S] a uniform row over the visible keys
        "max_weight_scaled": float(p_scaled.max(-1).values.mean()),
        "max_weight_raw": float(p_raw.max(-1).values.mean()),
    }


# What the page says about the scale is read off these numbers, never assumed. Leaving the scale
# out multiplies every score by √L ≥ 1, and a softmax's entropy never rises when its inputs are
# multiplied by a factor ≥ 1 (d/dc H(softmax(c·s)) = −c·Var(s) ≤ 0), so a head either sharpens
# or, at L = 1 or with a single visible key per row, stays exactly where it was.
SCALE_SAME_BITS = 1e-9  # entropies closer than this are the same number (rounding only)
SCALE_SLIGHT_BELOW = 0.10  # relative drop of the mean row entropy: under 10 % is "slight"
SCALE_STRONG_FROM = 0.40  # 40 % or more is "strong"; in between, "clear"


@dataclass(frozen=True)
class ScaleEffect:
    """The measured effect of the 1/√d_k on one sentence, and the page's sentences about it."""

    d_head: int
    entropy_scaled: float  # mean row entropy with ÷√L, bits
    entropy_raw: float  # mean row entropy without it, bits
    entropy_uniform: float  # mean entropy of an even spread over the visible keys, bits
    drop_bits: float  # entropy_scaled − entropy_raw (never negative beyond rounding)
    drop_fraction: float  # drop_bits / entropy_scaled; 0 when entropy_scaled is 0
    max_weight_scaled: float
    max_weight_raw: float
    verdict: str  # "none", "slight", "clear" or "strong" (thresholds above)
    reason: str  # why "none": "unit scale" (L = 1), "one key per row", "equal"; "" otherwise
    heads_lower: list[int]  # heads whose mean row entropy falls without the scale
    heads_same: list[int]  # heads whose mean row entropy does not change
    heads_higher: list[int]  # heads whose entropy rises (impossible but for rounding; kept honest)
    sentence: str  # what the page measured, for the text beside the numbers
    heads_sentence: str  # what the per-head chart shows, for its caption


def _heads(hs: list[int]) -> str:
    """[0] → "head 0"; [0, 2, 3] → "heads 0, 2 and 3"."""
    if len(hs) == 1:
        return f"head {hs[0]}"
    return "heads " + ", ".join(map(str, hs[:-1])) + f" and {hs[-1]}"


def scale_effect(spread: dict) -> ScaleEffect:
    """Classify what leaving out the 1/√d_k does here, from :func:`score_spread`'s numbers."""
    L = int(spread["d_head"])
    ent_s = np.asarray(spread["entropy_scaled"], dtype=float)  # [H, S]
    ent_r = np.asarray(spread["entropy_raw"], dtype=float)  # [H, S]
    uniform = float(np.mean(spread["entropy_max"]))
    mean_s, mean_r = float(ent_s.mean()), float(ent_r.mean())
    drop = mean_s - mean_r
    fraction = drop / mean_s if mean_s > 0 else 0.0
    per_s, per_r = ent_s.mean(axis=1), ent_r.mean(axis=1)  # [H]
    lower = [h for h in range(len(per_s)) if per_r[h] < per_s[h] - SCALE_SAME_BITS]
    higher = [h for h in range(len(per_s)) if per_r[h] > per_s[h] + SCALE_SAME_BITS]
    same = [h for h in range(len(per_s)) if h not in lower and h not in higher]

    if L == 1:
        verdict, reason = "none", "unit scale"
    elif float(np.max(spread["entropy_max"])) == 0.0:
        verdict, reason = "none", "one key per row"
    elif abs(drop) <= SCALE_SAME_BITS:
        verdict, reason = "none", "equal"
    else:
        reason = ""
        verdict = "slight" if fraction < SCALE_SLIGHT_BELOW else ("strong" if fraction >= SCALE_STRONG_FROM else "clear")

    mw_s, mw_r = float(spread["max_weight_scaled"]), float(spread["max_weight_raw"])
    if reason == "unit scale":
        sentence = (
            f"At d_k = 1 the scale divides by √1 = 1, so the two settings give the same weights: the mean "
            f"row entropy is {mean_s:.2f} bits either way. Widen the heads (fewer heads, or a larger D) to "
            "see the scale matter."
        )
    elif reason == "one key per row":
        sentence = (
            "Every row here has a single visible key, whose weight is 1 whatever the scores are, so the "
            "scale changes nothing: 0 bits of entropy either way."
        )
    elif reason == "equal":
        sentence = f"At d_k = {L} the two settings give the same mean row entropy here, {mean_s:.2f} bits."
        if abs(mean_s - uniform) <= SCALE_SAME_BITS:  # e.g. "a a a": identical tokens, identical scores
            sentence += (" That is an even spread over the visible keys: within each row every key scores "
                         "alike, and equal scores stay equal whatever they are multiplied by.")
    else:
        effect = {
            "slight": "a slight sharpening",
            "clear": "a clear sharpening",
            "strong": "a strong sharpening, towards one-hot rows",
        }[verdict]
        sentence = (
            f"At d_k = {L}, leaving out the scale lowers the mean row entropy from {mean_s:.2f} to "
            f"{mean_r:.2f} bits ({fraction:.0%} lower; an even spread would be {uniform:.2f} bits) and "
            f"raises the mean largest weight from {mw_s:.2f} to {mw_r:.2f}: {effect}."
        )

    H = len(per_s)
    if not lower and not higher:
        why = {"unit scale": "at d_k = 1 the scale is ÷1", "one key per row": "each row has one visible key"}
        heads_sentence = f"The two marks coincide for every head: {why.get(reason, 'the entropies are equal')}."
    else:
        parts = []
        if lower:
            every = "every head moves" if len(lower) == H > 1 else (
                "the head moves" if H == 1 else f"{_heads(lower)} {'moves' if len(lower) == 1 else 'move'}")
            parts.append(f"{every} left, towards one-hot rows")
        if higher:
            parts.append(f"{_heads(higher)} {'moves' if len(higher) == 1 else 'move'} right")
        if same:
            parts.append(f"{_heads(same)} {'stays' if len(same) == 1 else 'stay'} where {'it is' if len(same) == 1 else 'they are'}")
        heads_sentence = "Without the scale " + "; ".join(parts) + "."
    return ScaleEffect(
        d_head=L, entropy_scaled=mean_s, entropy_raw=mean_r, entropy_uniform=uniform, drop_bits=drop,
        drop_fraction=fraction, max_weight_scaled=mw_s, max_weight_raw=mw_r, verdict=verdict, reason=reason,
        heads_lower=lower, heads_same=same, heads_higher=higher, sentence=sentence, heads_sentence=heads_sentence,
    )


# ---- tables ----------------------------------------------------------------------------------------


def tokens_frame(trace_or_tokens: ToyTrace | Tokens) -> pd.DataFrame:
    """One row per position: the token, its id, and where the id's one-hot 1 sits."""
    t = trace_or_tokens
    return pd.DataFrame({"position": range(len(t.tokens)), "token": t.tokens, "id": t.ids})


def vocab_frame(trace_or_tokens: ToyTrace | Tokens) -> pd.DataFrame:
    t = trace_or_tokens
    counts = pd.Series(t.tokens).value_counts()
    return pd.DataFrame(
        {"id": range(len(t.vocab)), "token": t.vocab, "occurrences": [int(counts[w]) for w in t.vocab]}
    )


def one_hot_frame(trace_or_tokens: ToyTrace | Tokens) -> pd.DataFrame:
    """onehot(ids) [S, V] as 0/1: rows are positions, columns "id:token" of the vocabulary."""
    t = trace_or_tokens
    m = np.zeros((len(t.ids), len(t.vocab)), dtype=int)  # [S, V]
    m[np.arange(len(t.ids)), t.ids] = 1
    return pd.DataFrame(m, index=pd.Index(token_labels(t.tokens), name="token"), columns=token_labels(t.vocab))


def matrix_frame(m: Tensor, rows: list[str], prefix: str = "") -> pd.DataFrame:
    """[R, C] → a wide table, rows labelled, columns ``prefix0 … prefix{C-1}``."""
    arr = m.detach().cpu().numpy()
    return pd.DataFrame(arr, index=pd.Index(rows, name="token"), columns=[f"{prefix}{c}" for c in range(arr.shape[1])])


def head_columns(H: int, L: int) -> list[str]:
    """Column names of the concatenated layout: "h0 l0" … "h{H-1} l{L-1}" (head h, coordinate l),
    so column hL + l of an [S, H·L] matrix is named by both of its indices."""
    return [f"h{h} l{l}" for h in range(H) for l in range(L)]


def heads_frame(t: Tensor, rows: list[str]) -> pd.DataFrame:
    """[H, S, L] → [S, H·L] table with columns ``h{h} l{l}`` (the concatenated layout)."""
    H, S, L = t.shape
    wide = t.permute(1, 0, 2).reshape(S, H * L).numpy()  # [S, H·L]
    return pd.DataFrame(wide, index=pd.Index(rows, name="token"), columns=head_columns(H, L))


def qkv_frame(trace: ToyTrace) -> pd.DataFrame:
    """q, k and v in one numeric table: 3·S rows (tensor, token), H·L columns ``h{h} l{l}``."""
    parts = []
    for name in ("q", "k", "v"):
        wide = heads_frame(getattr(trace, name), trace.labels).reset_index()  # [S, 1 + H·L]
        wide.insert(0, "tensor", name)
        parts.append(wide)
    return pd.concat(parts, ignore_index=True)


def qkv_long(trace: ToyTrace) -> pd.DataFrame:
    """q, k, v of every (head, token, coordinate l), long form for download."""
    H, S, L = trace.q.shape
    h, i, l = np.meshgrid(np.arange(H), np.arange(S), np.arange(L), indexing="ij")
    return pd.DataFrame({
        "head": h.ravel(), "position": i.ravel(), "token": np.array(trace.tokens, dtype=object)[i.ravel()],
        "l": l.ravel(), "q": trace.q.numpy().ravel(), "k": trace.k.numpy().ravel(), "v": trace.v.numpy().ravel(),
    })


def weights_long(trace: ToyTrace) -> pd.DataFrame:
    """Every (head, query, key) cell: raw score, scaled score, weight, and whether it is masked."""
    H, S, _ = trace.pattern.shape
    h, i, j = np.meshgrid(np.arange(H), np.arange(S), np.arange(S), indexing="ij")
    labels = np.array(trace.labels, dtype=object)
    masked = trace.mask.numpy()[i.ravel(), j.ravel()]
    scores = trace.scores.numpy().ravel()
    return pd.DataFrame({
        "head": h.ravel(),
        "query_pos": i.ravel(), "query": labels[i.ravel()],
        "key_pos": j.ravel(), "key": labels[j.ravel()],
        "raw_score": trace.raw_scores.numpy().ravel(),
        "score": np.where(masked, np.nan, scores),  # −inf would not survive JSON; NaN + masked says it
        "weight": trace.pattern.numpy().ravel(),
        "masked": masked,
    })


def weights_table(trace: ToyTrace, head: int) -> pd.DataFrame:
    """Head ``head``'s pattern as query rows × key columns, numbers only: a masked cell holds the 0
    it is (``trace.mask`` says which), then each row's sum and its entropy in bits."""
    p = trace.pattern[head].numpy()  # [S, S] masked entries are exactly 0 after the softmax
    df = pd.DataFrame(p, index=pd.Index(trace.labels, name="query ↓ key →"), columns=trace.labels)
    df["Σ row"] = p.sum(axis=1)  # [S]
    df["entropy (bits)"] = row_entropy(trace.pattern[head]).numpy()  # [S]
    return df


def terms_frame(trace: ToyTrace, i: int) -> pd.DataFrame:
    """Query ``i``, every head: per head one row per key j with a_ij and the term a_ij·v_j, then
    the sum row: Σ_j a_ij (= 1) and z_i. Every cell a number (v_j itself is in ``qkv_frame``);
    ``masked`` marks hidden keys, whose a_ij and terms are the 0 they are."""
    terms, z_i = context_terms(trace, i)  # [H, S, L], [H, L]
    H, S, L = terms.shape
    parts = []
    for h in range(H):
        a = trace.pattern[h, i].numpy()  # [S]
        columns = {"head": h, "key": trace.labels, "masked": trace.mask[i].numpy(), "a_ij": a}
        columns.update({f"a·v[{l}]": terms[h, :, l].numpy() + 0.0 for l in range(L)})  # + 0.0: 0·(−v) is −0.0
        total = {"head": h, "key": f"z_{i} = Σ", "masked": False, "a_ij": float(a.sum())}
        total.update({f"a·v[{l}]": float(z_i[h, l]) for l in range(L)})
        parts += [pd.DataFrame(columns), pd.DataFrame([total])]
    return pd.concat(parts, ignore_index=True)


def terms_long(trace: ToyTrace, i: int) -> pd.DataFrame:
    """Every term a_ij·v_j[l] for query ``i`` (all heads), then a sum row per head, long form."""
    terms, z_i = context_terms(trace, i)  # [H, S, L], [H, L]
    H, S, L = terms.shape
    rows = np.array([*trace.labels, f"z_{i} (sum)"], dtype=object)  # [S+1] keys, then the sum
    a = torch.cat([trace.pattern[:, i, :], torch.full((H, 1), float("nan"), dtype=DTYPE)], dim=1)  # [H, S+1]
    v = torch.cat([trace.v, torch.full((H, 1, L), float("nan"), dtype=DTYPE)], dim=1)  # [H, S+1, L]
    value = torch.cat([terms, z_i[:, None, :]], dim=1) + 0.0  # [H, S+1, L]; + 0.0 turns 0·(−v) = −0.0 into 0
    masked = np.append(trace.mask[i].numpy(), False)  # [S+1]
    h, r, l = np.meshgrid(np.arange(H), np.arange(S + 1), np.arange(L), indexing="ij")
    h, r, l = h.ravel(), r.ravel(), l.ravel()
    return pd.DataFrame({
        "head": h, "row": rows[r], "kind": np.where(r == S, "sum", "term"), "l": l,
        "a_ij": a.numpy()[h, r], "v": v.numpy().ravel(), "value": value.numpy().ravel(),
        "masked": masked[r],
    })
