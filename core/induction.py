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

Weights are saved as a plain state dict in TransformerLens's names and shapes (``embed.W_E``,
``pos_embed.W_pos``, ``blocks.{l}.attn.W_Q/W_K/W_V/W_O``, ``unembed.W_U``), with the config,
metrics and training curve in a JSON file beside them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import platform
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor

from core.attention import AttentionTrace, AttentionWeights, multi_head_attention
from core.busy import Busy, OneAtATime
from core.device import cpu_model, torch_threads

__all__ = [
    "ALPHABET", "Config", "InductionModel", "Batch", "Run", "make_batch", "run", "train", "evaluate",
    "losses", "prev_token_scores", "induction_scores", "logit_terms", "ablation_table",
    "composition_scores", "qk_path", "parse_ablate", "parse_sequence", "load", "save",
    "this_machine", "weight_differences", "metric_differences", "is_shipped_config",
    "WEIGHTS", "METRICS", "Busy", "exclusive",
]

# The model's alphabet: token id i is ALPHABET[i]. 52 letters, so a typed sequence is readable, and
# two positions share a letter by chance with probability 1/52 only: copying usually pays.
ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
N_LAYERS = 2
EVAL_SEED = 20_211_222  # the fresh sequences every metric is measured on (never drawn in training)
EVAL_BATCH = 512
MAX_STEPS = 3000  # the page's cap on one training run
MAX_HEADS = 4  # per layer, on the page
# A head counts as "an induction head" / "a previous-token head" when its score is at least this:
# ten times what uniform causal attention scores at this length (about 0.03 and 0.06, see the
# baselines that evaluate() returns), and a head that puts a third of its attention on one key.
HEAD_SCORE_THRESHOLD = 0.3
HERE = Path(__file__).resolve().parent
WEIGHTS = HERE / "weights" / "induction.pt"
METRICS = HERE / "weights" / "induction.json"


@dataclass(frozen=True)
class Config:
    """Sizes and training settings. The defaults are the shipped run's.

    d_vocab 52 and n_ctx 32: a sequence fits across a heatmap, and two positions share a letter by
    chance with probability 1/52, so an earlier occurrence of the current letter is often the copy's. d_model 64 with 2 heads: each head
    has d_head 32, enough for the induction head to match tokens sharply; the whole model is
    (52 + 32 + 52)·64 + 2·4·64·64 = 41,472 numbers (162 KiB in float32), small enough to print.
    """

    d_vocab: int = len(ALPHABET)
    n_ctx: int = 32
    d_model: int = 64
    n_heads: int = 2
    min_repeat: int = 3
    steps: int = 2000
    batch: int = 32
    lr: float = 1e-2
    weight_decay: float = 0.0
    seed: int = 0
    eval_every: int = 25
    eval_batch: int = 128  # sequences behind each point of the training curve

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads

    @property
    def max_repeat(self) -> int:
        return self.n_ctx // 2

    def check(self) -> None:
        if self.n_heads < 1 or self.d_model % self.n_heads:
            raise ValueError(f"n_heads = {self.n_heads} must divide d_model = {self.d_model}")
        if not 2 <= self.min_repeat <= self.max_repeat:
            raise ValueError("min_repeat must be between 2 and n_ctx // 2")
        if self.steps < 1 or self.batch < 1:
            raise ValueError("steps and batch must be positive")


# ---- the model ---------------------------------------------------------------------------------


