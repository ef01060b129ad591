"""core.induction: the shipped model does what the page says, its sum adds up, and it retrains."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from core import induction as ind
from core.checkpoints import induction as cps
from core.attention import AttentionWeights, multi_head_attention

CFG = ind.Config()
FRESH_SEED = 4242  # neither a training stream nor the shipped metrics' evaluation batch


@pytest.fixture(scope="module")
def shipped():
    return ind.load(ind.WEIGHTS)


@pytest.fixture(scope="module")
def fresh():
    return ind.eval_batch(CFG, 512, seed=FRESH_SEED)


def test_state_dict_names_shapes_and_size():
    sd = torch.load(ind.WEIGHTS, weights_only=True)
    V, S, D, H, L = CFG.d_vocab, CFG.n_ctx, CFG.d_model, CFG.n_heads, CFG.d_head
    expected = {"embed.W_E": (V, D), "pos_embed.W_pos": (S, D), "unembed.W_U": (D, V)}
    for l in range(2):
        expected.update({f"blocks.{l}.attn.W_Q": (H, D, L), f"blocks.{l}.attn.W_K": (H, D, L),
                         f"blocks.{l}.attn.W_V": (H, D, L), f"blocks.{l}.attn.W_O": (H, L, D)})
    assert {k: tuple(v.shape) for k, v in sd.items()} == expected
    assert all(v.dtype == torch.float32 for v in sd.values())
    assert ind.WEIGHTS.stat().st_size <= 1_000_000
    meta = json.loads(ind.METRICS.read_text())
    assert meta["config"] == {**meta["config"], "seed": 0, "n_heads": H, "d_model": D, "n_ctx": S, "d_vocab": V}
    assert len(meta["curve"]["step"]) == CFG.steps // CFG.eval_every + 1


def test_shipped_model_predicts_the_copy_on_fresh_sequences(shipped, fresh):
    model, _ = shipped
    with torch.no_grad():
        r = ind.run(model, fresh.tokens)
    l = ind.losses(r.logits, fresh.tokens, fresh.repeat)
    ln_v = math.log(CFG.d_vocab)
    assert l["loss_repeat"] < 0.25 * ln_v, l  # far below a uniform guess
    assert l["loss_other"] > 0.9 * ln_v, l  # the rest is random: nothing to learn there


def test_previous_token_and_induction_heads_score_high(shipped, fresh):
    model, _ = shipped
    with torch.no_grad():
        r = ind.run(model, fresh.tokens)
    prev, prev_base = ind.prev_token_scores(r.traces[0].pattern)
    score, ind_base = ind.induction_scores(r.traces[1].pattern, fresh)
    assert prev.max() > 0.6 and prev.max() > 5 * prev_base
    assert score.max() > 0.6 and score.max() > 10 * ind_base
    # Uniform attention really scores the baseline: the score functions measure what they say.
    uniform = torch.ones(1, 1, CFG.n_ctx, CFG.n_ctx).tril()
    uniform = (uniform / uniform.sum(-1, keepdim=True)).expand(len(fresh.tokens), 1, -1, -1)
    assert ind.prev_token_scores(uniform)[0][0] == pytest.approx(prev_base, rel=1e-5)
    assert ind.induction_scores(uniform, fresh)[0][0] == pytest.approx(ind_base, rel=1e-5)
    assert prev_base < 0.11 and ind_base < 0.06


def test_knocking_heads_out(shipped, fresh):
    model, meta = shipped
    m = meta["metrics"]
    heads = [(int(h[1]), int(h[3:])) for h in m["induction_heads"]]
    prev = (0, int(m["prev_token_head"][3:]))
    with torch.no_grad():
        clean = ind.losses(ind.run(model, fresh.tokens).logits, fresh.tokens, fresh.repeat)["loss_repeat"]
        no_ind = ind.losses(ind.run(model, fresh.tokens, heads).logits, fresh.tokens, fresh.repeat)["loss_repeat"]
        no_prev = ind.losses(ind.run(model, fresh.tokens, [prev]).logits, fresh.tokens, fresh.repeat)["loss_repeat"]
    ln_v = math.log(CFG.d_vocab)
    assert abs(no_ind - ln_v) < 0.15 * ln_v, (no_ind, ln_v)  # the copy is gone
    assert no_prev >= 2 * clean, (no_prev, clean)  # composition: layer 1 needs layer 0


def test_a_run_resumed_from_the_clean_run_is_the_full_run(shipped, fresh):
    """run(..., clean=) reuses the layers before the first ablated one: the same logits, bit for bit."""
    model, _ = shipped
    tokens = fresh.tokens[:16]
    with torch.no_grad():
        clean = ind.run(model, tokens)
        means = ind.head_means(model, tokens)
        assert ind.run(model, tokens, (), clean=clean) is clean
        for heads in ([(1, 0)], [(0, 1)], [(0, 0), (1, 1)], ind.all_heads(model.n_heads)):
            for mode in ("zero", "mean"):
                full = ind.run(model, tokens, heads, mode=mode, means=means)
                resumed = ind.run(model, tokens, heads, mode=mode, means=means, clean=clean)
                assert torch.equal(full.logits, resumed.logits), (heads, mode)
                assert [t.pattern.shape for t in resumed.traces] == [t.pattern.shape for t in full.traces]
        with pytest.raises(ValueError):
            ind.run(model, fresh.tokens[16:32], [(1, 0)], clean=clean)


def test_the_chunked_ablation_table_is_one_pass_over_the_batch(shipped):
    """ablation_table goes through EVAL_CHUNK sequences at a time from the clean run; the losses are
    those of one plain pass over all 512 sequences per set and mode (each sequence is computed alone)."""
    model, meta = shipped
    sets = {"nothing": [], "L0H1": [(0, 1)], "L1H0": [(1, 0)], "both": [(0, 0), (1, 1)]}
    table = ind.ablation_table(model, sets)
    batch = ind.eval_batch(CFG, ind.EVAL_BATCH, ind.EVAL_SEED)
    assert ind.EVAL_BATCH > ind.EVAL_CHUNK
    with torch.no_grad():
        clean = ind.run(model, batch.tokens)
        means = [r.mean(dim=0) for r in clean.results]
        for row in table.itertuples():
            for mode in ("zero", "mean"):
                one_pass = ind.losses(ind.run(model, batch.tokens, sets[row.removed], mode=mode, means=means).logits,
                                      batch.tokens, batch.repeat)
                assert getattr(row, f"loss_repeat_{mode}") == pytest.approx(one_pass["loss_repeat"], rel=1e-5, abs=1e-6)
                assert getattr(row, f"loss_other_{mode}") == pytest.approx(one_pass["loss_other"], rel=1e-5, abs=1e-6)
    assert table.loc[0, "loss_repeat_zero"] == table.loc[0, "loss_repeat_mean"]  # nothing removed: one number
    assert table.loc[0, "loss_repeat_zero"] == pytest.approx(meta["metrics"]["loss_repeat"], rel=1e-4)


def test_ablating_every_head_leaves_the_direct_path(shipped, fresh):
    model, _ = shipped
    every = ind.all_heads(model.n_heads)
    r = ind.run(model.to(torch.float64), fresh.tokens[:4], every)
    direct = (model.to(torch.float64).W_E[fresh.tokens[:4]] + model.to(torch.float64).W_pos) @ model.to(torch.float64).W_U
    assert torch.allclose(r.logits, direct, atol=1e-12)


def test_mean_ablation_of_a_constant_batch_changes_nothing(shipped):
    """With every sequence the same, a head's batch mean is its own term: mean ablation is a no-op."""
    model, _ = shipped
    tokens = ind.sample_sequence(3).tokens.expand(8, -1)  # [8, S] one sequence, eight times
    m64 = model.to(torch.float64)
    means = ind.head_means(m64, tokens)
    clean = ind.run(m64, tokens).logits
    for head in ind.all_heads(model.n_heads):
        assert torch.allclose(ind.run(m64, tokens, [head], mode="mean", means=means).logits, clean, atol=1e-10)
    with pytest.raises(ValueError):
        ind.run(m64, tokens, [(0, 0)], mode="mean")
    with pytest.raises(ValueError):
        ind.run(m64, tokens, [(0, 0)], mode="half")


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), position=st.integers(0, CFG.n_ctx - 2),
       ablate=st.sets(st.sampled_from(ind.all_heads(CFG.n_heads)), max_size=2))
