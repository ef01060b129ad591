"""core/toy_sentence.py: the tokenizer, the seeded embeddings, and the einsum forward pass of the sentence page."""

from __future__ import annotations

import math
import unicodedata

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from core import toy_sentence as toy
from core.attention import multi_head_attention

SEED_SENTENCE = "my name is Marcello Politi"


# ---- tokenizer ------------------------------------------------------------------------------------


def test_seed_sentence_tokens_vocab_and_ids():
    read = toy.read_sentence(SEED_SENTENCE, 24)
    assert read.tokens == ["my", "name", "is", "Marcello", "Politi"]
    assert read.vocab == ["Marcello", "Politi", "is", "my", "name"]  # code-point order: capitals first
    assert read.ids == [3, 4, 2, 0, 1]
    assert read.found == 5


@pytest.mark.parametrize(
    "text, tokens",
    [
        ("Hello, world!", ["Hello", ",", "world", "!"]),
        ("don't", ["don", "'", "t"]),
        ("<b>hi</b>", ["<", "b", ">", "hi", "<", "/", "b", ">"]),
        ("**x** $y$", ["*", "*", "x", "*", "*", "$", "y", "$"]),
        ("我的名字 Marcello", ["我", "的", "名", "字", "Marcello"]),
        ("नमस्ते दुनिया", ["नमस्ते", "दुनिया"]),  # vowel signs and virama stay inside the word
        ("مرحبا بالعالم", ["مرحبا", "بالعالم"]),
        ("GPT4 snake_case", ["GPT4", "snake_case"]),
        ("👩\u200d💻 codes", ["👩\u200d💻", "codes"]),  # zero-width joiner sequence: one picture
        ("🇮🇹🇫🇷", ["🇮🇹", "🇫🇷"]),  # regional-indicator pairs: one flag each
        ("👍🏽👍", ["👍🏽", "👍"]),  # skin tone stays with its hand
        ("1\ufe0f\u20e3", ["1\ufe0f\u20e3"]),  # keycap
        ("a\x00b\tc\nd", ["a", "b", "c", "d"]),  # control characters separate like spaces
        ("\u202eevil\u202c", ["evil"]),  # bidi overrides are dropped
        ("", []),
        (" \t\n\u3000 ", []),
    ],
)
def test_tokenize(text, tokens):
    assert toy.tokenize(text) == tokens


def test_nfc_makes_two_spellings_one_token():
    composed, decomposed = "caf\u00e9", "cafe\u0301"
    assert toy.tokenize(composed) == toy.tokenize(decomposed) == ["café"]


def test_lone_surrogates_do_not_break_anything():
    read = toy.read_sentence("a\ud800b", 24)
    assert read.tokens == ["a", "\ufffd", "b"]  # the replacement character is a symbol: its own token
    toy.token_embedding("a\ud800", 4, 0)  # even a raw surrogate hashes


def _visible(text: str) -> str:
    return "".join(c for c in toy.clean_text(text) if not (c.isspace() or unicodedata.category(c).startswith("Z")))


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=60))
def test_tokens_partition_the_visible_text(text):
    """Whatever the input, tokens are non-empty, hold no spaces, and together spell the text."""
    tokens = toy.tokenize(text)
    assert all(tokens) and not any(c.isspace() for t in tokens for c in t)
    assert "".join(tokens) == _visible(text)
    assert toy.tokenize(text) == tokens  # deterministic


def test_read_sentence_caps_tokens_and_builds_vocab_of_what_is_kept():
    read = toy.read_sentence("b a " * 20 + "z", 5)
    assert read.tokens == ["b", "a", "b", "a", "b"]
    assert read.found == 41
    assert read.vocab == ["a", "b"]
    assert [read.vocab[i] for i in read.ids] == read.tokens


def test_sentence_problem():
    assert toy.sentence_problem(SEED_SENTENCE) is None
    assert "empty" in toy.sentence_problem("")
    assert "empty" in toy.sentence_problem("   \n ")
    assert "no visible characters" in toy.sentence_problem("\u202e\u202c")


def test_labels_are_unique_and_short():
    labels = toy.token_labels(["the", "cat", "the", "x" * 50])
    assert len(set(labels)) == 4
    assert labels[0] == "0:the" and labels[2] == "2:the"  # a colon: on the page "·" multiplies
    assert not any("·" in label for label in labels)
    assert len(labels[3]) <= toy.LABEL_CHARS + 3 and labels[3].endswith("…")


# ---- embeddings -------------------------------------------------------------------------------------


def test_embeddings_are_seeded_per_token_text():
    a = toy.token_embedding("name", 16, seed=0)
    assert a.shape == (16,) and a.dtype == torch.float64
    assert torch.equal(a, toy.token_embedding("name", 16, seed=0))
    assert not torch.equal(a, toy.token_embedding("name", 16, seed=1))
    assert not torch.equal(a, toy.token_embedding("Name", 16, seed=0))
    assert torch.equal(toy.token_embedding("name", 32, seed=0)[:16], a)  # wider D appends coordinates