@dataclass
class InductionModel:
    """Token and position embeddings, two attention layers, an unembedding. Nothing else."""

    W_E: Tensor  # [V, D]
    W_pos: Tensor  # [S, D]
    layers: list[AttentionWeights]  # each W_Q/W_K/W_V [H, D, L], W_O [H, L, D]
    W_U: Tensor  # [D, V]

    @property
    def d_vocab(self) -> int:
        return self.W_E.shape[0]

    @property
    def n_ctx(self) -> int:
        return self.W_pos.shape[0]

    @property
    def d_model(self) -> int:
        return self.W_E.shape[1]

    @property
    def n_heads(self) -> int:
        return self.layers[0].n_heads

    @property
    def d_head(self) -> int:
        return self.layers[0].d_head

    # ---- the weights stacked over layers, and the circuits they make (TransformerLens's names) ----
    # TransformerLens keeps these on the model (``model.W_Q``, ``model.OV``, ``model.QK``) rather than
    # in the analysis that reads them; so does this class. Stacked [n_layers, H, ...] like theirs.

    @property
    def W_Q(self) -> Tensor:
        return torch.stack([w.W_Q for w in self.layers])  # [n_layers, H, D, L]

    @property
    def W_K(self) -> Tensor:
        return torch.stack([w.W_K for w in self.layers])  # [n_layers, H, D, L]

    @property
    def W_V(self) -> Tensor:
        return torch.stack([w.W_V for w in self.layers])  # [n_layers, H, D, L]

    @property
    def W_O(self) -> Tensor:
        return torch.stack([w.W_O for w in self.layers])  # [n_layers, H, L, D]

    @property
    def OV(self) -> Tensor:
        """Each head's OV circuit W_V W_O, [n_layers, H, D, D]: what the head writes into the residual
        stream for a key vector y, y @ W_V @ W_O (TransformerLens's ``model.OV``, multiplied out)."""
        return self.W_V @ self.W_O  # [n_layers, H, D, D]

    @property
    def QK(self) -> Tensor:
        """Each head's QK circuit W_Q W_Kᵀ, [n_layers, H, D, D]: how much a query vector x scores a
        key vector y, x @ W_Q @ W_Kᵀ @ yᵀ, before the 1/√L scale (TransformerLens's ``model.QK``)."""
        return self.W_Q @ self.W_K.transpose(-1, -2)  # [n_layers, H, D, D]

    @classmethod
    def init(cls, cfg: Config, gen: torch.Generator) -> "InductionModel":
        """Gaussian weights from ``gen``; embeddings at 3/√D so the residual starts near unit size."""
        V, S, D, H, L = cfg.d_vocab, cfg.n_ctx, cfg.d_model, cfg.n_heads, cfg.d_head
        std = 1 / math.sqrt(D)

        def draw(*shape: int, scale: float = std) -> Tensor:
            return (torch.randn(*shape, generator=gen) * scale).requires_grad_()

        W_E = draw(V, D, scale=3 * std)  # [V, D]
        W_pos = draw(S, D, scale=3 * std)  # [S, D]
        W_U = draw(D, V)  # [D, V]
        layers = [AttentionWeights(draw(H, D, L), draw(H, D, L), draw(H, D, L), draw(H, L, D)) for _ in range(N_LAYERS)]
        return cls(W_E, W_pos, layers, W_U)

    @property
    def size(self) -> int:
        """How many numbers the model is (41,472 for the shipped sizes)."""
        return sum(t.numel() for t in self.parameters())

    def parameters(self) -> list[Tensor]:
        return [self.W_E, self.W_pos, self.W_U] + [t for w in self.layers for t in (w.W_Q, w.W_K, w.W_V, w.W_O)]

    def state_dict(self) -> dict[str, Tensor]:
        """TransformerLens names and shapes (HookedTransformer.load_state_dict reads these keys)."""
        sd = {"embed.W_E": self.W_E, "pos_embed.W_pos": self.W_pos}
        for l, w in enumerate(self.layers):
            for name in ("W_Q", "W_K", "W_V", "W_O"):
                sd[f"blocks.{l}.attn.{name}"] = getattr(w, name)
        sd["unembed.W_U"] = self.W_U
        return {k: v.detach().clone().contiguous() for k, v in sd.items()}

    @classmethod
    def from_state_dict(cls, sd: dict[str, Tensor | np.ndarray], dtype: torch.dtype = torch.float32) -> "InductionModel":
        def get(name: str) -> Tensor:
            return torch.as_tensor(sd[name]).to(dtype)  # a tensor, or a numpy array (ui.figures' cache)

        layers = [
            AttentionWeights(*(get(f"blocks.{l}.attn.{n}") for n in ("W_Q", "W_K", "W_V", "W_O")))
            for l in range(N_LAYERS)
        ]
        model = cls(get("embed.W_E"), get("pos_embed.W_pos"), layers, get("unembed.W_U"))
        if model.W_U.shape != (model.d_model, model.d_vocab) or model.W_pos.shape[1] != model.d_model:
            raise ValueError("state dict shapes do not fit together")
        return model

    def to(self, dtype: torch.dtype) -> "InductionModel":
        return InductionModel.from_state_dict(self.state_dict(), dtype=dtype)