def test_logit_decomposition_sums_to_the_logit(shipped, seed, position, ablate):
    model, _ = shipped
    tokens = ind.sample_sequence(seed).tokens
    t = ind.logit_terms(model, tokens, position, ablate=ablate)
    assert len(t["terms"]) == 2 + 2 * model.n_heads
    assert abs(t["difference"]) < 1e-10
    assert abs(t["sum"] - t["logit"]) < 1e-10
    # ...and the logit is the float64 model's own, computed on the concatenate path.
    r = ind.run(model.to(torch.float64), tokens, ablate)
    assert t["logit"] == pytest.approx(float(r.logits[0, position, tokens[0, position + 1]]), abs=1e-12)


def test_every_term_of_the_residual_stream_adds_up(shipped):
    model, _ = shipped
    tokens = ind.eval_batch(CFG, 16, seed=FRESH_SEED).tokens
    r = ind.run(model.to(torch.float64), tokens)
    total = r.embed + r.pos + sum(res.sum(dim=2) for res in r.results)  # [B, S, D]
    assert (total - r.resid).abs().max() < 1e-12
    assert (r.traces[0].out_concat - r.traces[0].out_sum).abs().max() < 1e-12


def test_layers_are_core_attention():
    """Each layer is multi_head_attention on AttentionWeights: rerun layer 0 by hand and compare."""
    model = ind.InductionModel.init(CFG, torch.Generator().manual_seed(5))
    tokens = ind.sample_sequence(1).tokens
    r = ind.run(model, tokens)
    x = model.W_E[tokens] + model.W_pos
    trace = multi_head_attention(x, model.layers[0], causal=True)
    assert torch.allclose(trace.pattern, r.traces[0].pattern, rtol=0, atol=1e-7)  # the same function, same inputs
    assert isinstance(model.layers[1], AttentionWeights)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_batches_repeat_a_span_of_random_length_at_random_places(seed):
    b = ind.make_batch(64, CFG, torch.Generator().manual_seed(seed))
    S = CFG.n_ctx
    assert b.tokens.shape == (64, S) and b.repeat.shape == (64, S - 1)
    assert ((b.length >= CFG.min_repeat) & (b.length <= CFG.max_repeat)).all()
    assert (b.start + b.length <= S).all() and (b.offset >= b.length).all()
    for row in range(64):
        s, n, d = int(b.start[row]), int(b.length[row]), int(b.offset[row])
        assert torch.equal(b.tokens[row, s:s + n], b.tokens[row, s - d:s - d + n])
        assert b.repeat[row].nonzero().flatten().tolist() == list(range(s, s + n - 1))
        # every predictable position is one the bigram rule finds too
        assert bool(ind.repeat_mask(b.tokens[row:row + 1])[0][b.repeat[row]].all())
    many = ind.make_batch(2000, CFG, torch.Generator().manual_seed(seed))
    assert len(set(many.length.tolist())) > 8 and len(set(many.start.tolist())) > 15  # no fixed layout to cheat with


