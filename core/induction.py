"""A two-layer attention-only transformer trained to copy repeated random tokens, taken apart.

The model has no LayerNorm, no MLP and no biases, so its logits are *exactly* a sum of terms
(Elhage et al. 2021, "A Mathematical Framework for Transformer Circuits"):

    resid_final = W_E[t] + W_pos + Σ_{l=0}^{1} Σ_{h=0}^{H-1} result[l, h]        # [B, S, D]
    logits      = resid_final @ W_U                                             # [B, S, V]

where ``result[l, h]`` is head h of layer l projected by its own slice W_O[h]: the per-head term
that ``core.attention.multi_head_attention`` returns as ``per_head``. Each layer *is* that
function, on an :class:`~core.attention.AttentionWeights`; layer 1 reads the residual stream that
layer 0 added into.

The task (Olsson et al. 2022, "In-context Learning and Induction Heads"): random tokens in which a
span of random length repeats at a random place. Only the copy is predictable, and only by finding
the earlier occurrence of the current token and copying what came after it: an induction head in
layer 1, whose keys come from a previous-token head in layer 0.

Command line::

    python -m core.induction train --seed 0 --out core/weights/induction.pt
    python -m core.induction report core/weights/induction.pt

The code is in three modules a reader can hold, one job each: ``core.induction_model`` (sizes,
weights, data, the forward pass, head scores), ``core.induction_train`` (training, evaluation,
saving, comparing two runs) and this one (taking a run apart: logit terms, ablation, composition;
reading typed sequences; the command line). This module re-exports the other two, so callers
write ``core.induction.<name>`` for all of it.

Weights are saved as a plain state dict in TransformerLens's names and shapes (``embed.W_E``,
``pos_embed.W_pos``, ``blocks.{l}.attn.W_Q/W_K/W_V/W_O``, ``unembed.W_U``), with the config,
metrics and training curve in a JSON file beside them.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections.abc import Iterable
from pathlib import Path

import pandas as pd
import torch
from torch import Tensor

from core.device import torch_threads
# The model, its data and scores, and its training live in two modules of their own; their names are
# this module's too, so every caller reads ``core.induction.<name>``.
from core.induction_model import (  # noqa: F401
    ALPHABET, N_LAYERS, EVAL_SEED, EVAL_BATCH, MAX_STEPS, MAX_HEADS, HEAD_SCORE_THRESHOLD,
    Config, InductionModel, Batch, make_batch, sample_sequence, default_position, eval_batch,
    repeat_mask, induction_keys, Head, Run, run, EVAL_CHUNK, chunks, head_means, token_losses, losses,
    loss_means,
    prev_token_scores, induction_scores, SequenceScores, sequence_induction_scores, head_label,
    all_heads,
)
from core.induction_train import (  # noqa: F401
    HERE, WEIGHTS, METRICS, TrainResult, train, evaluate, phase_change, save,
    this_machine, weight_differences, COMPARED_METRICS, metric_differences, is_shipped_config,
    load, curve_frame,
)

__all__ = [
    "ALPHABET", "N_LAYERS", "EVAL_SEED", "EVAL_BATCH", "MAX_STEPS", "MAX_HEADS", "HEAD_SCORE_THRESHOLD",
    "Config", "InductionModel", "Batch", "make_batch", "sample_sequence", "default_position", "eval_batch",
    "repeat_mask", "induction_keys", "Head", "Run", "run", "head_means", "token_losses", "losses",
    "prev_token_scores", "induction_scores", "SequenceScores", "sequence_induction_scores", "head_label",
    "all_heads", "HERE", "WEIGHTS", "METRICS", "TrainResult", "train", "evaluate",
    "phase_change", "save", "this_machine", "weight_differences", "COMPARED_METRICS", "metric_differences",
    "is_shipped_config", "load", "curve_frame", "logit_terms", "parse_ablate", "format_ablate",
    "ablation_table", "composition_scores", "composition_frame", "qk_path", "parse_sequence", "to_text",
    "main",
]


# ---- the sum, term by term ----------------------------------------------------------------------


def logit_terms(model: InductionModel, tokens: Tensor, position: int, target: int | None = None,
                ablate: Iterable[Head] = ()) -> dict:
    """Direct logit attribution at one position of one sequence (tokens [1, S]), in float64.

    The logit of ``target`` (default: the actual next token) splits into the token embedding's
    term, the position embedding's, and one term per head of both layers: each term is that
    vector of the residual stream dotted with W_U[:, target]. Returns the terms, their sum, the
    model's own logit and the difference (rounding only).
    """
    m64 = model.to(torch.float64)
    with torch.no_grad():
        r = run(m64, tokens, ablate)
    S = tokens.shape[1]
    if not 0 <= position < S:
        raise ValueError(f"position {position} is outside 0 … {S - 1}")
    if target is None:
        if position >= S - 1:
            raise ValueError("the last position has no next token; give a target")
        target = int(tokens[0, position + 1])
    u = m64.W_U[:, target]  # [D]
    names = ["embed", "pos"] + [head_label(l, h) for l, h in all_heads(model.n_heads)]
    vectors = [r.embed[0, position], r.pos[0, position]] + [
        r.results[l][0, position, h] for l, h in all_heads(model.n_heads)
    ]  # each [D]
    terms = [float(v @ u) for v in vectors]
    logit = float(r.logits[0, position, target])
    total = float(sum(terms))
    probs = r.logits[0, position].softmax(-1)  # [V]
    return {
        "terms": pd.DataFrame({"term": names, "value": terms}),
        "sum": total, "logit": logit, "difference": total - logit, "target": target,
        "target_prob": float(probs[target]), "mean_logit": float(r.logits[0, position].mean()),
    }


def parse_ablate(text: str, n_heads: int) -> tuple[list[Head], list[str]]:
    """``"0.1,1.0"`` (layer.head; ``L0H1`` works too) → sorted unique heads, and readable problems.

    Unreadable items and heads that do not exist are left out, each with a message.
    """
    heads: set[Head] = set()
    problems: list[str] = []
    items = [s for s in re.split(r"[,;\s]+", (text or "").strip()) if s]
    if len(items) > 4 * N_LAYERS * n_heads:
        problems.append(f"The list has {len(items)} items; only the first {4 * N_LAYERS * n_heads} were read.")
        items = items[: 4 * N_LAYERS * n_heads]
    for item in items:
        if item.lower() in ("none", "-"):
            continue
        m = re.fullmatch(r"[lL]?(\d{1,3})(?:[.:]|[hH]|\.[hH])(\d{1,3})", item)
        shown = item[:20].replace("`", "'")
        if not m:
            problems.append(f"`{shown}` is not a head: write layer.head, e.g. `1.0` for layer 1, head 0.")
            continue
        l, h = int(m.group(1)), int(m.group(2))
        if l >= N_LAYERS or h >= n_heads:
            problems.append(f"`{shown}`: this model has layers 0–{N_LAYERS - 1} and heads 0–{n_heads - 1}.")
            continue
        heads.add((l, h))
    return sorted(heads), problems


def format_ablate(heads: Iterable[Head]) -> str:
    return ",".join(f"{l}.{h}" for l, h in sorted(set(heads)))


@torch_threads(1)
def ablation_table(model: InductionModel, sets: dict[str, list[Head]], n: int = EVAL_BATCH,
                   seed: int = EVAL_SEED) -> pd.DataFrame:
    """Loss on repeated and other positions with each named set of heads removed, zero and mean.

    Measured on ``n`` fresh sequences; the mean of each head's term comes from the clean run on the
    same sequences, per position. The sequences go through in chunks of ``EVAL_CHUNK`` (each
    sequence computed on its own either way, so the losses are those of one pass), and each ablated
    run starts from the chunk's clean run at the first layer it changes (``run``'s ``clean``).
    """
    cfg = Config(d_vocab=model.d_vocab, n_ctx=model.n_ctx, d_model=model.d_model, n_heads=model.n_heads)
    batch = eval_batch(cfg, n, seed)
    means = head_means(model, batch.tokens)
    per_token: dict[tuple[str, str], list[Tensor]] = {(name, mode): [] for name in sets for mode in ("zero", "mean")}
    with torch.no_grad():
        for part in chunks(batch.tokens):  # [c, S]
            clean = run(model, part)
            for name, heads in sets.items():
                for mode in ("zero", "mean"):
                    r = run(model, part, heads, mode=mode, means=means, clean=clean)
                    per_token[name, mode].append(token_losses(r.logits, part))  # [c, S-1]
    rows = []
    for name, heads in sets.items():
        row = {"removed": name, "heads": format_ablate(heads) or "none"}
        for mode in ("zero", "mean"):
            l = loss_means(torch.cat(per_token[name, mode]), batch.repeat)
            row[f"loss_repeat_{mode}"] = l["loss_repeat"]
            row[f"loss_other_{mode}"] = l["loss_other"]
        rows.append(row)
    return pd.DataFrame(rows)


# ---- composition --------------------------------------------------------------------------------


def _comp(left: Tensor, right: Tensor) -> Tensor:
    """‖left @ right‖_F / (‖left‖_F ‖right‖_F) for every pair: left [H0, D, D], right [H1, D, D] → [H0, H1]."""
    prod = torch.einsum("aij,bjk->abik", left, right)  # [H0, H1, D, D]
    return prod.flatten(2).norm(dim=-1) / (left.flatten(1).norm(dim=-1)[:, None] * right.flatten(1).norm(dim=-1)[None, :])


def composition_scores(model: InductionModel, baseline_draws: int = 200, seed: int = 0) -> dict:
    """Q-, K- and V-composition of every (layer-0 head, layer-1 head) pair, and a random baseline.

    As in TransformerLens's ``all_composition_scores``: left = OV of the layer-0 head (W_V W_O);
    right = QK of the layer-1 head for Q, its transpose QKᵀ = W_K W_Q^T for K (the layer-0 head
    writes into the *keys*: x_q W_Q W_K^T (y W_V W_O)^T), and its OV for V. The baseline is the
    mean score of Gaussian matrices with the same shapes (W_V [D, L] W_O [L, D] against
    W_Q [D, L] W_K[D, L]^T), which the score does not depend on the scale of.
    """
    m = model.to(torch.float64)
    ov, qk = m.OV, m.QK  # [n_layers, H, D, D] each
    ov0, qk1, ov1 = ov[0], qk[1], ov[1]  # [H, D, D] each
    scores = {
        "Q": _comp(ov0, qk1).numpy(),
        "K": _comp(ov0, qk1.transpose(-1, -2)).numpy(),
        "V": _comp(ov0, ov1).numpy(),
    }
    D, L = m.d_model, m.d_head
    gen = torch.Generator().manual_seed(seed)
    def rnd(*shape: int) -> Tensor:
        return torch.randn(baseline_draws, *shape, generator=gen, dtype=torch.float64)
    left = rnd(D, L) @ rnd(L, D)  # [N, D, D]
    right = rnd(D, L) @ rnd(L, D)  # [N, D, D]
    base = ((left @ right).flatten(1).norm(dim=-1) / (left.flatten(1).norm(dim=-1) * right.flatten(1).norm(dim=-1)))
    return {"scores": scores, "baseline": float(base.mean()), "baseline_std": float(base.std())}


def composition_frame(comp: dict) -> pd.DataFrame:
    """Long table: one row per (kind, layer-0 head, layer-1 head), with the score above baseline."""
    rows = []
    for kind, mat in comp["scores"].items():
        for h0 in range(mat.shape[0]):
            for h1 in range(mat.shape[1]):
                rows.append({"kind": kind, "layer-0 head": head_label(0, h0), "layer-1 head": head_label(1, h1),
                             "score": float(mat[h0, h1]), "baseline": comp["baseline"],
                             "score minus baseline": float(mat[h0, h1]) - comp["baseline"]})
    return pd.DataFrame(rows)


def qk_path(model: InductionModel, src: int, dst: int) -> dict:
    """The K-composition path from layer-0 head ``src`` into layer-1 head ``dst``, token by token.

    M[a, b] = (W_E[a] W_Q^dst) · (W_E[b] W_V^src W_O^src W_K^dst) / √L: how much a query whose
    token is a scores a key whose layer-0 head ``src`` wrote token b's embedding (for a
    previous-token head: a key whose *previous* token is b). An induction head wants b = a: a
    bright diagonal. Returns M [V, V] and how diagonal it is.
    """
    m = model.to(torch.float64)
    w1 = m.layers[1]
    q = m.W_E @ w1.W_Q[dst]  # [V, L]
    k = m.W_E @ m.OV[0, src] @ w1.W_K[dst]  # [V, L]: W_E[b] W_V W_O of head src, read by dst's keys
    M = (q @ k.T) / math.sqrt(m.d_head)  # [V, V]
    V = M.shape[0]
    diag = M.diagonal()
    off = M[~torch.eye(V, dtype=torch.bool)]
    return {
        "matrix": M.numpy(),
        "diagonal_argmax_fraction": float((M.argmax(dim=1) == torch.arange(V)).double().mean()),
        "diagonal_mean": float(diag.mean()), "off_diagonal_mean": float(off.mean()),
        "off_diagonal_std": float(off.std()),
    }


# ---- reading typed sequences ----------------------------------------------------------------------


def parse_sequence(text: str, d_vocab: int = len(ALPHABET), n_ctx: int = 32) -> tuple[list[int], list[str]]:
    """A typed sequence → token ids and readable problems.

    Letters of :data:`ALPHABET` are read one token each (spaces ignored); a text of whole numbers
    separated by commas or spaces is read as ids. Unknown symbols are dropped, a sequence longer
    than ``n_ctx`` is cut, and fewer than two tokens is a problem (the caller falls back).
    """
    problems: list[str] = []
    text = text or ""
    stripped = text.strip()
    if re.fullmatch(r"[\d\s,;]+", stripped) and re.search(r"\d", stripped):
        ids, bad = [], []
        for item in re.split(r"[\s,;]+", stripped):
            if not item:
                continue
            v = int(item) if len(item) < 6 else d_vocab
            (ids if v < d_vocab else bad).append(v if v < d_vocab else item[:8])
        if bad:
            problems.append(f"Left out ids outside 0–{d_vocab - 1}: {', '.join(map(str, bad[:8]))}"
                            + ("…" if len(bad) > 8 else "") + ".")
    else:
        alphabet = ALPHABET[:d_vocab]
        ids = [alphabet.index(c) for c in text if c in alphabet]
        unknown = sorted({c for c in text if c not in alphabet and not c.isspace()})
        if unknown:
            shown = "".join(unknown[:12]).replace("`", "'")
            problems.append(f"Left out {len(unknown)} symbol{'s' if len(unknown) != 1 else ''} not in the model's "
                            f"alphabet (a–z, A–Z): `{shown}`" + ("…" if len(unknown) > 12 else "") + ".")
    if len(ids) > n_ctx:
        problems.append(f"The model reads at most {n_ctx} tokens; kept the first {n_ctx} of {len(ids)}.")
        ids = ids[:n_ctx]
    if len(ids) < 2:
        problems.append("A sequence needs at least two tokens the model knows (one to read, one to predict).")
    return ids, problems


def to_text(ids: Iterable[int]) -> str:
    return "".join(ALPHABET[i] for i in ids)


# ---- command line ---------------------------------------------------------------------------------


def _print_report(metrics: dict) -> None:
    print(f"loss on repeated positions {metrics['loss_repeat']:.4f} nats, on the others {metrics['loss_other']:.4f} "
          f"(ln V = {metrics['ln_vocab']:.4f}), {metrics['eval_sequences']} fresh sequences (seed {metrics['eval_seed']})")
    for name, key, base in (("previous-token", "prev_token_scores", "prev_token_baseline"),
                            ("induction", "induction_scores", "induction_baseline")):
        layer = 0 if key.startswith("prev") else 1
        scores = ", ".join(f"{head_label(layer, h)} {s:.3f}" for h, s in enumerate(metrics[key]))
        print(f"{name} scores: {scores} (uniform attention: {metrics[base]:.3f})")
    print(f"without the induction heads {', '.join(metrics['induction_heads'])}: repeated loss "
          f"{metrics['loss_repeat_without_induction_heads']:.4f}")
    print(f"without the previous-token head {metrics['prev_token_head']}: repeated loss "
          f"{metrics['loss_repeat_without_prev_token_head']:.4f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.induction", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train from a seed and save the weights and metrics")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--heads", type=int, default=Config.n_heads)
    t.add_argument("--steps", type=int, default=Config.steps)
    t.add_argument("--out", type=Path, default=WEIGHTS)
    r = sub.add_parser("report", help="measure a saved model")
    r.add_argument("path", type=Path, nargs="?", default=WEIGHTS)
    args = parser.parse_args(argv)
    if args.command == "train":
        cfg = Config(seed=args.seed, n_heads=args.heads, steps=args.steps)

        def progress(step: int, steps: int, loss: float) -> None:
            if step % 250 == 0 or step == steps:
                print(f"step {step:5d}/{steps}  loss on repeated positions {loss:.4f}", flush=True)

        result = train(cfg, progress)
        metrics = evaluate(result.model, cfg)
        json_path = save(result, args.out, metrics)
        print(f"trained in {result.seconds:.1f} s ({result.cpu_seconds:.1f} s CPU, 1 thread); "
              f"wrote {args.out} and {json_path}")
        _print_report(metrics)
    else:
        model, _ = load(args.path)
        _print_report(evaluate(model))
    return 0


if __name__ == "__main__":
    sys.exit(main())