# ---- the data ----------------------------------------------------------------------------------


@dataclass
class Batch:
    """Random tokens with one repeated span per sequence."""

    tokens: Tensor  # [B, S] int64
    repeat: Tensor  # [B, S-1] bool: position i's next token is predictable (i is in the copy, before its last token)
    offset: Tensor  # [B] int64: how far back the first copy starts (second start − first start)
    length: Tensor  # [B] int64: the repeated span's length
    start: Tensor  # [B] int64: where the second copy starts


def make_batch(n: int, cfg: Config, gen: torch.Generator) -> Batch:
    """``n`` sequences of ``cfg.n_ctx`` uniform random tokens in which a span repeats.

    The span's length R is uniform in min_repeat … n_ctx // 2, its first copy starts anywhere, and
    the second copy anywhere after the first has ended: neither the length nor the place is
    fixed, so positions alone cannot say where a copy is.
    """
    S = cfg.n_ctx
    tokens = torch.randint(cfg.d_vocab, (n, S), generator=gen)  # [B, S]
    u = torch.rand(n, 3, generator=gen, dtype=torch.float64)  # [B, 3]
    R = cfg.min_repeat + (u[:, 0] * (cfg.max_repeat - cfg.min_repeat + 1)).long()  # [B]
    a = (u[:, 1] * (S - 2 * R + 1)).long()  # [B] first copy: a … a+R−1
    lo = a + R
    b = lo + (u[:, 2] * (S - R + 1 - lo)).long()  # [B] second copy: b … b+R−1, b ≥ a+R
    p = torch.arange(S)[None]  # [1, S]
    in_copy = (p >= b[:, None]) & (p < (b + R)[:, None])  # [B, S]
    source = torch.where(in_copy, a[:, None] + p - b[:, None], p)  # [B, S]
    tokens = tokens.gather(1, source)  # [B, S]
    repeat = (p >= b[:, None]) & (p <= (b + R - 2)[:, None])  # [B, S]
    return Batch(tokens, repeat[:, :-1], b - a, R, b)


def sample_sequence(seed: int, cfg: Config | None = None) -> Batch:
    """One seeded random sequence of the task (the page's default input)."""
    gen = torch.Generator().manual_seed(int(seed) + 1_000_003)  # not a training or evaluation stream
    return make_batch(1, cfg or Config(), gen)