def test_induction_keys_and_repeat_mask_by_hand():
    tokens = torch.tensor([[0, 1, 2, 0, 1, 3, 0]])
    assert ind.repeat_mask(tokens)[0].tolist() == [False, False, False, True, False, False]
    # at the second 0 the key after the first 0; at the third 0 the key after the *most recent* 0 (4)
    assert ind.induction_keys(tokens)[0].tolist() == [-1, -1, -1, 1, 2, -1, 4]


def _pattern(weights: dict[tuple[int, int], float], S: int) -> torch.Tensor:
    """A [1, 1, S, S] causal pattern: the given (query, key) weights, the rest of each row on key 0."""
    p = torch.zeros(1, 1, S, S)
    for (i, j), w in weights.items():
        p[0, 0, i, j] = w
    p[0, 0, :, 0] += 1 - p[0, 0].sum(-1)
    return p


def test_sequence_induction_score_counts_only_the_induction_key():
    tokens = torch.tensor([[0, 1, 2, 0, 1, 2]])  # repeated positions 3, 4; induction keys 1, 2
    on_key = _pattern({(3, 1): 0.75, (4, 2): 0.25}, 6)
    got = ind.sequence_induction_scores(on_key, tokens)
    assert got.n_scored == 2 and got.n_adjacent == 0
    assert got.scores[0] == pytest.approx(0.5)
    # attention to another key holding the same kind of letter earns nothing
    off_key = _pattern({(3, 2): 0.75, (4, 1): 0.25}, 6)
    assert ind.sequence_induction_scores(off_key, tokens).scores[0] == pytest.approx(0.0)