@pytest.mark.parametrize("narrow", [1, 4, 8, 15, 16, 17, 31, 33, 63])
def test_a_wider_d_only_appends_coordinates_at_every_width(narrow):
    """The page says so; torch's sampler alone would not keep it below 16 or off multiples of 16."""
    wide = toy.token_embedding("Marcello", 64, seed=3)
    assert torch.equal(toy.token_embedding("Marcello", narrow, seed=3), wide[:narrow])


def test_a_word_keeps_its_vector_in_another_sentence():
    t1 = toy.run_toy("my name is Ada".split(), 16, 4, seed=3)
    t2 = toy.run_toy("what is your name".split(), 16, 4, seed=3)
    assert torch.equal(t1.x[1], t2.x[3])  # "name" at different positions, different ids
    assert t1.ids[1] != t2.ids[3]


# ---- the forward pass ---------------------------------------------------------------------------


def test_shapes_follow_the_tutorial():
    tr = toy.run_toy(toy.tokenize(SEED_SENTENCE), 16, 4, seed=0)
    assert tr.x.shape == (5, 16)
    assert tr.weights.W_Q.shape == (4, 16, 4) and tr.weights.W_O.shape == (4, 4, 16)
    assert tr.q.shape == tr.k.shape == tr.v.shape == (4, 5, 4)
    assert tr.scores.shape == tr.pattern.shape == (4, 5, 5)
    assert tr.z.shape == (4, 5, 4) and tr.z_concat.shape == (5, 16)
    assert tr.out.shape == tr.out_sum.shape == (5, 16) and tr.per_head.shape == (5, 4, 16)
    assert torch.equal(tr.x, tr.W_E[tr.ids])  # one-hot @ W_E picks rows


def test_repeated_tokens_share_an_embedding():
    tr = toy.run_toy("the cat saw the dog".split(), 8, 2)
    assert torch.equal(tr.x[0], tr.x[3])


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("scale", [True, False])
def test_agrees_with_the_shared_implementation(causal, scale):
    tr = toy.run_toy("the quick brown fox jumps over the lazy dog".split(), 24, 3, seed=7, causal=causal, scale=scale)
    ref = multi_head_attention(tr.x[None], tr.weights, causal=causal, scale=scale)
    torch.testing.assert_close(tr.q, ref.q[0])
    torch.testing.assert_close(tr.pattern, ref.pattern[0])
    torch.testing.assert_close(tr.z, ref.z[0])
    torch.testing.assert_close(tr.per_head, ref.per_head[0])
    torch.testing.assert_close(tr.out, ref.out_concat[0])
    torch.testing.assert_close(tr.out_sum, tr.out)  # concat-then-project = sum of heads


@settings(max_examples=12, deadline=None)
@given(
    n=st.integers(1, 12), heads=st.sampled_from([1, 2, 4, 8]), width=st.sampled_from([1, 2, 3]),
    seed=st.integers(0, 2**31 - 1), causal=st.booleans(), scale=st.booleans(),
)
def test_weights_are_probabilities_and_the_mask_holds(n, heads, width, seed, causal, scale):
    tokens = [f"w{i % 5}" for i in range(n)]
    tr = toy.run_toy(tokens, heads * width, heads, seed=seed, causal=causal, scale=scale)
    p = tr.pattern  # [H, S, S]
    assert (p >= 0).all() and (p <= 1).all()
    torch.testing.assert_close(p.sum(-1), torch.ones(heads, n, dtype=p.dtype))
    upper = torch.ones(n, n, dtype=torch.bool).triu(1)
    assert bool((p[:, upper] == 0).all()) == causal or n == 1
    if causal:
        assert torch.equal(tr.mask, upper)
        assert torch.isneginf(tr.scores[:, upper]).all()
        assert (p[:, 0, 0] == 1).all()  # the first token sees only itself


def test_scale_divides_by_root_dk():
    toks = toy.tokenize(SEED_SENTENCE)
    on, off = toy.run_toy(toks, 16, 4, scale=True), toy.run_toy(toks, 16, 4, scale=False)
    torch.testing.assert_close(on.scores * 2.0, off.scores)  # d_k = 4
    torch.testing.assert_close(on.raw_scores, off.raw_scores)


def test_context_terms_one_token_equals_the_matrix_product():
    tr = toy.run_toy("a b c d e f".split(), 12, 3, seed=1, causal=True)
    for i in range(6):
        terms, z_i = toy.context_terms(tr, i)  # [H, S, L], [H, L]
        assert terms.shape == (3, 6, 4)
        torch.testing.assert_close(z_i, tr.z[:, i, :], rtol=0, atol=1e-14)
        assert (terms[:, i + 1:, :] == 0).all()  # masked keys add nothing


