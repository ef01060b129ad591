"""The induction model itself: its sizes, weights, data, forward pass and head scores.

One of three modules of ``core.induction`` (which re-exports all of them): this one is what a
reader needs to run the model and read its heads; ``core.induction_train`` trains, evaluates,
saves and compares runs; ``core.induction`` takes a run apart (logit terms, ablation,
composition) and holds the command line. The model and the task are described in
``core.induction``'s docstring.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from core.attention import AttentionTrace, AttentionWeights, multi_head_attention

__all__ = [
    "ALPHABET", "N_LAYERS", "EVAL_SEED", "EVAL_BATCH", "MAX_STEPS", "MAX_HEADS", "HEAD_SCORE_THRESHOLD",
    "Config", "InductionModel", "Batch", "make_batch", "sample_sequence", "default_position", "eval_batch",
    "repeat_mask", "induction_keys", "Head", "Run", "run", "EVAL_CHUNK", "chunks", "head_means", "token_losses",
    "losses", "loss_means",
    "prev_token_scores", "induction_scores", "SequenceScores", "sequence_induction_scores", "head_label",
    "all_heads",
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
    clean: Run | None = None,
) -> Run:
    """The model on tokens [B, S], with the heads in ``ablate`` removed from the sum.

    ``mode="zero"`` drops a head's term; ``mode="mean"`` replaces it with ``means[l][:, h]``, its
    average over a reference batch at each position ([S, H, D] per layer, from :func:`head_means`).
    An ablated layer-0 head is missing from layer 1's input too, so layer 1's patterns change.

    ``clean``, a run without ablation on the same ``tokens``, saves work: the layers before the
    first ablated one are the clean run's (the same operations on the same inputs would give the
    same numbers bit for bit), and the residual stream picks up from there. Removing only layer-1
    heads then costs one layer, not two; removing nothing costs nothing.
    """
    ablate = set(ablate)
    B, S = tokens.shape
    first = min((l for l, _ in ablate), default=len(model.layers))  # the first layer that changes
    if clean is not None and clean.tokens is not tokens and not torch.equal(clean.tokens, tokens):
        raise ValueError("clean must be a run on the same tokens")
    if clean is not None and first == len(model.layers):
        return clean
    embed = clean.embed if clean is not None else model.W_E[tokens]  # [B, S, D]
    pos = model.W_pos[:S].expand(B, S, -1)  # [B, S, D]
    x = embed + pos  # [B, S, D]
    traces, results = [], []
    if clean is not None:
        for l in range(first):  # as the loop below adds them: x + out_concat, layer by layer
            x = x + clean.traces[l].out_concat
        traces, results = clean.traces[:first], clean.results[:first]
    for l in range(len(traces), len(model.layers)):
        weights = model.layers[l]
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


# Sequences per forward pass when a whole evaluation batch is pushed through the model many times
# (head_means, core.induction.ablation_table). Each sequence is computed on its own, so the numbers
# are those of one pass over the batch; what changes is the memory. A pass over 512 sequences
# allocates tensors of several MiB, which glibc hands out as fresh mappings (ui/shell.py fixes its
# mmap threshold at 256 KiB), each page faulted in and zeroed again on every pass; 16 sequences
# keep every tensor of a pass at or under 256 KiB for this model's sizes, reused from the heap.
# Measured here: the page's ablation table (17 passes) in 0.65 s at 16 against 1.4 s in one pass.
EVAL_CHUNK = 16


def chunks(tokens: Tensor, size: int = EVAL_CHUNK) -> list[Tensor]:
    """tokens [B, S] as consecutive [≤ size, S] slices (views), in order."""
    return list(tokens.split(size))


def head_means(model: InductionModel, tokens: Tensor) -> list[Tensor]:
    """Each head's term averaged over the batch, per position: [S, H, D] per layer (clean run)."""
    with torch.no_grad():
        runs = [run(model, part).results for part in chunks(tokens)]  # per chunk, per layer [b, S, H, D]
    return [torch.cat([r[l] for r in runs]).mean(dim=0) for l in range(len(model.layers))]


def token_losses(logits: Tensor, tokens: Tensor) -> Tensor:
    """[B, S, V], [B, S] → [B, S-1]: cross-entropy of each position's guess at the next token."""
    B, S, V = logits.shape
    return F.cross_entropy(logits[:, :-1].reshape(-1, V), tokens[:, 1:].reshape(-1), reduction="none").view(B, S - 1)


def losses(logits: Tensor, tokens: Tensor, repeat: Tensor) -> dict[str, float]:
    """Mean loss on the predictable (repeated) positions and on all the others, in nats."""
    return loss_means(token_losses(logits, tokens), repeat)


def loss_means(per: Tensor, repeat: Tensor) -> dict[str, float]:
    """per-token losses [B, S-1] and the repeat mask [B, S-1] → the two means of :func:`losses`."""
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