def test_a_degenerate_sequence_has_no_induction_score():
    """zzzzzzzz: every earlier z is one back, so the induction key is the query itself. Counting
    attention to every key after an earlier z (the old definition) gave a previous-token head 0.86."""
    tokens = torch.zeros(1, 8, dtype=torch.long)
    prev_head = _pattern({(i, i - 1): 1.0 for i in range(1, 8)}, 8)
    got = ind.sequence_induction_scores(prev_head, tokens)
    assert got.n_scored == 0 and got.n_adjacent == 6 and np.isnan(got.scores).all()
    abab = torch.tensor([[0, 1, 0, 1, 0, 1]])  # the key after the last 0 is the previous token
    assert ind.sequence_induction_scores(_pattern({}, 6), abab).n_scored == 0


def test_the_sequence_score_singles_out_the_induction_heads(shipped):
    """On drawn sequences of the task, the layer-1 heads score far above the layer-0 heads."""
    model, _ = shipped
    for seed in range(8):
        tokens = ind.sample_sequence(seed).tokens
        with torch.no_grad():
            r = ind.run(model, tokens)
        layer0 = ind.sequence_induction_scores(r.traces[0].pattern, tokens)
        layer1 = ind.sequence_induction_scores(r.traces[1].pattern, tokens)
        assert layer1.n_scored > 0
        best0, best1 = layer0.scores.max(), layer1.scores.max()
        assert best1 >= ind.HEAD_SCORE_THRESHOLD and best1 > 5 * best0, (seed, layer0.scores, layer1.scores)


def test_k_composition_matches_its_definition(shipped):
    model, _ = shipped
    comp = ind.composition_scores(model, baseline_draws=50)
    m = model.to(torch.float64)
    for a in range(model.n_heads):
        for b in range(model.n_heads):
            w0, w1 = m.layers[0], m.layers[1]
            ov = w0.W_V[a] @ w0.W_O[a]  # [D, D]
            qk = w1.W_Q[b] @ w1.W_K[b].T  # [D, D]
            k = torch.linalg.norm(ov @ qk.T) / (torch.linalg.norm(ov) * torch.linalg.norm(qk))
            q = torch.linalg.norm(ov @ qk) / (torch.linalg.norm(ov) * torch.linalg.norm(qk))
            assert comp["scores"]["K"][a, b] == pytest.approx(float(k), rel=1e-10)
            assert comp["scores"]["Q"][a, b] == pytest.approx(float(q), rel=1e-10)
    prev = int(json.loads(ind.METRICS.read_text())["metrics"]["prev_token_head"][3:])
    assert comp["scores"]["K"][prev].max() > comp["baseline"] + 10 * comp["baseline_std"]


def test_circuit_matrices_live_on_the_model(shipped):
    """model.OV and model.QK, stacked over layers as TransformerLens's are: each head's W_V W_O and
    W_Q W_Kᵀ, by hand, and the QK circuit scores a query against a key as the attention logits do."""
    model, _ = shipped
    m = model.to(torch.float64)
    H, D, L = model.n_heads, model.d_model, model.d_head
    assert m.OV.shape == m.QK.shape == (2, H, D, D)
    assert m.W_Q.shape == m.W_K.shape == m.W_V.shape == (2, H, D, L) and m.W_O.shape == (2, H, L, D)
    for l in range(2):
        for h in range(H):
            w = m.layers[l]
            assert torch.allclose(m.OV[l, h], w.W_V[h] @ w.W_O[h], rtol=0, atol=1e-12)
            assert torch.allclose(m.QK[l, h], w.W_Q[h] @ w.W_K[h].T, rtol=0, atol=1e-12)
    x = m.W_E[:3] + m.W_pos[:3]  # [3, D] three residual vectors
    q, k = x @ m.layers[0].W_Q[1], x @ m.layers[0].W_K[1]  # [3, L]
    assert torch.allclose(x @ m.QK[0, 1] @ x.T, q @ k.T, rtol=1e-10, atol=1e-10)


