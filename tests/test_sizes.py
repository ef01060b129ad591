"""core.sizes: one immutable type for a layer's sizes, and the rules that make them a layer."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.sizes import (
    RUNNING_EXAMPLE,
    LayerSizes,
    divisors,
    heads_rule,
    kv_heads_rule,
    nearest_heads,
    nearest_kv_heads,
)

positive = st.integers(1, 4096)


@st.composite
def valid_sizes(draw):
    """A layer that obeys every rule: H divides D, H_kv divides H."""
    H = draw(st.integers(1, 64))
    L = draw(st.integers(1, 64))
    H_kv = draw(st.sampled_from(divisors(H)))
    return LayerSizes(draw(positive), draw(positive), draw(positive), H * L, H, H_kv)


def test_running_example():
    s = RUNNING_EXAMPLE
    assert (s.batch, s.seq, s.vocab, s.d_model, s.n_heads) == (1, 20, 50_000, 512, 8)
    assert (s.n_kv_heads, s.d_head, s.group_size, s.is_grouped) == (8, 64, 1, False)
    assert s.letters() == {"B": 1, "S": 20, "V": 50_000, "D": 512, "H": 8, "H_kv": 8, "L": 64, "G": 1}


@given(valid_sizes())
def test_valid_sizes_derive_their_widths(s):
    assert s.problems() == []
    assert s.d_head * s.n_heads == s.d_model
    assert s.group_size * s.n_kv_heads == s.n_heads
    # Every query head reads exactly one key/value head; each key/value head serves G query heads.
    groups = [s.kv_head_of(h) for h in range(s.n_heads)]
    assert groups == sorted(groups) and set(groups) == set(range(s.n_kv_heads))
    for g in range(s.n_kv_heads):
        assert s.query_heads_of(g) == [h for h in range(s.n_heads) if groups[h] == g]
        assert len(s.query_heads_of(g)) == s.group_size


@given(valid_sizes())
def test_frozen_hashable_and_equal_by_value(s):
    same = LayerSizes(**s.as_dict())
    assert same == s and hash(same) == hash(s) and len({s, same}) == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.n_heads = 3  # type: ignore[misc]


def test_default_kv_heads_is_the_head_count():
    a = LayerSizes(1, 20, 50_000, 512, 8)
    b = LayerSizes(1, 20, 50_000, 512, 8, 8)
    assert a == b and hash(a) == hash(b) and a.n_kv_heads == 8


def test_with_heads_rederives_kv_heads():
    grouped = RUNNING_EXAMPLE.with_heads(8, 2)
    assert (grouped.n_kv_heads, grouped.group_size, grouped.is_grouped) == (2, 4, True)
    assert grouped.with_heads(4).n_kv_heads == 4  # not the old 2
    assert grouped.without_sharing() == RUNNING_EXAMPLE


@given(positive, st.integers(1, 256))
def test_heads_rule_is_divisibility(D, H):
    msg = heads_rule(D, H)
    assert (msg is None) == (D % H == 0)
    assert bool(LayerSizes.check(batch=1, seq=1, vocab=1, d_model=D, n_heads=H)) == (D % H != 0)
    if msg:
        assert f"{H} heads don't divide a width of {D}" in msg and "Try heads = " in msg
        # Every suggestion works.
        suggested = msg.split("Try heads = ")[1].split(", or")[0].split(", ")
        assert all(D % int(h) == 0 for h in suggested)


@given(st.integers(1, 256), st.integers(-5, 300))
def test_kv_heads_rule_is_divisibility(H, H_kv):
    msg = kv_heads_rule(H, H_kv)
    ok = 1 <= H_kv <= H and H % H_kv == 0
    assert (msg is None) == ok
    problems = LayerSizes.check(batch=1, seq=1, vocab=1, d_model=H, n_heads=H, n_kv_heads=H_kv)
    assert (problems == []) == ok
    if msg:
        assert f"kv_heads can be {', '.join(map(str, divisors(H)))}" in msg


def test_kv_heads_messages_read_well():
    assert "more than the 8 query heads" in kv_heads_rule(8, 9)
    assert "at least 1" in kv_heads_rule(8, 0)
    assert "8/3 = 2.67 query heads" in kv_heads_rule(8, 3)
    assert "1 query heads" not in kv_heads_rule(1, 2) and "the 1 query head:" in kv_heads_rule(1, 2)


@given(st.integers(1, 512), st.integers(-1000, 1000))
def test_nearest_kv_heads_is_the_closest_divisor(H, asked):
    got = nearest_kv_heads(H, asked)
    assert H % got == 0
    assert all(abs(d - asked) >= abs(got - asked) for d in divisors(H))
    if H % asked == 0 if asked >= 1 else False:
        assert got == asked


def test_nearest_kv_heads_examples():
    assert [nearest_kv_heads(8, a) for a in (0, 1, 3, 5, 6, 7, 99)] == [1, 1, 2, 4, 4, 8, 8]
    assert nearest_heads(512, 7) == 8 and nearest_heads(512, 1000, hi=64) == 64


@given(st.integers(1, 100_000))
def test_divisors(n):
    ds = divisors(n)
    assert ds == [d for d in range(1, n + 1) if n % d == 0] if n <= 2000 else all(n % d == 0 for d in ds)
    assert ds[0] == 1 and ds[-1] == n


@pytest.mark.parametrize("bad", [0, -1, 2.5, "8", True, None])
def test_non_sizes_are_refused_with_a_sentence(bad):
    problems = LayerSizes.check(batch=bad, seq=20, vocab=50_000, d_model=512, n_heads=8)
    assert problems and "batch" in problems[0]
    with pytest.raises(ValueError, match="batch"):
        LayerSizes(bad, 20, 50_000, 512, 8)


def test_explicit_head_dim_lifts_the_width_rule():
    # Gemma 7B: D 3072, 16 heads of 256 (16·256 = 4096 ≠ 3072), all heads share nothing.
    s = LayerSizes(1, 20, 256_000, 3072, 16, head_dim=256)
    assert s.d_head == 256 and s.n_heads * s.d_head != s.d_model
    assert LayerSizes(1, 20, 256_000, 3072, 16).d_head == 192  # without it, L = D / H
    assert LayerSizes(1, 1, 1, 100, 3, head_dim=7).d_head == 7  # H need not divide D then
    assert LayerSizes.check(batch=1, seq=1, vocab=1, d_model=8, n_heads=2, head_dim=0) != []


def test_head_dim_equal_to_the_usual_width_is_the_same_layer():
    assert LayerSizes(1, 20, 50_000, 512, 8, head_dim=64) == RUNNING_EXAMPLE
    assert LayerSizes(1, 20, 50_000, 512, 8, head_dim=64).head_dim is None


def test_from_controls_reads_the_url_names():
    assert LayerSizes.from_controls({}) == RUNNING_EXAMPLE
    s = LayerSizes.from_controls({"batch": 2, "seq": 5, "d_model": 64, "heads": 4, "kv_heads": 2})
    assert (s.batch, s.seq, s.vocab, s.d_model, s.n_heads, s.n_kv_heads) == (2, 5, 50_000, 64, 4, 2)
    assert LayerSizes.from_controls({"heads": 4}).n_kv_heads == 4  # no kv_heads control: no sharing
    with pytest.raises(ValueError, match="don't divide a width of 512"):
        LayerSizes.from_controls({"heads": 7})
