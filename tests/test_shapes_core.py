"""core.shapes: the traced shape table against shapes worked out by hand, at many sizes."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.flop_counter import FlopCounterMode

import core.shapes as shapes
from core.identity import run_seeded
from core.shapes import (
    STEP_IDS,
    PathError,
    Sizes,
    evaluate,
    flat_table,
    flow_edges,
    numeric_columns,
    op_trace,
    panel_shape,
    path_summary,
    position_mixing,
    seed_slips,
    shape_table,
    step_values,
    tensor_numel,
    trace_path,
)


def by_hand(B: int, S: int, V: int, D: int, H: int, H_kv: int | None = None) -> dict[str, tuple]:
    """(input 1, input 2, output) of every step, written out from the post's table (and GQA's split of step 5)."""
    L = D // H
    K = H if H_kv is None else H_kv
    return {
        "1": ((B, S), None, (B, S, V)),
        "2": ((B, S, V), (V, D), (B, S, D)),
        "3": ((B, S, D), (S, D), (B, S, D)),
        "4": ((B, S, D), None, (B, S, D)),
        "5a": ((B, S, D), (H, D, L), (B, H, S, L)),
        "5b": ((B, S, D), (K, D, L), (B, K, S, L)),
        "5c": ((B, K, S, L), None, (B, H, S, L)),
        "6": ((B, H, S, L), (B, H, L, S), (B, H, S, S)),
        "7": ((B, H, S, S), (B, H, S, L), (B, H, S, L)),
        "8": ((B, H, S, L), None, (B, S, D)),
        "9": ((B, S, D), (D, D), (B, S, D)),
        "8′": ((B, H, S, L), (H, L, D), (B, S, H, D)),
        "9′": ((B, S, H, D), None, (B, S, D)),
    }


ALL_STEPS = ["1", "2", "3", "4", "5a", "5b", "5c", "6", "7", "8", "9", "8′", "9′"]


def check(table, B, S, V, D, H, H_kv=None):
    assert list(table["step"]) == list(STEP_IDS) == ALL_STEPS
    for step, (in_1, in_2, out) in by_hand(B, S, V, D, H, H_kv).items():
        row = table.set_index("step").loc[step]
        assert (row["input_1"], row["input_2"], row["output"]) == (in_1, in_2, out), step


SIZES = [
    (1, 20, 50_000, 512, 8),  # the post's running example
    (1, 5, 10, 16, 4),  # the from-scratch post's toy
    (2, 7, 11, 12, 3),  # nothing equal to anything else
    (3, 1, 1, 6, 6),  # one token, one word, heads of width 1
    (4, 9, 9, 9, 1),  # one head: L = D
]


@pytest.mark.parametrize("size", SIZES)
def test_table_matches_hand_computed_shapes(size):
    check(shape_table(*size), *size)


def test_the_posts_table_with_its_numbers():
    t = shape_table().set_index("step")  # defaults are the post's B=1 S=20 V=50,000 D=512 H=8
    assert t.loc["2", "input_2"] == (50_000, 512)
    assert t.loc["5a", "output"] == t.loc["5b", "output"] == t.loc["5c", "output"] == (1, 8, 20, 64)
    assert t.loc["6", "output"] == (1, 8, 20, 20)
    assert t.loc["8′", "output"] == (1, 20, 8, 512)
    assert t.loc["8", "held_as"] == (20, 512)  # core keeps B·S rows on one axis
    assert t.loc["2", "flops"] == 2 * 20 * 50_000 * 512
    assert t.loc["9", "param_count"] == 512 * 512
    assert t.loc["5a", "param_count"] == 512 * 512 and t.loc["5b", "param_count"] == 2 * 512 * 512
    assert t.loc["1", "output_bytes"] == 20 * 50_000 * 4  # float32
    assert t.loc["5a", "output_bytes"] == 8 * 20 * 64 * 4 and t.loc["5b", "output_bytes"] == 2 * 8 * 20 * 64 * 4
    assert t.loc["5c", "copies"] is False and t.loc["4", "copies"] is False  # nothing shared: no copy
    assert [t.loc[s, "contracted"] for s in ("2", "5a", "5b", "6", "7", "9", "8′", "9′")] == list("VDDLSDLH")
    assert t.loc["1", "input_2"] is None and t.loc["1", "contracted"] is None


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 4), st.integers(1, 40), st.integers(1, 300), st.integers(1, 8), st.integers(1, 12))
def test_any_small_size(B, S, V, H, L):
    check(shape_table(B, S, V, H * L, H), B, S, V, H * L, H)


def test_huge_sizes_cost_nothing():
    """S = 100,000 and V = 10,000,000: every tensor lives on the meta device, so nothing is allocated."""
    size = (4096, 100_000, 10_000_000, 65_536, 1024)
    table = shape_table(*size)
    check(table, *size)
    t = trace_path(Sizes(*size))
    assert all(op.output.device.type == "meta" for op in t.ops) and t.attn.scores.is_meta
    scores = table.set_index("step").loc["6"]
    assert scores["output_bytes"] == 4096 * 1024 * 100_000**2 * 4  # 1.7e17 bytes, exact
    assert table.set_index("step").loc["2", "flops"] == 2 * 4096 * 100_000 * 10_000_000 * 65_536  # > 2**63
    assert isinstance(table.set_index("step").loc["2", "flops"], int)


def test_torch_refuses_a_tensor_past_64_bit_bytes():
    with pytest.raises(PathError) as err:
        shape_table(4096, 2**20, 10, 65_536, 1024)  # scores: 2**62 numbers, 2**64 bytes
    assert err.value.where.startswith("core/attention.py:")
    assert "k.transpose" in err.value.code and "overflow" in str(err.value)


@pytest.mark.parametrize("dtype, size", [("float64", 8), ("float32", 4), ("float16", 2), ("bfloat16", 2)])
def test_bytes_follow_the_dtype(dtype, size):
    t = shape_table(2, 3, 5, 8, 2, dtype=dtype).set_index("step")
    assert t.loc["8′", "output_bytes"] == 2 * 3 * 2 * 8 * size
    assert t.loc["9", "dtype"] == dtype


def test_matmul_flops_agree_with_torchs_counter():
    """The product FLOPs of the table, against torch.utils.flop_counter on the same meta run."""
    for size in SIZES[:3]:
        table = shape_table(*size)
        with FlopCounterMode(display=False) as counter:
            trace_path(Sizes(*size))
        assert counter.get_total_flops() == sum(table["matmul_flops"]), size


def test_exact_counts_show_both_endings_do_the_same_work():
    for B, S, V, D, H in SIZES:
        s = path_summary(shape_table(B, S, V, D, H), H)
        assert s["concat_multiplies"] == s["additive_multiplies"] == B * S * D * D
        assert s["concat_adds"] == s["additive_adds"] == B * S * D * (D - 1)
        assert s["memory_ratio"] == H
        assert s["additive_bytes"] == H * s["concat_bytes"]
        # the FLOP convention's surplus for the additive ending is exactly step 9′'s additions
        table = shape_table(B, S, V, D, H).set_index("step")
        assert s["additive_flops"] - s["concat_flops"] == table.loc["9′", "flops"] == B * S * (H - 1) * D
        assert s["additive_surplus_flops"] == s["sum_flops"] == B * S * (H - 1) * D  # 0 with one head


def test_contracted_axis_positions():
    t = shape_table().set_index("step")
    # step 9: B×S×D · D×D: the last axis of the left, the rows of W_O on the right
    assert (t.loc["9", "contracted_in_1"], t.loc["9", "contracted_in_2"]) == (2, 0)
    # step 7: B×H×S×S · B×H×S×L: the key axis (last) against the value rows
    assert (t.loc["7", "contracted_in_1"], t.loc["7", "contracted_in_2"]) == (3, 2)
    assert (t.loc["6", "contracted_in_1"], t.loc["6", "contracted_in_2"]) == (3, 2)
    assert (t.loc["9′", "contracted_in_1"], t.loc["9′", "contracted_in_2"]) == (2, None)


def test_wrong_letters_are_caught(monkeypatch):
    """The letters are the one hand-written part; a wrong one must not reach the page."""
    broken = tuple(dataclasses.replace(s, output="B×H×S×L") if s.step == "6" else s for s in shapes.STEPS)
    monkeypatch.setattr(shapes, "STEPS", broken)
    with pytest.raises(AssertionError, match="step 6 output"):
        shape_table(1, 20, 100, 512, 8)


def test_code_lines_point_at_core():
    t = shape_table().set_index("step")
    assert t.loc["2", "code"].startswith("x_tok = one_hot @ W_E")
    assert t.loc["6", "code"].startswith("scores = q @ k.transpose(-1, -2)")
    assert "einsum" in t.loc["8′", "code"] and t.loc["8′", "where"].startswith("core/attention.py:")
    for where, code in zip(t["where"], t["code"]):
        file, line = where.split(":")
        assert open(file).read().splitlines()[int(line) - 1].strip() == code


def test_every_torch_call_is_assigned_to_its_step():
    ops = op_trace(1, 4, 7, 8, 2, causal=True)
    step_of = {(r["torch call"], r["code"].split("=")[0].strip()): r["step"] for _, r in ops.iterrows()}
    assert step_of[("div", "scores")] == "6"
    assert step_of[("masked_fill", "scores")] == "6"
    assert step_of[("softmax", "pattern")] == "7"
    assert step_of[("transpose", "z_concat")] == "8"
    assert step_of[("sum", "out_sum")] == "9′"
    assert set(ops["step"]) - {""} <= set(STEP_IDS)
    assert len(op_trace(1, 4, 7, 8, 2)) < len(ops)  # the mask adds calls


def test_seed_slips():
    s = seed_slips()
    assert s["one_head"] == (1, 1, 20, 64) and s["all_heads"] == (1, 8, 20, 64)
    assert s["k_reversed"] == (64, 20, 8, 1) and s["k_T"] == (1, 8, 64, 20)
    assert s["scores"] == (1, 8, 20, 20)
    assert s["reversed_result"] is None and "must match" in s["reversed_error"]
    # With every size 1 the reversed keys broadcast without complaint: the silent kind of bug.
    assert seed_slips(1, 1, 1, 1)["reversed_result"] == (1, 1, 1, 1)


def test_flow_edges_carry_the_table_shapes():
    table = shape_table(2, 3, 5, 8, 4)
    edges = flow_edges(table)
    assert len(edges) == 19
    per_head = edges[edges["tensor"] == "per-head results"].iloc[0]
    concat = edges[edges["tensor"] == "heads concatenated"].iloc[0]
    assert per_head["shape"] == (2, 3, 4, 8) and per_head["bytes"] == 4 * concat["bytes"]
    assert edges[edges["tensor"] == "token ids"].iloc[0]["bytes"] == 2 * 3 * 8  # int64 ids


def test_evaluate_and_panels():
    z = Sizes(2, 3, 5, 8, 4)
    assert evaluate("2·B·S·V·D", z) == 480 and evaluate("B·S·H·D − B·S·D", z) == 144
    assert evaluate("0", z) == 0 and evaluate("(B·S)", z) == 6
    assert panel_shape("1", 2, 3, 5, 8, 4) == (3, 5) and panel_shape("6", 2, 3, 5, 8, 4) == (3, 3)
    assert evaluate("2·2·B·S·H_kv·D·L", Sizes(2, 3, 5, 8, 4, 2)) == 2 * 2 * 2 * 3 * 2 * 8 * 2
    with pytest.raises(ValueError):
        Sizes(1, 1, 1, 8, 3)
    with pytest.raises(ValueError):
        Sizes(0, 1, 1, 8, 2)


def test_tensor_numel_counts_what_a_real_walk_holds():
    numel = tensor_numel(2, 3, 5, 8, 4)
    assert numel["W_E"] == 40 and numel["one_hot"] == 30 and numel["per_head"] == 2 * 3 * 4 * 8
    assert numel["scores"] == 2 * 4 * 3 * 3 and numel["W_O"] == 64


# ---- real values ------------------------------------------------------------------------------


def test_step_values_are_the_real_path():
    B, S, V, D, H = 2, 5, 7, 12, 3
    L = D // H
    one_hot = step_values("1", B, S, V, D, H, seed=3, at_batch=1)[0]["values"]  # [S, V]
    assert one_hot.shape == (S, V) and (one_hot.sum(axis=1) == 1).all()
    z = step_values("7", B, S, V, D, H, seed=3, at_batch=1, at_head=2)[0]["values"]  # [S, L]
    concat = step_values("8", B, S, V, D, H, seed=3, at_batch=1)[0]["values"]  # [S, D]
    assert (concat[:, 2 * L:2 * L + L] == z).all()  # head 2 fills columns 2L … 2L+L−1
    out = step_values("9", B, S, V, D, H, seed=3, at_batch=1)[0]["values"]
    out_sum = step_values("9′", B, S, V, D, H, seed=3, at_batch=1)[0]["values"]
    assert abs(out - out_sum).max() < 1e-5 * abs(out).max()
    # The attention half is core.attention's: same weights seed, same function of x.
    x = torch.tensor(step_values("3", B, S, V, D, H, seed=3, at_batch=1)[0]["values"]).float()[None]
    w, _ = run_seeded(1, S, D, H, seed=3)
    from core.attention import multi_head_attention

    ref = multi_head_attention(x, w).out_concat[0].double().numpy()
    assert abs(out - ref).max() < 1e-5


def test_step_values_masks_and_seeds():
    scores = step_values("6", 1, 6, 5, 8, 2, seed=1, causal=True)[0]["values"]
    assert (scores[torch.ones(6, 6).triu(1).bool().numpy()] == float("-inf")).all()
    assert (scores[torch.ones(6, 6).tril().bool().numpy()] > float("-inf")).all()
    kv = [p["values"] for p in step_values("5b", 1, 4, 5, 8, 2, seed=1)]
    assert [p["title"] for p in step_values("5b", 1, 4, 5, 8, 2, seed=1)] == ["keys", "values"]
    assert all((a == b).all() for a, b in zip(kv, [p["values"] for p in step_values("5b", 1, 4, 5, 8, 2, seed=1)]))
    assert not (kv[0] == step_values("5b", 1, 4, 5, 8, 2, seed=2)[0]["values"]).all()
    with pytest.raises(ValueError):
        step_values("10", 1, 4, 5, 8, 2)
    with pytest.raises(ValueError):
        step_values("5a", 1, 4, 5, 8, 2, at_head=2)


# ---- what the page says in words (issue 10) ------------------------------------------------------


def test_flops_split_the_lookup_from_the_attention_path():
    """Step 2's one-hot product (a lookup in real models) is reported apart from steps 3–9."""
    for B, S, V, D, H in SIZES:
        table = shape_table(B, S, V, D, H)
        s, by = path_summary(table, H), table.set_index("step")
        steps_3_to_9 = sum(by.loc[k, "flops"] for k in ("3", "4", "5a", "5b", "5c", "6", "7", "8", "9"))
        assert s["lookup_flops"] == by.loc["2", "flops"] == 2 * B * S * V * D
        assert s["attention_path_flops"] == steps_3_to_9
        assert s["total_flops"] == s["lookup_flops"] + s["attention_path_flops"] + by.loc["1", "flops"]
        assert s["lookup_share"] == pytest.approx(s["lookup_flops"] / s["total_flops"])
    s = path_summary(shape_table(), 8)  # the post's sizes: the lookup is 96 % of the 1.07 G
    assert s["total_flops"] == 1_066_791_680 and s["attention_path_flops"] == 42_791_680
    assert round(100 * s["lookup_share"]) == 96