def test_qk_path_prefers_the_same_token(shipped):
    model, meta = shipped
    m = meta["metrics"]
    path = ind.qk_path(model, int(m["prev_token_head"][3:]), int(m["induction_head"][3:]))
    assert path["matrix"].shape == (CFG.d_vocab, CFG.d_vocab)
    assert path["diagonal_argmax_fraction"] > 0.9


@pytest.mark.parametrize("text, heads, problems", [
    ("0.1,1.0", [(0, 1), (1, 0)], 0),
    ("L1H1 l0h0", [(0, 0), (1, 1)], 0),
    ("1.0,1.0", [(1, 0)], 0),
    ("", [], 0),
    ("none", [], 0),
    ("2.0,0.9,x.y,<b>", [], 4),
    ("1.0,, 9", [(1, 0)], 1),
    ("1" * 5000, [], 1),
    (",".join(["1.0"] * 100), [(1, 0)], 1),
])
def test_parse_ablate(text, heads, problems):
    got, notes = ind.parse_ablate(text, 2)
    assert got == heads and len(notes) == problems
    assert all(len(n) < 200 for n in notes)
    assert ind.parse_ablate(ind.format_ablate(got), 2) == (got, [])


@pytest.mark.parametrize("text, ids, n_problems", [
    ("abcabc", [0, 1, 2, 0, 1, 2], 0),
    ("ab ZA", [0, 1, 51, 26], 0),
    ("0, 1, 51", [0, 1, 51], 0),
    ("3 99 4", [3, 4], 1),
    ("a😀b<script>", [0, 1, 18, 2, 17, 8, 15, 19], 1),
    ("", [], 1),
    ("é", [], 2),
    ("a" * 10_000, [0] * 32, 1),
    ("1" * 40, [], 2),
])
def test_parse_sequence(text, ids, n_problems):
    got, problems = ind.parse_sequence(text)
    assert got == ids and len(problems) == n_problems, problems




def test_phase_change_finds_the_steepest_fall():
    steps = np.arange(0, 1001, 25)
    loss = np.where(steps < 500, 4.0, 0.5)
    curve = pd.DataFrame({"step": steps, "loss_repeat": loss, "induction_score": np.where(steps < 500, 0.1, 0.8)})
    ph = ind.phase_change(curve)
    assert 300 <= ph["step"] <= 500 and ph["loss_before"] == 4.0 and ph["loss_after"] == 0.5


# Retraining seed 0 on another processor reproduces the shipped model's *behaviour*, not its bits:
# other vector kernels add the same products in another order, and 2,000 steps carry the rounding
# forward. Measured against the shipped weights (trained on an Intel Xeon, PyTorch's AVX512 kernels)
# by retraining with the pinned PyTorch 2.13 on an AMD EPYC (family 25), once with each kernel set
# PyTorch offers there (ATEN_CPU_CAPABILITY = avx512 / avx2 / default, the last one scalar code):
#   weights, largest |Δ|                 4.3e-3 / 5.0e-3 / 1.8e-2   (0.9 % / 1.1 % / 4.0 % of a tensor's largest entry)
#   metrics (losses, scores), largest |Δ| 4.3e-5 / 5.9e-5 / 2.5e-4
#   logits on 512 fixed sequences        max |Δ| 0.036 / 0.046 / 0.157, mean |Δ| 1.8e-3 / 2.4e-3 / 8.4e-3
#   next-token probabilities             max |Δ| 0.0066 / 0.0080 / 0.029
#   same top guess, repeated positions   100 % / 99.98 % / 99.91 %
#   identified heads (L0H0; L1H0, L1H1)  the same in every run
# Issue 18's AMD EPYC run (AVX2) saw the same: weights up to 5e-3 apart, metrics equal to four
# decimals. The tolerances below are 5–10 times the largest of these (the scalar run's): loose enough
# for a processor not measured here (an ARM one, say), tight enough that a model which had not formed
# the circuit, or formed it in other heads, fails by orders of magnitude (without its induction
# heads the repeated loss moves by 3.3 nats).
METRIC_TOL = 2e-3
LOGIT_MAX_TOL = 1.0
LOGIT_MEAN_TOL = 0.05
PROB_MAX_TOL = 0.15
TOP_GUESS_AGREEMENT = 0.99  # on repeated positions (elsewhere the letter is random and guesses are near-ties)
WEIGHT_REL_TOL = 0.2  # largest |Δ| over a tensor's largest entry


