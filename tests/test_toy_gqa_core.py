"""Grouped-query attention on the sentence (core.toy_sentence) and the page's checkpoint builders
(core.checkpoints.toy_sentence): the shared keys are copies, the result agrees with the essay's
shared implementation, two heads of a group still attend differently, and every checkpoint has
exactly one right option, the one the numbers give, at any sentence, sizes and seed."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core import toy_sentence as toy
from core.attention import multi_head_attention
from core.checkpoints import dims_text
from core.checkpoints import toy_sentence as cps
from core.sizes import divisors

SENTENCE = toy.tokenize(toy.DEFAULT_SENTENCE)
WORDS = ["my", "name", "is", "a", "the", "cat", "Politi", "😀", "a"]  # "a" twice: repeats are likely


@st.composite
def settings_(draw):
    """A sentence of 1–6 words and sizes that make a layer: H | D, H_kv | H."""
    tokens = draw(st.lists(st.sampled_from(WORDS), min_size=1, max_size=6))
    d_model = draw(st.sampled_from([1, 2, 4, 6, 8, 12, 16]))
    heads = draw(st.sampled_from(divisors(d_model)))
    kv = draw(st.sampled_from(divisors(heads)))
    return dict(tokens=tokens, d_model=d_model, n_heads=heads, n_kv_heads=kv,
                seed=draw(st.integers(0, 50)), causal=draw(st.booleans()), scale=draw(st.booleans()))


def _trace(s: dict) -> toy.ToyTrace:
    return toy.run_toy(s["tokens"], s["d_model"], s["n_heads"], n_kv_heads=s["n_kv_heads"], seed=s["seed"],
                       causal=s["causal"], scale=s["scale"])


# ---- the forward pass with shared keys and values --------------------------------------------------


def test_kv_heads_equal_to_heads_reproduces_multi_head_bit_for_bit():
    plain = toy.run_toy(SENTENCE, 16, 4, seed=3, causal=True)
    same = toy.run_toy(SENTENCE, 16, 4, n_kv_heads=4, seed=3, causal=True)
    for name in ("q", "k", "v", "pattern", "z", "out"):
        assert torch.equal(getattr(plain, name), getattr(same, name)), name
    assert plain.k_kv is plain.k  # nothing to expand: the very same tensor


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(settings_())
def test_grouped_trace_copies_keys_and_agrees_with_the_shared_implementation(s):
    tr = _trace(s)
    H, G = s["n_heads"], s["n_heads"] // s["n_kv_heads"]
    S, L = len(s["tokens"]), s["d_model"] // s["n_heads"]
    assert tr.k_kv.shape == tr.v_kv.shape == (s["n_kv_heads"], S, L)  # [H_kv, S, L]
    assert tr.k.shape == tr.v.shape == (H, S, L)  # [H, S, L]
    for h in range(H):  # head h reads group h // G: a copy, every digit
        assert torch.equal(tr.k[h], tr.k_kv[h // G]) and torch.equal(tr.v[h], tr.v_kv[h // G])
    ref = multi_head_attention(tr.x[None], tr.weights, causal=s["causal"], scale=s["scale"])  # [1, …]
    torch.testing.assert_close(tr.pattern, ref.pattern[0], rtol=0, atol=1e-12)
    torch.testing.assert_close(tr.out, ref.out_concat[0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(tr.out_sum, tr.out, rtol=1e-12, atol=1e-12)


def test_sharing_changes_only_keys_and_values():
    """AttentionWeights.random keeps W_Q and W_O at every H_kv, so the queries don't move."""
    mha, gqa = toy.run_toy(SENTENCE, 16, 4, seed=1), toy.run_toy(SENTENCE, 16, 4, n_kv_heads=2, seed=1)
    assert torch.equal(mha.q, gqa.q)
    # head 1 takes head 0's keys (same weights; the einsum over 2 heads may round unlike the one over 4)
    torch.testing.assert_close(gqa.k[1], mha.k[0], rtol=1e-12, atol=1e-12)
    assert not torch.allclose(gqa.k[1], mha.k[1])


def test_bad_kv_heads_is_refused_in_words():
    with pytest.raises(ValueError, match="don't divide 4 query heads"):
        toy.run_toy(SENTENCE, 16, 4, n_kv_heads=3)