# ---- why the scale ------------------------------------------------------------------------------


def test_row_entropy_bounds():
    uniform = torch.full((1, 4), 0.25, dtype=torch.float64)
    one_hot = torch.tensor([[0.0, 1.0, 0.0]], dtype=torch.float64)
    assert toy.row_entropy(uniform).item() == pytest.approx(2.0)
    assert toy.row_entropy(one_hot).item() == 0.0


def test_without_the_scale_wide_heads_go_nearly_one_hot():
    tokens = toy.tokenize("attention is a sum of heads and each head writes its own vector")
    tr = toy.run_toy(tokens, 64, 1, seed=0)  # d_k = 64
    sp = toy.score_spread(tr)
    assert sp["raw_std"] == pytest.approx(sp["scaled_std"] * 8)
    assert 4 < sp["raw_std"] < 16  # about √64 = 8: the reason for the scale, measured
    assert sp["entropy_raw"].mean() < 0.5 * sp["entropy_scaled"].mean()
    assert sp["max_weight_raw"] > sp["max_weight_scaled"]
    assert np.all(sp["entropy_scaled"] <= sp["entropy_max"] + 1e-12)


def test_spread_counts_only_visible_pairs_when_causal():
    tr = toy.run_toy("a b c d".split(), 8, 2, causal=True)
    sp = toy.score_spread(tr)
    visible = tr.raw_scores[:, ~tr.mask]
    assert sp["raw_std"] == pytest.approx(float(visible.std(correction=0)))
    np.testing.assert_allclose(sp["entropy_max"], [math.log2(k) for k in (1, 2, 3, 4)])


# ---- tables ---------------------------------------------------------------------------------------


def test_tables():
    tr = toy.run_toy("the cat sat on the mat".split(), 8, 2, causal=True)
    w = toy.weights_table(tr, 1)
    assert list(w.index) == tr.labels and list(w.columns) == [*tr.labels, "Σ row", "entropy (bits)"]
    assert all(w[c].dtype == np.float64 for c in w.columns)  # numeric, so it sorts and copies as numbers
    np.testing.assert_allclose(w["Σ row"], 1.0)
    keys = w[tr.labels].to_numpy()
    assert (keys[np.triu_indices(6, 1)] == 0).all()  # a masked weight is the 0 it is, not NaN or text
    assert not np.isnan(keys).any() and (keys[np.tril_indices(6)] > 0).all()
    np.testing.assert_allclose(w["entropy (bits)"], toy.row_entropy(tr.pattern[1]).numpy())

    long = toy.weights_long(tr)
    assert len(long) == 2 * 36 and long["masked"].sum() == 2 * 15
    assert (long.loc[long["masked"], "weight"] == 0).all()

    terms = toy.terms_frame(tr, 2)  # every head: 6 keys and a sum row each
    assert len(terms) == 2 * 7 and terms["key"].iloc[6] == "z_2 = Σ" and terms["head"].tolist() == [0] * 7 + [1] * 7
    head0 = terms[terms["head"] == 0]
    np.testing.assert_allclose(head0.iloc[-1][[f"a·v[{l}]" for l in range(4)]].astype(float), tr.z[0, 2].numpy())
    assert head0["masked"].tolist() == [False, False, False, True, True, True, False]
    numeric = [c for c in terms.columns if c not in ("head", "key", "masked")]
    assert all(terms[c].dtype == np.float64 for c in numeric)  # numbers stay numbers
    masked_rows = terms[terms["masked"]]
    assert (masked_rows["a_ij"] == 0).all() and (masked_rows[[f"a·v[{l}]" for l in range(4)]] == 0).all().all()
    assert not np.signbit(masked_rows[[f"a·v[{l}]" for l in range(4)]].to_numpy()).any()  # 0, not −0

    long_terms = toy.terms_long(tr, 2)
    assert len(long_terms) == 2 * 7 * 4
    sums = long_terms[long_terms["kind"] == "sum"]
    np.testing.assert_allclose(sums["value"], tr.z[:, 2, :].numpy().ravel())

    one_hot = toy.one_hot_frame(tr)  # [S, V]
    assert one_hot.shape == (6, 5) and (one_hot.sum(axis=1) == 1).all()
    np.testing.assert_array_equal(one_hot.to_numpy(), tr.one_hot.numpy())

    tok = toy.tokens_frame(tr)
    assert tok["id"].tolist() == tr.ids
    vocab = toy.vocab_frame(tr)
    assert vocab.set_index("token").loc["the", "occurrences"] == 2

    q = toy.heads_frame(tr.q, tr.labels)
    assert q.shape == (6, 8) and q.columns[4] == "h1 l0"  # column hL + l: head 1, coordinate 0
    np.testing.assert_array_equal(q.to_numpy(), tr.q.permute(1, 0, 2).reshape(6, 8).numpy())

    qkv = toy.qkv_frame(tr)  # q, k, v stacked: 3·S rows
    assert qkv.shape == (18, 2 + 8) and qkv["tensor"].tolist() == ["q"] * 6 + ["k"] * 6 + ["v"] * 6
    np.testing.assert_array_equal(qkv.iloc[12:, 2:].to_numpy(), toy.heads_frame(tr.v, tr.labels).to_numpy())