def test_retraining_reproduces_the_shipped_behaviour(tmp_path, capsys, shipped, fresh):
    """The real command's code path (core.induction.main → train → evaluate → save) from seed 0,
    compared with the shipped model on what it does, within the tolerances measured above."""
    old_model, meta = shipped
    out = tmp_path / "induction.pt"
    assert ind.main(["train", "--seed", "0", "--out", str(out)]) == 0
    again = json.loads(out.with_suffix(".json").read_text())
    assert again["config"] == meta["config"]
    assert again["trained_on"] == ind.this_machine()  # the run records where it trained
    for key in ("loss_repeat", "loss_other", "loss_other_seen", "loss_other_unseen",
                "loss_repeat_without_induction_heads", "loss_repeat_without_prev_token_head"):
        assert again["metrics"][key] == pytest.approx(meta["metrics"][key], abs=METRIC_TOL), key
    for key in ("prev_token_scores", "induction_scores"):
        assert np.allclose(again["metrics"][key], meta["metrics"][key], rtol=0, atol=METRIC_TOL), key
    for key in ("prev_token_head", "induction_head", "induction_heads"):
        assert again["metrics"][key] == meta["metrics"][key], key

    new_model, _ = ind.load(out)
    with torch.no_grad():
        new, old = ind.run(new_model, fresh.tokens).logits, ind.run(old_model, fresh.tokens).logits  # [B, S, V]
    gap = (new - old).abs()
    assert float(gap.max()) < LOGIT_MAX_TOL and float(gap.mean()) < LOGIT_MEAN_TOL, (float(gap.max()), float(gap.mean()))
    assert float((new.softmax(-1) - old.softmax(-1)).abs().max()) < PROB_MAX_TOL
    same_guess = (new.argmax(-1) == old.argmax(-1))[:, :-1][fresh.repeat]  # [N] repeated positions
    assert float(same_guess.double().mean()) >= TOP_GUESS_AGREEMENT

    # The page's comparison reads the same differences: the weights moved, but only a little.
    weights = ind.weight_differences(new_model, old_model)
    assert len(weights) == len(new_model.state_dict()) and (weights["relative"] < WEIGHT_REL_TOL).all()
    diffs = ind.metric_differences(again["metrics"], meta["metrics"])
    assert (diffs["difference"].abs() < METRIC_TOL).all()
    assert ind.is_shipped_config(ind.Config(), meta) and not ind.is_shipped_config(ind.Config(seed=1), meta)

    assert "step  2000/2000" in capsys.readouterr().out
    assert ind.main(["report", str(out)]) == 0
    assert "previous-token scores" in capsys.readouterr().out


def test_training_is_bitwise_repeatable_on_one_machine():
    """One thread and deterministic kernels: the same seed twice in one process gives the same bits.
    (Across processors only behaviour is reproducible: see the test above. A check of the shipped
    bits cannot be kept even on a machine whose PyTorch capability matches the record: an AMD EPYC
    reporting AVX512, like the Intel Xeon the weights came from, lands 4.3e-3 away.)"""
    cfg = ind.Config(steps=60, eval_every=30, eval_batch=16)
    a, b = ind.train(cfg), ind.train(cfg)
    assert all(torch.equal(a.model.state_dict()[k], v) for k, v in b.model.state_dict().items())
    assert a.curve.equals(b.curve)
    assert not ind.weight_differences(a.model, b.model)["largest difference"].any()


def test_the_shipped_record_says_where_it_trained():
    meta = json.loads(ind.METRICS.read_text())
    record = meta["trained_on"]
    assert {"cpu", "capability", "torch", "arch"} <= set(record)
    assert record["torch"] == meta["training"]["torch"]
    mine = ind.this_machine()
    assert mine["capability"] == str(torch.backends.cpu.get_cpu_capability()) and mine["torch"] == torch.__version__


def test_default_position_is_a_repeated_position():
    b = ind.sample_sequence(0)
    assert bool(b.repeat[0, ind.default_position(0)])


