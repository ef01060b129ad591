"""Cached calls into core.induction for the trained-model page (pages/induction.py).

Plain arguments in (ints, strings), plain data out (dicts of numbers, DataFrames, numpy arrays):
``st.cache_data`` hands every session its own copy, so no session can change another's view. Every
number comes from ``core.induction``; the charts are drawn by ``ui.figures.induction``.

A view hands out what the page draws, ready: the chart specs, each table as Arrow (``st.dataframe``
passes an Arrow table through, a DataFrame it converts on every run) and its CSV bytes. Thirty
readers of one link are thirty cache hits, and a hit then converts, encodes and hashes nothing
(docs/class-load.md, patch 3: a warm view's CPU about halved).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import streamlit as st
import torch

from core import induction as ind
from core.checkpoints import Checkpoint
from core.checkpoints import induction as cps
from ui.figures import induction as fig
from ui.render import numbers


@st.cache_data(show_spinner=False, max_entries=1)
def shipped() -> dict:
    """The shipped state dict as numpy arrays, its JSON and its size (core.induction.load)."""
    model, meta = ind.load()
    return {"state": {k: v.numpy() for k, v in model.state_dict().items()}, "meta": meta, "size": model.size}


@st.cache_data(show_spinner=False, max_entries=1)
def shipped_page() -> dict:
    """What the page shows of the shipped run, once per server: its JSON, its size, its phase change
    and its training curve drawn (a rerun neither unpickles the weights nor converts the curve)."""
    data = shipped()
    meta = data["meta"]
    curve = ind.curve_frame(meta)
    phase = ind.phase_change(curve)
    return {"meta": meta, "size": data["size"], "phase": phase, "curve_columns": list(curve.columns),
            "curve": numbers(curve), "curve_specs": fig.curve_spec(curve, meta["metrics"]["ln_vocab"], phase.get("step"))}


@st.cache_data(show_spinner=False, max_entries=1)
def this_machine() -> dict[str, str]:
    """This server's processor and PyTorch kernels (core.induction.this_machine)."""
    return ind.this_machine()


def shipped_model() -> ind.InductionModel:
    return ind.InductionModel.from_state_dict(shipped()["state"])