def test_tables_label_keys_and_values_by_group():
    tr = toy.run_toy(SENTENCE, 16, 4, n_kv_heads=2)
    kv = toy.kv_frame(tr)  # 2·S rows, 2 + H_kv·L columns
    assert kv.shape == (10, 2 + 8) and kv.columns[2:4].tolist() == ["g0 l0", "g0 l1"] and kv.columns[6] == "g1 l0"
    np.testing.assert_array_equal(kv.iloc[:5, 6:].to_numpy(), tr.k_kv[1].numpy())
    groups = toy.groups_frame(tr)
    assert groups["read by query heads"].tolist() == ["0, 1", "2, 3"]
    assert toy.q_frame(tr).shape == (5, 16)
    long = toy.qkv_long(tr)
    assert (long["kv_group"] == long["head"] // 2).all()


def test_shared_pair_same_keys_different_queries_and_weights():
    tr = toy.run_toy(SENTENCE, 16, 4, n_kv_heads=1)
    pair = toy.shared_pair(tr)
    assert pair.heads == (0, 1) and pair.group == 0 and pair.query == 4
    assert pair.k_diff == 0 and pair.v_diff == 0
    assert pair.q_diff == pytest.approx(float((tr.q[0] - tr.q[1]).abs().max()))
    assert pair.weights_differ and pair.weight_diff_all == pytest.approx(float((tr.pattern[0] - tr.pattern[1]).abs().max()))
    assert [r["key"] for r in pair.rows] == tr.labels
    assert toy.shared_pair(toy.run_toy(SENTENCE, 16, 4)) is None  # nothing shared


def test_shared_pair_of_identical_tokens_has_identical_weights():
    pair = toy.shared_pair(toy.run_toy(["a", "a", "a"], 16, 4, n_kv_heads=2))
    assert pair.q_diff > 0 and not pair.weights_differ


# ---- checkpoints: exactly one right option, the one the numbers give ---------------------------


def _all(tr: toy.ToyTrace):
    effect = toy.scale_effect(toy.score_spread(tr))
    return {
        "scores_shape": cps.scores_shape(tr),
        "scale_direction": cps.scale_direction(tr, effect),
        "top_key": cps.top_key(tr),
        "shared_weights": cps.shared_weights(tr, toy.shared_pair(tr)),
    }, effect


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(settings_())
def test_every_checkpoint_has_one_right_option_that_the_numbers_give(s):
    tr = _trace(s)
    found, effect = _all(tr)
    for cp in found.values():
        if cp is not None:
            assert len(set(cp.options)) == len(cp.options) >= 2
            assert cp.options.count(cp.right) == 1 and cp.why and cp.key.startswith("toy.")

    shape_cp = found["scores_shape"]
    assert shape_cp.right == dims_text(tr.scores.shape)  # the only option that prints like it
    assert sum(o == dims_text(tr.scores.shape) for o in shape_cp.options) == 1

    scale_cp = found["scale_direction"]
    ent_s, ent_r = float(effect.entropy_scaled), float(effect.entropy_raw)
    assert scale_cp.right != cps.SCALE_OPTIONS["flatter"]  # a factor ≥ 1 never flattens a softmax
    if ent_r < ent_s - 1e-9:
        assert scale_cp.right == cps.SCALE_OPTIONS["sharper"]
    else:
        assert scale_cp.right == cps.SCALE_OPTIONS["same"]

    top_cp = found["top_key"]
    row = tr.pattern[0, -1].numpy()  # [S] the last token's row in head 0
    ranked = np.sort(row)[::-1]
    if len(row) == 1 or ranked[0] - ranked[1] < cps.TOP_KEY_TIE:
        assert top_cp is None  # no single answer: not asked
    else:
        labels = [f"`{label}`" for label in tr.labels]
        assert top_cp.right == labels[int(row.argmax())]
        for option in top_cp.options:
            if option != top_cp.right:
                assert row[labels.index(option)] < ranked[0] - cps.TOP_KEY_TIE

    shared_cp = found["shared_weights"]
    if s["n_kv_heads"] == s["n_heads"]:
        assert shared_cp is None
    else:
        differ = float((tr.pattern[0] - tr.pattern[1]).abs().max()) > toy.SAME_WEIGHTS
        assert shared_cp.right == cps.SHARED_OPTIONS["differ" if differ else "same"]


def test_the_right_options_change_with_the_settings():
    """Each question is about this page's numbers: some setting changes its answer."""
    default = _all(toy.run_toy(SENTENCE, 16, 4))[0]
    assert _all(toy.run_toy(SENTENCE, 16, 2))[0]["scores_shape"].right != default["scores_shape"].right
    assert _all(toy.run_toy(["hello"], 16, 4))[0]["scale_direction"].right != default["scale_direction"].right
    tops = {_all(toy.run_toy(SENTENCE, 16, 4, seed=seed))[0]["top_key"].right for seed in range(8)}
    assert len(tops) > 1
    shared = {_all(toy.run_toy(t, 16, 4, n_kv_heads=2))[0]["shared_weights"].right for t in (SENTENCE, ["a", "a"])}
    assert shared == {cps.SHARED_OPTIONS["differ"], cps.SHARED_OPTIONS["same"]}


def test_settings_fingerprints_follow_what_decides_the_answer():
    base = _all(toy.run_toy(SENTENCE, 16, 4, seed=0))[0]
    other_seed = _all(toy.run_toy(SENTENCE, 16, 4, seed=1))[0]
    assert base["scores_shape"].settings == other_seed["scores_shape"].settings  # a shape ignores the seed
    assert base["top_key"].settings != other_seed["top_key"].settings
    unscaled = _all(toy.run_toy(SENTENCE, 16, 4, seed=0, scale=False))[0]
    assert base["scale_direction"].settings == unscaled["scale_direction"].settings  # measured both ways


def test_token_text_in_options_is_code_not_markup():
    cp = cps.top_key(toy.run_toy(["**", "$x$", "<b>", "`q`"], 8, 2, seed=2))
    assert cp is not None and all(o.startswith("`") and o.endswith("`") and o.count("`") == 2 for o in cp.options)