# ---- the page's checkpoints (core.checkpoints.induction) ------------------------------------------



@settings(max_examples=40, deadline=None)
@given(ids=st.lists(st.integers(0, len(ind.ALPHABET) - 1), min_size=2, max_size=CFG.n_ctx) | st.builds(
    lambda n, k: [k] * n, st.integers(2, CFG.n_ctx), st.integers(0, 51)) | st.builds(
    lambda w, r: (w * r)[:CFG.n_ctx], st.lists(st.integers(0, 51), min_size=1, max_size=6), st.integers(2, 8)),
    head=st.integers(0, CFG.n_heads - 1))
def test_attend_most_has_one_right_option_the_patterns_largest(shipped, ids, head):
    model, _ = shipped
    tokens = torch.tensor([ids])
    repeated = ind.repeat_mask(tokens)[0].nonzero().flatten().tolist()
    cp = cps.attend_most(model, ids, repeated, 1, head)
    query = cps.question_position(repeated, len(ids))
    with torch.no_grad():
        row = ind.run(model, tokens).traces[1].pattern[0, head, query, : query + 1]  # [query + 1]
    if cp is None:  # nothing to ask: every key's weight ties with the largest
        assert float(row.max() - row.min()) <= cps.ATTEND_TIE
        return
    assert len(set(cp.options)) == len(cp.options) >= 2
    assert cp.right == f"{int(row.argmax())}:{ind.ALPHABET[ids[int(row.argmax())]]}"
    for option in cp.options:  # every wrong option is a key whose weight prints below the largest
        if option != cp.right:
            j = int(option.split(":")[0])
            assert 0 <= j <= query and float(row.max() - row[j]) > cps.ATTEND_TIE
    assert f"{float(row.max()):.2f}" in cp.why
    assert cps.attend_most(model, ids, repeated, 1, head) == cp  # same link, same question, same order


def test_attend_most_on_a_drawn_sequence_is_the_induction_key(shipped):
    model, _ = shipped
    b = ind.sample_sequence(0)
    ids, repeated = b.tokens[0].tolist(), b.repeat[0].nonzero().flatten().tolist()
    cp = cps.attend_most(model, ids, repeated, 1, 1)
    query = repeated[-1]
    key = int(ind.induction_keys(b.tokens)[0, query])
    assert cp.right == f"{key}:{ind.ALPHABET[ids[key]]}" and "right after the most recent earlier" in cp.why
    assert f"{key - 1}:{ind.ALPHABET[ids[key - 1]]}" in cp.options  # the earlier copy of the letter itself: the lure


@settings(max_examples=200, deadline=None)
@given(loss=st.floats(0, 20), clean=st.floats(0, 5), ln_v=st.floats(0.5, 10))
def test_knockout_bands_cover_every_loss_once(loss, clean, ln_v):
    table = pd.DataFrame({"removed": ["nothing", "x"], "heads": ["none", "1.0,1.1"],
                          "loss_repeat_zero": [clean, loss]})
    cp = cps.knockout(table, "x", "the induction heads", "zero", ln_v)
    assert len(cp.options) == len(cps.KNOCKOUT_OPTIONS) == len(set(cp.options))
    assert cp.options.index(cp.right) == cp.answer
    assert sum(cps.knockout_category(loss, clean, ln_v) == i for i in range(5)) == 1
    assert f"{loss:.3f}" in cp.why


def test_knockout_on_the_shipped_model(shipped):
    """The right options at the page's standard rows, in both modes: the lesson the bands encode."""
    from ui.views.induction import ablation_sets

    model, meta = shipped
    table = ind.ablation_table(model, ablation_sets(meta["metrics"], model.n_heads, []), n=256)
    ln_v = meta["metrics"]["ln_vocab"]
    for mode in ("zero", "mean"):
        def right(removed, name):
            return cps.knockout(table, removed, name, mode, ln_v).right
        assert right("the induction heads", "the induction heads").startswith("it goes back to about ln V")
        assert right("L0H0", "head L0H0").startswith("it goes back to about ln V")
        assert right("L1H0", "head L1H0").startswith("it rises, but stays well short")
        assert right("L0H1", "head L0H1").startswith("it falls")