@st.cache_data(show_spinner=False, max_entries=64)
def sequence_view(seed: int, text: str) -> dict:
    """The sequence (typed, or seeded random), the model's guesses, losses, patterns and scores."""
    model = shipped_model()
    cfg = ind.Config(n_heads=model.n_heads)
    problems: list[str] = []
    generated = None
    if text.strip():
        ids, problems = ind.parse_sequence(text, model.d_vocab, model.n_ctx)
        if len(ids) < 2:
            problems.append(f"Showing the random sequence of seed {seed} instead.")
            ids = None
    else:
        ids = None
    if ids is None:
        generated = ind.sample_sequence(seed, cfg)
        ids = generated.tokens[0].tolist()
    tokens = torch.tensor([ids])  # [1, n]
    with torch.no_grad():
        r = ind.run(model, tokens)
    n = len(ids)
    repeat = (generated.repeat if generated is not None else ind.repeat_mask(tokens))[0].tolist()  # [n-1]
    per = ind.token_losses(r.logits, tokens)[0].tolist()  # [n-1]
    probs = r.logits[0].softmax(-1)  # [n, V]
    top = probs.topk(3, dim=-1)
    rows = []
    for i in range(n):
        rows.append({
            "position": i, "token": ind.ALPHABET[ids[i]], "id": ids[i],
            "next": ind.ALPHABET[ids[i + 1]] if i + 1 < n else None,
            "guess": ind.ALPHABET[int(top.indices[i, 0])],
            "p_guess": float(top.values[i, 0]),
            "top3": " ".join(f"{ind.ALPHABET[int(j)]} {float(p):.2f}" for j, p in zip(top.indices[i], top.values[i])),
            "p_next": float(probs[i, ids[i + 1]]) if i + 1 < n else None,
            "loss": per[i] if i + 1 < n else None,
            "kind": ("repeated" if repeat[i] else "other") if i + 1 < n else None,
        })
    table = pd.DataFrame(rows)
    labels = [f"{i}:{ind.ALPHABET[t]}" for i, t in enumerate(ids)]
    long = []
    qi, kj = np.tril_indices(n)
    for l, trace in enumerate(r.traces):
        pat = trace.pattern[0].numpy()  # [H, n, n]
        for h in range(model.n_heads):
            long.append(pd.DataFrame({"layer": l, "head": h, "query": [labels[i] for i in qi],
                                      "key": [labels[j] for j in kj], "weight": pat[h, qi, kj]}))
    prev, _ = ind.prev_token_scores(r.traces[0].pattern)
    seq_ind = ind.sequence_induction_scores(r.traces[1].pattern, tokens)
    seq_prev1, _ = ind.prev_token_scores(r.traces[1].pattern)
    seq_ind0 = ind.sequence_induction_scores(r.traces[0].pattern, tokens)
    scores = pd.DataFrame({
        "head": [ind.head_label(l, h) for l, h in ind.all_heads(model.n_heads)],
        "previous-token score": [float(x) for x in list(prev) + list(seq_prev1)],
        "induction score": [float(x) for x in list(seq_ind0.scores) + list(seq_ind.scores)],
    })
    mask = np.array(repeat, dtype=bool)
    losses = np.array(per)
    patterns = pd.concat(long, ignore_index=True)
    metrics = shipped()["meta"]["metrics"]
    H = model.n_heads
    shown_scores = scores.assign(**{  # beside this sequence's scores, the shipped JSON's (blank where not that layer's job)
        f"previous-token score, {metrics['eval_sequences']} sequences": metrics["prev_token_scores"] + [float("nan")] * H,
        f"induction score, {metrics['eval_sequences']} sequences": [float("nan")] * H + metrics["induction_scores"],
    })
    return {
        "ids": ids, "text": ind.to_text(ids), "problems": problems,
        "table": table, "table_drawn": numbers(table), "loss_spec": fig.sequence_loss_spec(table, metrics["ln_vocab"]),
        "labels": labels, "patterns": numbers(patterns), "patterns_spec": fig.patterns_spec(patterns, labels, H, n <= 16),
        "scores": shown_scores, "scores_drawn": numbers(shown_scores),
        "n_scored": seq_ind.n_scored, "n_adjacent": seq_ind.n_adjacent,
        "loss_repeat": float(losses[mask].mean()) if mask.any() else float("nan"),
        "loss_other": float(losses[~mask].mean()) if (~mask).any() else float("nan"),
        "n_repeat": int(mask.sum()), "repeat_positions": [i for i, m in enumerate(repeat) if m],
        "copy": ({"start": int(generated.start[0]), "length": int(generated.length[0]),
                  "offset": int(generated.offset[0])} if generated is not None else None),
    }


@st.cache_data(show_spinner=False, max_entries=128)
def terms_view(seed: int, text: str, position: int) -> dict:
    """core.induction.logit_terms at one position of the sequence above (float64)."""
    ids = sequence_view(seed, text)["ids"]
    t = ind.logit_terms(shipped_model(), torch.tensor([ids]), position)
    label = f"logit of '{ind.ALPHABET[ids[position + 1]]}' at position {position}"
    return {**t, "spec": fig.waterfall_spec(t["terms"], t["logit"], label), "terms_drawn": numbers(t["terms"])}


def ablation_sets(metrics: dict, n_heads: int, chosen: list[tuple[int, int]]) -> dict[str, list[tuple[int, int]]]:
    """The sets of heads the ablation table removes: none, each head, the named heads, the reader's."""
    sets = {"nothing": []}
    sets.update({ind.head_label(l, h): [(l, h)] for l, h in ind.all_heads(n_heads)})
    sets["the induction heads"] = ind.parse_ablate(",".join(metrics["induction_heads"]), n_heads)[0]
    sets["all of layer 0"] = [(0, h) for h in range(n_heads)]
    if chosen:
        sets[f"your choice: {ind.format_ablate(chosen)}"] = chosen
    return sets