def test_positions_first_meet_at_step_6_and_are_summed_at_step_7():
    mixing = position_mixing()
    assert mixing == {"first_meet": "6", "sums_positions": "7", "steps": ["6", "7"]}
    t = shape_table(2, 5, 7, 12, 3).set_index("step")  # the letters agree with the traced shapes
    assert t.loc["6", "output"] == (2, 3, 5, 5) and t.loc["7", "contracted"] == "S"
    assert all(t.loc[s, "output_sym"].count("S") <= 1 for s in STEP_IDS if s not in ("6",))


def test_step_words_are_exact():
    ops = {s.step: s for s in shapes.STEPS}
    assert "divided by √L" in ops["6"].operation
    words = " ".join(f"{s.operation} {s.note}" for s in shapes.STEPS) + (shapes.__doc__ or "")
    assert "scaled by" not in words
    # 0-based head ranges, as in the code: head h owns hL … hL+L−1
    assert "hL … hL+L−1" in ops["8"].note and "(h+1)" not in words and "(h−1)" not in words
    # V is the vocabulary; the values are v
    assert "Q, K" not in words and "q, k and v" in ops["4"].operation


def test_flat_tables_stay_numeric():
    numeric = flat_table(shape_table())
    for c in ("flops", "matmul_flops", "param_count", "output_elements", "output_bytes", "n_outputs"):
        assert numeric[c].dtype.kind == "i", c
    for c in ("contracted_size", "contracted_in_1", "contracted_in_2"):
        assert str(numeric[c].dtype) == "Int64", c  # a gap where a step sums nothing away
    assert numeric["contracted_size"].isna().sum() == 5  # steps 1, 3, 4, 5c and 8
    assert numeric["contracted_in_2"].isna().sum() == 6  # and 9′, which has no second input
    assert numeric.set_index("step").loc["1", "output"] == "1×20×50000"
    exact = flat_table(shape_table(4096, 100_000, 10_000_000, 65_536, 1024), exact=True)
    big = int(exact.set_index("step").loc["2", "flops"])
    assert big == 2 * 4096 * 100_000 * 10_000_000 * 65_536 > 2**63  # every digit, for the CSV
    import io

    import pandas as pd

    back = pd.read_csv(io.StringIO(exact.to_csv(index=False)))
    assert back["output_bytes"].dtype.kind in "if" and back["flops"].dtype.kind in "ifO"
    huge = flat_table(shape_table(4096, 100_000, 10_000_000, 65_536, 1024))
    assert huge["flops"].dtype.kind == "f" and huge["output_bytes"].dtype.kind == "i"  # past 2**63: float64


def test_numeric_columns_keep_gaps():
    import pandas as pd

    frame = pd.DataFrame({"a": [1, None, 3], "b": [2**70, 1, 2]}, dtype=object)
    out = numeric_columns(frame, ["a", "b"])
    assert str(out["a"].dtype) == "Int64" and out["a"].isna().tolist() == [False, True, False]
    assert out["b"].dtype.kind == "f" and out["b"][0] == float(2**70)


def test_the_torch_calls_count_from_zero():
    """Issue 18 §11: the `order` column counted 1 … 21 while the essay counts from 0."""
    ops = op_trace(1, 5, 10, 16, 4)
    assert ops["order"].tolist() == list(range(len(ops)))
    masked = op_trace(1, 5, 10, 16, 4, causal=True)
    extra = set(masked["torch call"]) - set(ops["torch call"])
    assert "masked_fill" in extra and set(masked.loc[masked["torch call"].isin(extra), "step"]) == {"6"}