def default_position(seed: int = 0) -> int:
    """The middle of the second copy in seed ``seed``'s sequence: the page's first position to split."""
    b = sample_sequence(seed)
    return int(b.start[0] + b.length[0] // 2)


def eval_batch(cfg: Config, n: int = EVAL_BATCH, seed: int = EVAL_SEED) -> Batch:
    return make_batch(n, cfg, torch.Generator().manual_seed(seed))


def repeat_mask(tokens: Tensor) -> Tensor:
    """[B, S] tokens → [B, S-1] bool: the pair (t_i, t_{i+1}) occurred earlier in the sequence.

    For a typed sequence there is no generator to say where the copy is; these are the positions
    that copying from an earlier occurrence can get right (the copy, and any pair repeated by chance).
    """
    pair = tokens[:, :-1] * 1_000_003 + tokens[:, 1:]  # [B, S-1] each bigram as one number
    same = pair[:, :, None] == pair[:, None, :]  # [B, S-1 (i), S-1 (k)]
    earlier = torch.ones(same.shape[-1], same.shape[-1], dtype=torch.bool).tril(diagonal=-1)  # k < i
    return (same & earlier[None]).any(-1)


def induction_keys(tokens: Tensor) -> Tensor:
    """[B, S] → [B, S] int64: the key an induction head reads at each query (Olsson et al. 2022):
    the position right after the *most recent* earlier occurrence of the query's token; −1 where
    the token has not occurred before."""
    B, S = tokens.shape
    same = tokens[:, :, None] == tokens[:, None, :]  # [B, S (query i), S (k)] t_i == t_k
    earlier = torch.ones(S, S, dtype=torch.bool).tril(diagonal=-1)  # [S, S] k < i
    k = torch.arange(S).expand(B, S, S)  # [B, S, S] each row's key positions
    last = torch.where(same & earlier, k, torch.full_like(k, -1)).max(dim=-1).values  # [B, S] −1: none
    return torch.where(last >= 0, last + 1, last)


# ---- the forward pass, with ablation ------------------------------------------------------------

Head = tuple[int, int]  # (layer, head)


@dataclass
class Run:
    """Every term of the residual stream for one forward pass."""

    tokens: Tensor  # [B, S]
    embed: Tensor  # [B, S, D] W_E[t]
    pos: Tensor  # [B, S, D] W_pos broadcast over the batch
    traces: list[AttentionTrace]  # one per layer; trace.pattern [B, H, S, S]
    results: list[Tensor]  # per layer [B, S, H, D]: the terms that were added (after ablation)
    resid: Tensor  # [B, S, D] the final residual stream
    logits: Tensor  # [B, S, V]


def run(
    model: InductionModel,
    tokens: Tensor,
    ablate: Iterable[Head] = (),
    *,
    mode: str = "zero",
    means: list[Tensor] | None = None,
) -> Run:
    """The model on tokens [B, S], with the heads in ``ablate`` removed from the sum.

    ``mode="zero"`` drops a head's term; ``mode="mean"`` replaces it with ``means[l][:, h]``, its
    average over a reference batch at each position ([S, H, D] per layer, from :func:`head_means`).
    An ablated layer-0 head is missing from layer 1's input too, so layer 1's patterns change.
    """
    ablate = set(ablate)
    B, S = tokens.shape
    embed = model.W_E[tokens]  # [B, S, D]
    pos = model.W_pos[:S].expand(B, S, -1)  # [B, S, D]
    x = embed + pos  # [B, S, D]
    traces, results = [], []
    for l, weights in enumerate(model.layers):
        trace = multi_head_attention(x, weights, causal=True)
        gone = [h for h in range(model.n_heads) if (l, h) in ablate]
        if not gone:
            result = trace.per_head  # [B, S, H, D]
            out = trace.out_concat  # [B, S, D] the fast path: concatenate, then project
        else:
            keep = torch.ones(model.n_heads, dtype=x.dtype)  # [H]
            keep[gone] = 0
            result = trace.per_head * keep[None, None, :, None]  # [B, S, H, D]
            if mode == "mean":
                if means is None:
                    raise ValueError("mean ablation needs the heads' means (head_means)")
                fill = means[l][:S] * (1 - keep)[None, :, None]  # [S, H, D]
                result = result + fill[None]
            elif mode != "zero":
                raise ValueError(f"mode must be 'zero' or 'mean', not {mode!r}")
            out = result.sum(dim=2)  # [B, S, D] project each head, then add: the sum view
        x = x + out
        traces.append(trace)
        results.append(result)
    logits = x @ model.W_U  # [B, S, V]
    return Run(tokens, embed, pos, traces, results, x, logits)


def head_means(model: InductionModel, tokens: Tensor) -> list[Tensor]:
    """Each head's term averaged over the batch, per position: [S, H, D] per layer (clean run)."""
    with torch.no_grad():
        r = run(model, tokens)
    return [res.mean(dim=0) for res in r.results]


def token_losses(logits: Tensor, tokens: Tensor) -> Tensor:
    """[B, S, V], [B, S] → [B, S-1]: cross-entropy of each position's guess at the next token."""
    B, S, V = logits.shape
    return F.cross_entropy(logits[:, :-1].reshape(-1, V), tokens[:, 1:].reshape(-1), reduction="none").view(B, S - 1)


def losses(logits: Tensor, tokens: Tensor, repeat: Tensor) -> dict[str, float]:
    """Mean loss on the predictable (repeated) positions and on all the others, in nats."""
    per = token_losses(logits, tokens)  # [B, S-1]
    return {"loss_repeat": float(per[repeat].mean()), "loss_other": float(per[~repeat].mean())}


# ---- what the heads do --------------------------------------------------------------------------


def prev_token_scores(pattern: Tensor) -> tuple[np.ndarray, float]:
    """pattern [B, H, S, S] → per-head mean attention from position i to i−1 (i ≥ 1), and what
    uniform causal attention (1/(i+1) on every key) would score."""
    S = pattern.shape[-1]
    score = pattern.diagonal(offset=-1, dim1=-2, dim2=-1).mean(dim=(0, 2))  # [H]
    baseline = float(np.mean(1.0 / (np.arange(1, S) + 1)))
    return score.double().numpy(), baseline


def induction_scores(pattern: Tensor, batch: Batch) -> tuple[np.ndarray, float]:
    """pattern [B, H, S, S] → per-head mean attention from each predictable token of the copy to
    the token after its earlier occurrence (key i − offset + 1), and the uniform baseline."""
    b_idx, i_idx = batch.repeat.nonzero(as_tuple=True)  # query positions in the copy
    k_idx = i_idx - batch.offset[b_idx] + 1  # [N] the key an induction head should read
    score = pattern[b_idx, :, i_idx, k_idx].mean(dim=0)  # [H]
    baseline = float((1.0 / (i_idx + 1).double()).mean())
    return score.double().numpy(), baseline


@dataclass(frozen=True)
class SequenceScores:
    """Per-head induction scores on one typed or drawn sequence, and what they are averaged over."""

    scores: np.ndarray  # [H] mean attention on the induction key; NaN when no position is scored
    n_scored: int  # repeated positions whose induction key is at least two keys back
    n_adjacent: int  # repeated positions left out: their induction key is the query itself or the key before it


def sequence_induction_scores(pattern: Tensor, tokens: Tensor) -> SequenceScores:
    """For any sequence (typed too): per head, the mean attention from each repeated position (see
    :func:`repeat_mask`) to its induction key (:func:`induction_keys`, one key per query).

    A repeated position whose most recent earlier occurrence is one or two back is left out: its
    induction key is then the query itself or the key just before it, where an induction head
    cannot be told from a head that attends to itself or to the previous token (in ``zzzzzzzz``
    every position is such a one, and the score is NaN rather than a previous-token head's).
    """
    B, H, S, _ = pattern.shape  # [B, H, S (query), S (key)]
    keys = induction_keys(tokens)[:, :-1]  # [B, S-1] the last position has no next token to predict
    repeated = repeat_mask(tokens)  # [B, S-1]
    i = torch.arange(S - 1)[None]  # [1, S-1]
    apart = (keys >= 0) & (keys <= i - 2)  # [B, S-1] the key is neither the query nor the one before it
    scored = repeated & apart  # [B, S-1]
    n_adjacent = int((repeated & ~apart).sum())
    b_idx, i_idx = scored.nonzero(as_tuple=True)  # [N] each scored query
    if len(b_idx) == 0:
        return SequenceScores(np.full(H, np.nan), 0, n_adjacent)
    on_key = pattern[b_idx, :, i_idx, keys[b_idx, i_idx]]  # [N, H]
    return SequenceScores(on_key.mean(dim=0).double().numpy(), len(b_idx), n_adjacent)


def head_label(l: int, h: int) -> str:
    return f"L{l}H{h}"


def all_heads(n_heads: int) -> list[Head]:
    return [(l, h) for l in range(N_LAYERS) for h in range(n_heads)]


# ---- training ----------------------------------------------------------------------------------


# One training at a time per server (a second reader is told to wait): core.busy.
exclusive = OneAtATime("another training run is in progress on this server").hold


# Evaluation and ablation run under ``@torch_threads(1)`` (core.device): this model's products are
# tiny, and on a busy 2-core server two threads spend more time waiting for each other than
# computing (an ablation table took 9.3 s on two threads and 0.7 s on one, measured here in one run).


@contextlib.contextmanager
def _deterministic() -> Iterator[None]:
    """One thread and deterministic kernels: on one machine, the same seed gives the same weights
    bit for bit (tests/test_induction_core.py checks it).

    Not across machines. Another processor runs other vector kernels (AVX-512 or AVX2, another
    vendor's BLAS path), which add the same products in another order; each step rounds a little
    differently, and 2,000 steps of training carry the difference forward. Measured for the shipped
    seed: the weights land up to 5e-3 apart (about 1 % of a tensor's largest entry) while every
    metric agrees to four decimals and the same heads form the same circuit. :func:`this_machine`
    records where a run trained; :func:`weight_differences` and :func:`metric_differences` compare.
    """
    old_det = torch.are_deterministic_algorithms_enabled()
    with torch_threads(1):
        torch.use_deterministic_algorithms(True)
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(old_det)


@dataclass
class TrainResult:
    model: InductionModel
    config: Config
    curve: pd.DataFrame  # step, train_loss, loss_repeat, loss_other, prev_token_score, induction_score
    seconds: float  # wall time of the training loop
    cpu_seconds: float  # CPU time of this thread's process (what an idle machine would take)


def _curve_point(model: InductionModel, batch: Batch) -> dict[str, float]:
    r = run(model, batch.tokens)
    prev, _ = prev_token_scores(r.traces[0].pattern)
    ind, _ = induction_scores(r.traces[1].pattern, batch)
    return {**losses(r.logits, batch.tokens, batch.repeat),
            "prev_token_score": float(prev.max()), "induction_score": float(ind.max())}


def train(cfg: Config = Config(), progress: Callable[[int, int, float], None] | None = None) -> TrainResult:
    """Train from ``cfg.seed`` with AdamW and a cosine learning-rate decay: repeatable bit for bit
    on one machine, and in behaviour (not bit for bit) on another processor (see _deterministic).

    ``progress(step, steps, loss)`` is called at every curve point. The curve is measured on
    ``cfg.eval_batch`` fixed fresh sequences, every ``cfg.eval_every`` steps.
    """
    cfg.check()
    with _deterministic():
        torch.manual_seed(cfg.seed)
        gen = torch.Generator().manual_seed(cfg.seed)
        model = InductionModel.init(cfg, gen)
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s / cfg.steps, 1.0))))
        probe = eval_batch(cfg, cfg.eval_batch, seed=EVAL_SEED + 1)
        rows, recent = [], []
        t0, c0 = time.perf_counter(), time.process_time()
        for step in range(cfg.steps + 1):
            if step % cfg.eval_every == 0 or step == cfg.steps:
                with torch.no_grad():
                    point = _curve_point(model, probe)
                train_loss = float(np.mean(recent)) if recent else float("nan")
                rows.append({"step": step, "train_loss": train_loss, **point})
                recent = []
                if progress is not None:
                    progress(step, cfg.steps, point["loss_repeat"])
            if step == cfg.steps:
                break
            batch = make_batch(cfg.batch, cfg, gen)
            r = run(model, batch.tokens)
            loss = token_losses(r.logits, batch.tokens).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            recent.append(loss.item())
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    trained = InductionModel.from_state_dict(model.state_dict())
    return TrainResult(trained, cfg, pd.DataFrame(rows), seconds, cpu)