@st.cache_data(show_spinner="Removing heads on 512 fresh sequences…", max_entries=32)
def ablation_view(chosen: str) -> pd.DataFrame:
    """core.induction.ablation_table for the standard sets plus the reader's (canonical ``l.h`` list)."""
    model = shipped_model()
    heads, _ = ind.parse_ablate(chosen, model.n_heads)
    return ind.ablation_table(model, ablation_sets(shipped()["meta"]["metrics"], model.n_heads, heads))


@st.cache_data(show_spinner=False, max_entries=64)
def ablation_figure(chosen: str, mode: str) -> dict:
    """ablation_view's table drawn for one ablation mode: the spec, and the table as Arrow and CSV."""
    abl = ablation_view(chosen)
    return {"spec": fig.ablation_spec(abl, mode, shipped()["meta"]["metrics"]["ln_vocab"]), **numbers(abl)}


@st.cache_data(show_spinner=False, max_entries=1)
def composition_view() -> dict:
    """Composition scores for every pair, and the QK path of the pair the metrics single out."""
    model = shipped_model()
    comp = ind.composition_scores(model)
    metrics = shipped()["meta"]["metrics"]
    src, dst = int(metrics["prev_token_head"][3:]), int(metrics["induction_head"][3:])
    path = ind.qk_path(model, src, dst)
    long = ind.composition_frame(comp)
    qk = pd.DataFrame(path["matrix"], index=list(ind.ALPHABET), columns=list(ind.ALPHABET)).reset_index(names="query")
    src_label, dst_label = ind.head_label(0, src), ind.head_label(1, dst)
    return {"long": numbers(long), "spec": fig.composition_spec(long, comp["baseline"]),
            "baseline": comp["baseline"], "baseline_std": comp["baseline_std"],
            "path": {k: v for k, v in path.items() if k != "matrix"},
            "qk": numbers(qk), "qk_spec": fig.qk_path_spec(path["matrix"], ind.ALPHABET, src_label, dst_label),
            "src": src_label, "dst": dst_label, "k_pair": float(comp["scores"]["K"][src, dst])}


def train_key(seed: int, heads: int, steps: int) -> tuple:
    """The key of a training run in ui.jobs' store: its settings, so a shared link finds it."""
    return ("induction-train", seed, heads, steps)


def train_job(seed: int, heads: int, steps: int) -> Callable[[Callable[[float, str], None]], dict]:
    """What ``ui.jobs.run_job`` runs for the Train button: train, evaluate, and compare with the shipped
    run (plain data, stored for every reader of the same settings)."""

    def job(progress: Callable[[float, str], None]) -> dict:
        cfg = ind.Config(seed=seed, n_heads=heads, steps=steps)
        result = ind.train(cfg, lambda s, n, loss: progress(
            s / n, f"step {s:,} / {n:,} · loss on repeated positions {loss:.3f}"))
        metrics = ind.evaluate(result.model, cfg)
        meta = shipped()["meta"]
        phase = ind.phase_change(result.curve)
        formed = max(metrics["induction_scores"]) >= ind.HEAD_SCORE_THRESHOLD
        return {"metrics": metrics, "curve": result.curve, "seconds": result.seconds,
                "cpu_seconds": result.cpu_seconds, "phase": phase, "formed": formed,
                "curve_specs": fig.curve_spec(result.curve, metrics["ln_vocab"], phase.get("step") if formed else None),
                "trained_on": ind.this_machine(), "versus_shipped": ind.metric_differences(metrics, meta["metrics"]),
                # Only a retrain of the shipped configuration has weights to set beside the shipped ones.
                "weights_versus_shipped": (ind.weight_differences(result.model, shipped_model())
                                           if ind.is_shipped_config(cfg, meta) else None)}

    return job


@st.cache_data(show_spinner=False, max_entries=64)
def attend_checkpoint(seed: int, text: str) -> Checkpoint | None:
    """The question before the heatmaps: where the induction head looks from the sequence's last
    repeated position (core.checkpoints.induction.attend_most, on the sequence of sequence_view)."""
    view = sequence_view(seed, text)
    head = int(shipped()["meta"]["metrics"]["induction_head"][3:])
    return cps.attend_most(shipped_model(), view["ids"], view["repeat_positions"], 1, head)