# ---- the scale's effect, in words derived from the numbers -----------------------------------------


def _effect(d_model, heads, causal=False, sentence=SEED_SENTENCE):
    return toy.scale_effect(toy.score_spread(toy.run_toy(toy.tokenize(sentence), d_model, heads, causal=causal)))


@pytest.mark.parametrize("d_k", [16, 32, 64])
def test_wide_heads_are_not_called_mild(d_k):
    """The old page printed "the effect is mild" at every d_k; at d_k = 16 the entropy fell from
    1.56 to 0.18 bits. One head of width D = d_k: the sentence says what was measured."""
    e = _effect(d_k, 1)
    assert e.d_head == d_k and e.verdict == "strong" and e.drop_fraction >= toy.SCALE_STRONG_FROM
    assert "mild" not in e.sentence and "strong" in e.sentence
    assert f"from {e.entropy_scaled:.2f} to {e.entropy_raw:.2f} bits" in e.sentence
    assert f"At d_k = {d_k}," in e.sentence and f"{e.drop_fraction:.0%} lower" in e.sentence
    assert e.heads_lower == [0] and e.heads_sentence.startswith("Without the scale the head moves left")


def test_default_and_narrow_heads_get_their_own_words():
    default = _effect(16, 4)  # d_k = 4
    assert default.verdict == "clear" and "a clear sharpening" in default.sentence
    narrow = _effect(2, 1)  # d_k = 2
    assert narrow.verdict == "slight" and narrow.drop_fraction < toy.SCALE_SLIGHT_BELOW


@pytest.mark.parametrize("d_model, heads", [(4, 4), (16, 16), (1, 1)])
def test_at_d_k_one_nothing_moves_and_nothing_is_said_to(d_model, heads):
    """L = 1: the scale divides by √1 = 1, the entropies are equal, and no head "moves left"."""
    e = _effect(d_model, heads)
    assert e.verdict == "none" and e.reason == "unit scale" and e.drop_bits == 0.0
    assert e.heads_lower == [] and e.heads_same == list(range(heads))
    assert "moves left" not in e.heads_sentence and "coincide" in e.heads_sentence
    assert "√1 = 1" in e.sentence


def test_one_token_has_nothing_to_sharpen():
    e = _effect(16, 4, sentence="hello")
    assert e.verdict == "none" and e.reason == "one key per row" and "moves" not in e.heads_sentence


def test_heads_that_move_and_heads_that_do_not_are_named_apart():
    spread = toy.score_spread(toy.run_toy(toy.tokenize(SEED_SENTENCE), 16, 2))
    spread["entropy_raw"] = spread["entropy_raw"].copy()
    spread["entropy_raw"][1] = spread["entropy_scaled"][1]  # pretend head 1 did not change
    e = toy.scale_effect(spread)
    assert e.heads_lower == [0] and e.heads_same == [1]
    assert e.heads_sentence == "Without the scale head 0 moves left, towards one-hot rows; head 1 stays where it is."


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 10), heads=st.sampled_from([1, 2, 4]), width=st.sampled_from([1, 2, 4, 8]),
       seed=st.integers(0, 2**31 - 1), causal=st.booleans())
def test_leaving_out_the_scale_never_flattens_a_head(n, heads, width, seed, causal):
    """Multiplying a softmax's inputs by √L ≥ 1 never raises its entropy: the page's mechanism."""
    tr = toy.run_toy([f"w{i % 4}" for i in range(n)], heads * width, heads, seed=seed, causal=causal)
    e = toy.scale_effect(toy.score_spread(tr))
    assert e.heads_higher == [] and e.drop_bits >= -toy.SCALE_SAME_BITS
    assert sorted(e.heads_lower + e.heads_same) == list(range(heads))
    if width == 1:
        assert e.verdict == "none" and e.heads_lower == []
    assert ("every head moves left" in e.heads_sentence) == (len(e.heads_lower) == heads > 1)


def test_einsum_letters_have_one_meaning_each():
    """No e (Euler's number in the softmax) and no k (the key vectors, and d_k) as einsum axes."""
    import inspect
    import re

    specs = re.findall(r'einsum\("([^"]+)"', inspect.getsource(toy))
    assert len(specs) >= 5
    for spec in specs:
        assert not set(spec) & {"e", "k", "s"}, spec