# ---- evaluation ---------------------------------------------------------------------------------


@torch_threads(1)
def evaluate(model: InductionModel, cfg: Config | None = None, n: int = EVAL_BATCH, seed: int = EVAL_SEED) -> dict:
    """The metrics of the issue, on ``n`` fresh sequences: losses, head scores, ablation effects."""
    cfg = cfg or Config(d_vocab=model.d_vocab, n_ctx=model.n_ctx, d_model=model.d_model, n_heads=model.n_heads)
    batch = eval_batch(cfg, n, seed)
    with torch.no_grad():
        r = run(model, batch.tokens)
        prev, prev_base = prev_token_scores(r.traces[0].pattern)
        ind, ind_base = induction_scores(r.traces[1].pattern, batch)
        clean = losses(r.logits, batch.tokens, batch.repeat)
        per = token_losses(r.logits, batch.tokens)  # [B, S-1]
        S = batch.tokens.shape[1]
        earlier = torch.ones(S, S, dtype=torch.bool).tril(diagonal=-1)  # [S, S] k < i
        seen = ((batch.tokens[:, :, None] == batch.tokens[:, None, :]) & earlier).any(-1)[:, :-1]  # [B, S-1]
        other = ~batch.repeat
    prev_head = (0, int(prev.argmax()))
    ind_head = (1, int(ind.argmax()))
    induction_heads = [(1, h) for h in range(model.n_heads) if ind[h] >= HEAD_SCORE_THRESHOLD] or [ind_head]
    with torch.no_grad():
        no_ind = losses(run(model, batch.tokens, induction_heads).logits, batch.tokens, batch.repeat)
        no_prev = losses(run(model, batch.tokens, [prev_head]).logits, batch.tokens, batch.repeat)
    return {
        **clean,
        # Outside the copy: positions whose letter occurred earlier (an induction head can fire there,
        # copying a wrong guess) and positions whose letter is new.
        "loss_other_seen": float(per[other & seen].mean()),
        "loss_other_unseen": float(per[other & ~seen].mean()),
        "ln_vocab": math.log(model.d_vocab),
        "prev_token_scores": [float(x) for x in prev],
        "prev_token_baseline": prev_base,
        "induction_scores": [float(x) for x in ind],
        "induction_baseline": ind_base,
        "prev_token_head": head_label(*prev_head),
        "induction_head": head_label(*ind_head),
        "induction_heads": [head_label(*h) for h in induction_heads],
        "loss_repeat_without_induction_heads": no_ind["loss_repeat"],
        "loss_repeat_without_prev_token_head": no_prev["loss_repeat"],
        "eval_sequences": n,
        "eval_seed": seed,
    }


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
    same sequences, per position.
    """
    cfg = Config(d_vocab=model.d_vocab, n_ctx=model.n_ctx, d_model=model.d_model, n_heads=model.n_heads)
    batch = eval_batch(cfg, n, seed)
    means = head_means(model, batch.tokens)
    rows = []
    with torch.no_grad():
        for name, heads in sets.items():
            row = {"removed": name, "heads": format_ablate(heads) or "none"}
            for mode in ("zero", "mean"):
                r = run(model, batch.tokens, heads, mode=mode, means=means)
                l = losses(r.logits, batch.tokens, batch.repeat)
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


# ---- facts for the page's sentences ---------------------------------------------------------------


def phase_change(curve: pd.DataFrame) -> dict:
    """Where the repeated-position loss fell fastest: the step, and the loss 200 steps either side."""
    c = curve.dropna(subset=["loss_repeat"]).reset_index(drop=True)
    if len(c) < 3:
        return {}
    step_gap = float(c["step"].diff().median())
    w = max(1, int(round(200 / step_gap)))
    drop = c["loss_repeat"].shift(w) - c["loss_repeat"].shift(-w)  # loss w points before minus w after
    i = int(drop.idxmax()) if drop.notna().any() else int(c["loss_repeat"].diff().idxmin())
    lo, hi = max(0, i - w), min(len(c) - 1, i + w)
    return {"step": int(c.loc[i, "step"]), "from_step": int(c.loc[lo, "step"]), "to_step": int(c.loc[hi, "step"]),
            "loss_before": float(c.loc[lo, "loss_repeat"]), "loss_after": float(c.loc[hi, "loss_repeat"]),
            "induction_before": float(c.loc[lo, "induction_score"]), "induction_after": float(c.loc[hi, "induction_score"])}


# ---- saving and loading ---------------------------------------------------------------------------


def save(result: TrainResult, out: Path, metrics: dict) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(result.model.state_dict(), out)
    meta = {
        "config": asdict(result.config),
        "metrics": metrics,
        "training": {"seconds": result.seconds, "cpu_seconds": result.cpu_seconds, "threads": 1,
                     "torch": torch.__version__},
        "curve": result.curve.to_dict(orient="list"),
        "command": f"python -m core.induction train --seed {result.config.seed} --out {out.as_posix()}",
    }
    meta["trained_on"] = this_machine()
    json_path = out.with_suffix(".json")
    json_path.write_text(json.dumps(meta, indent=1, allow_nan=True) + "\n")
    return json_path


def this_machine() -> dict[str, str]:
    """The processor a run trains on, as far as PyTorch's arithmetic is concerned.

    ``capability`` is the vector instruction set PyTorch's CPU kernels dispatch to (``AVX512``,
    ``AVX2``, ``DEFAULT``, or an ARM one); with the CPU's name and the PyTorch version it says
    whether two runs of one seed can be expected to match bit for bit (same kernels, same order of
    additions) or only in behaviour (see :func:`_deterministic`).
    """
    return {"cpu": cpu_model(), "capability": str(torch.backends.cpu.get_cpu_capability()),
            "torch": torch.__version__, "arch": platform.machine()}


def weight_differences(model: InductionModel, reference: InductionModel) -> pd.DataFrame:
    """Per tensor (TransformerLens names): the largest absolute difference from ``reference``, the
    reference's largest entry, and their ratio. Same sizes only."""
    mine, ref = model.state_dict(), reference.state_dict()
    if {k: tuple(v.shape) for k, v in mine.items()} != {k: tuple(v.shape) for k, v in ref.items()}:
        raise ValueError("the two models have different sizes: there are no weights to compare")
    rows = []
    for name, r in ref.items():
        diff = float((mine[name].double() - r.double()).abs().max())  # largest |Δ| in this tensor
        largest = float(r.double().abs().max())
        rows.append({"tensor": name, "largest difference": diff, "largest entry": largest,
                     "relative": diff / largest if largest else float("nan")})
    return pd.DataFrame(rows)


# The metrics a retrain is compared on: key in evaluate()'s dict → how the page names it.
COMPARED_METRICS = {
    "loss_repeat": "loss on repeated positions",
    "loss_other": "loss on other positions",
    "prev_token_scores": "best previous-token score",
    "induction_scores": "best induction score",
    "loss_repeat_without_induction_heads": "repeated loss without the induction heads",
    "loss_repeat_without_prev_token_head": "repeated loss without the previous-token head",
}


def metric_differences(metrics: dict, reference: dict) -> pd.DataFrame:
    """The metrics of two runs side by side (evaluate()'s dicts; a head score is the best head's),
    with each difference, this run minus the reference."""
    def value(m: dict, key: str) -> float:
        return float(max(m[key])) if isinstance(m[key], list) else float(m[key])

    rows = [{"measure": name, "this run": value(metrics, key), "reference": value(reference, key)}
            for key, name in COMPARED_METRICS.items()]
    frame = pd.DataFrame(rows)
    frame["difference"] = frame["this run"] - frame["reference"]
    return frame


def is_shipped_config(cfg: Config, meta: dict) -> bool:
    """Whether ``cfg`` is the configuration the shipped weights were trained with (same seed, sizes
    and schedule): only then do the weights of a retrain have a counterpart to compare with."""
    return asdict(cfg) == meta.get("config")


def load(path: Path = WEIGHTS) -> tuple[InductionModel, dict]:
    """The state dict (``torch.load(weights_only=True)``) and the JSON beside it."""
    path = Path(path)
    sd = torch.load(path, weights_only=True, map_location="cpu")
    meta_path = path.with_suffix(".json")
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    return InductionModel.from_state_dict(sd), meta


def curve_frame(meta: dict) -> pd.DataFrame:
    return pd.DataFrame(meta.get("curve", {}))


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
