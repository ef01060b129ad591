"""Multi-head attention written so that every intermediate tensor can be looked at.

Conventions (as in TransformerLens): weights right-multiply (``x @ W``), and

    W_Q, W_K, W_V : [H, D, L]      one D×L matrix per head
    W_O           : [H, L, D]      head h owns rows h·L … (h+1)·L−1 of the D×D output matrix

with B = batch, S = sequence length, D = d_model, H = n_heads, L = d_head (= D / H here).

Grouped-query attention (GQA; Ainslie et al. 2023) shares keys and values: H_kv key/value heads,
H_kv dividing H, each read by a group of G = H / H_kv consecutive query heads, so query head h
reads key/value head h // G. The weights are then stored as TransformerLens stores its grouped
``_W_K``/``_W_V``:

    W_K, W_V      : [H_kv, D, L]   (and b_K, b_V : [H_kv, L])

H_kv = H is plain multi-head attention; H_kv = 1 is multi-query attention (Shazeer 2019).

The module's point is the identity between the two ways of finishing attention:

    concat_then_project:  concat_h(z_h) @ W_O            one [B·S, H·L] × [H·L, D] product
    project_then_sum:     Σ_h z_h @ W_O[h]               H products of [B·S, L] × [L, D], then a sum

Both are the same sum over (h, l); only the order of the additions differs. Sharing keys and
values changes where k and v come from, never how the heads' z meet W_O, so the identity holds
for grouped-query attention unchanged.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, fields, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "AttentionWeights",
    "AttentionTrace",
    "multi_head_attention",
    "concat_then_project",
    "per_head_results",
    "project_then_sum",
    "split_heads",
    "merge_heads",
    "trace_numel",
    "expand_kv",
    "grouped_attention",
    "sdpa_reference",
]


def split_heads(W: Tensor, n_heads: int) -> Tensor:
    """[D, H·L] → [H, D, L]: a right-multiplying projection cut into per-head column blocks."""
    d_in, d_out = W.shape
    return W.reshape(d_in, n_heads, d_out // n_heads).permute(1, 0, 2).contiguous()


def merge_heads(W: Tensor) -> Tensor:
    """[H, D, L] → [D, H·L]: the inverse of :func:`split_heads`."""
    n_heads, d_in, d_head = W.shape
    return W.permute(1, 0, 2).reshape(d_in, n_heads * d_head)


_last_draw = threading.local()  # per thread: the float64 draw of the last (D, H, seed, bias) asked for


def _float64_draw(d_model: int, n_heads: int, seed: int, bias: bool) -> tuple[Tensor, ...]:
    """The seeded float64 draw behind :meth:`AttentionWeights.random`, for plain multi-head sizes.

    Order: W_Q [H, D, L], W_K [H, D, L], W_V [H, D, L], W_O [H, L, D], then with ``bias`` b_Q, b_K,
    b_V [H, L] and b_O [D], each from one CPU generator seeded with ``seed``. A page view asks for
    the same seed's weights several times in a row (one per figure, in several dtypes); the last
    draw is kept per thread, so those calls draw once. One entry per thread, and a Streamlit script
    thread ends with its run, so nothing grows with a class. Callers copy what they take.
    """
    key = (d_model, n_heads, seed, bias)
    if getattr(_last_draw, "key", None) == key:
        return _last_draw.tensors
    d_head = d_model // n_heads
    gen = torch.Generator(device="cpu").manual_seed(seed)
    std = 1.0 / math.sqrt(d_model)

    def draw(*shape: int, scale: float = std) -> Tensor:
        return torch.randn(*shape, generator=gen, dtype=torch.float64) * scale

    tensors = (
        draw(n_heads, d_model, d_head), draw(n_heads, d_model, d_head),  # W_Q, W_K [H, D, L]
        draw(n_heads, d_model, d_head), draw(n_heads, d_head, d_model),  # W_V [H, D, L], W_O [H, L, D]
    )
    if bias:
        tensors += (draw(n_heads, d_head, scale=0.1), draw(n_heads, d_head, scale=0.1),  # b_Q, b_K [H, L]
                    draw(n_heads, d_head, scale=0.1), draw(d_model, scale=0.1))  # b_V [H, L], b_O [D]
    _last_draw.key, _last_draw.tensors = key, tensors
    return tensors


@dataclass
class AttentionWeights:
    """The parameters of one attention layer, stored per head (keys and values per key/value head).

    H_kv = W_K.shape[0] may be smaller than H = W_Q.shape[0] (grouped-query attention) as long
    as it divides H. Usually H·L = D; a published model may set L on its own (H·L ≠ D), which
    the shapes allow: W_Q is [H, D, L] and W_O is [H, L, D] either way.
    """

    W_Q: Tensor  # [H, D, L]
    W_K: Tensor  # [H_kv, D, L]
    W_V: Tensor  # [H_kv, D, L]
    W_O: Tensor  # [H, L, D]
    b_Q: Tensor | None = None  # [H, L]
    b_K: Tensor | None = None  # [H_kv, L]
    b_V: Tensor | None = None  # [H_kv, L]
    b_O: Tensor | None = None  # [D]

    def __post_init__(self) -> None:
        H, D, L = self.W_Q.shape
        H_kv = self.W_K.shape[0]
        if H_kv < 1 or H % H_kv:
            raise ValueError(f"W_K has {H_kv} key/value heads, which must divide the {H} query heads")
        for name in ("W_K", "W_V"):
            if getattr(self, name).shape != (H_kv, D, L):
                raise ValueError(f"{name} has shape {tuple(getattr(self, name).shape)}, expected {(H_kv, D, L)}")
        if self.W_O.shape != (H, L, D):
            raise ValueError(f"W_O has shape {tuple(self.W_O.shape)}, expected {(H, L, D)}")
        for name, heads in (("b_Q", H), ("b_K", H_kv), ("b_V", H_kv)):
            b = getattr(self, name)
            if b is not None and b.shape != (heads, L):
                raise ValueError(f"{name} has shape {tuple(b.shape)}, expected {(heads, L)}")
        if self.b_O is not None and self.b_O.shape != (D,):
            raise ValueError(f"b_O has shape {tuple(self.b_O.shape)}, expected {(D,)}")

    @property
    def n_heads(self) -> int:
        return self.W_Q.shape[0]

    @property
    def n_kv_heads(self) -> int:
        """H_kv: key/value heads (= n_heads for plain multi-head attention)."""
        return self.W_K.shape[0]

    @property
    def group_size(self) -> int:
        """G = H / H_kv: the query heads that read each key/value head."""
        return self.n_heads // self.n_kv_heads

    @property
    def d_model(self) -> int:
        return self.W_Q.shape[1]

    @property
    def d_head(self) -> int:
        return self.W_Q.shape[2]

    @property
    def has_bias(self) -> bool:
        return any(getattr(self, n) is not None for n in ("b_Q", "b_K", "b_V", "b_O"))

    @property
    def dtype(self) -> torch.dtype:
        return self.W_Q.dtype

    @property
    def device(self) -> torch.device:
        return self.W_Q.device

    def kv_head_of(self, head: int) -> int:
        """The key/value head that query head ``head`` reads: h // G."""
        if not 0 <= head < self.n_heads:
            raise ValueError(f"head {head} is not one of the {self.n_heads} heads 0…{self.n_heads - 1}")
        return head // self.group_size

    @property
    def W_K_per_head(self) -> Tensor:
        """W_K expanded to one matrix per query head, [H, D, L] (TransformerLens's public W_K)."""
        return expand_kv(self.W_K, self.group_size, dim=0)  # [H, D, L]

    @property
    def W_V_per_head(self) -> Tensor:
        """W_V expanded to one matrix per query head, [H, D, L] (TransformerLens's public W_V)."""
        return expand_kv(self.W_V, self.group_size, dim=0)  # [H, D, L]

    @property
    def QK(self) -> Tensor:
        """The query-key circuit, [H, D, D]: QK[h] = W_Q[h] @ W_K[h // G]ᵀ.

        A residual vector x_q attends to x_k with score x_q @ QK[h] @ x_kᵀ (before scaling and
        biases). Heads of one group share W_K but keep their own W_Q, so their QK differ.
        Dense, so it holds H·D² numbers: callers cap D and H before asking.
        """
        return self.W_Q @ self.W_K_per_head.transpose(-1, -2)  # [H, D, L] @ [H, L, D] → [H, D, D]

    @property
    def OV(self) -> Tensor:
        """The output-value circuit, [H, D, D]: OV[h] = W_V[h // G] @ W_O[h].

        What head h writes to the residual stream for each unit of attention to a token x is
        x @ OV[h] (without biases). Heads of one group share W_V but keep their own W_O.
        Dense: H·D² numbers.
        """
        return self.W_V_per_head @ self.W_O  # [H, D, L] @ [H, L, D] → [H, D, D]

    @classmethod
    def meta(
        cls, d_model: int, n_heads: int, *, n_kv_heads: int | None = None, d_head: int | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> "AttentionWeights":
        """Weights of the right shapes on torch's meta device: shapes and counts, no memory.

        For a real model's sizes (a 4096-wide layer has tens of millions of parameters per
        matrix), where only ``numel()`` and shapes are wanted.
        """
        H, D = n_heads, d_model
        H_kv = H if n_kv_heads is None else n_kv_heads
        L = d_head if d_head is not None else D // H
        with torch.device("meta"):
            return cls(
                torch.empty(H, D, L, dtype=dtype),  # W_Q [H, D, L]
                torch.empty(H_kv, D, L, dtype=dtype),  # W_K [H_kv, D, L]
                torch.empty(H_kv, D, L, dtype=dtype),  # W_V [H_kv, D, L]
                torch.empty(H, L, D, dtype=dtype),  # W_O [H, L, D]
            )

    @classmethod
    def random(
        cls,
        d_model: int,
        n_heads: int,
        *,
        n_kv_heads: int | None = None,
        seed: int = 0,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
        bias: bool = False,
    ) -> "AttentionWeights":
        """Seeded random weights, identical on every machine and device.

        Drawn in float64 from a CPU generator, then cast and moved, so the seed alone decides the
        numbers. Each matrix has entries of standard deviation 1/√D: a unit-variance input keeps
        unit-variance queries, keys, values and outputs (each output sums D products).

        ``n_kv_heads`` (default ``n_heads``) shares keys and values. The draw does not depend on
        it: all H key and value heads are drawn in the same order as for plain multi-head
        attention, and key/value head g keeps the first head of its group, g·G. So W_Q, W_O and the
        biases b_Q, b_O are the same numbers at every ``n_kv_heads``, head g·G keeps its own keys
        and values, and the other heads of the group take over that head's: moving the control
        changes only the sharing, nothing else. With ``n_kv_heads = n_heads`` the weights are
        bit for bit those drawn before grouped-query attention existed here.
        """
        if d_model < 1 or n_heads < 1:
            raise ValueError("d_model and n_heads must be positive")
        if d_model % n_heads:
            raise ValueError(f"n_heads = {n_heads} does not divide d_model = {d_model}")
        n_kv_heads = n_heads if n_kv_heads is None else n_kv_heads
        if n_kv_heads < 1 or n_heads % n_kv_heads:
            raise ValueError(f"n_kv_heads = {n_kv_heads} does not divide n_heads = {n_heads}")
        G = n_heads // n_kv_heads
        drawn = _float64_draw(d_model, n_heads, int(seed), bias)  # W_Q, W_K, W_V, W_O (, b_Q, b_K, b_V, b_O)

        def cast(t: Tensor) -> Tensor:
            return t.to(device=device, dtype=dtype, copy=True)  # a copy even in float64: the memo stays intact

        def shared(t: Tensor) -> Tensor:
            """[H, …] → [H_kv, …]: the first head of each group (a copy, so no [H, …] stays alive)."""
            return cast(t if G == 1 else t[::G])

        W_Q = cast(drawn[0])  # [H, D, L]
        W_K = shared(drawn[1])  # [H, D, L] → [H_kv, D, L]
        W_V = shared(drawn[2])  # [H, D, L] → [H_kv, D, L]
        W_O = cast(drawn[3])  # [H, L, D]
        if not bias:
            return cls(W_Q, W_K, W_V, W_O)
        b_Q = cast(drawn[4])  # [H, L]
        b_K = shared(drawn[5])  # [H, L] → [H_kv, L]
        b_V = shared(drawn[6])  # [H, L] → [H_kv, L]
        b_O = cast(drawn[7])  # [D]
        return cls(W_Q, W_K, W_V, W_O, b_Q, b_K, b_V, b_O)

    @classmethod
    def from_torch(cls, mha: nn.MultiheadAttention) -> "AttentionWeights":
        """Unpack ``torch.nn.MultiheadAttention`` (batch_first either way, bias or not).

        nn.Linear stores weights as [out, in] and computes ``x @ weight.T``; ``in_proj_weight``
        stacks the three [D, D] query, key and value weights as [3D, D]. Head h of a projection
        is the column block h·L … (h+1)·L−1 of ``weight.T``.
        """
        if not mha._qkv_same_embed_dim:
            raise ValueError("only kdim == vdim == embed_dim is supported")
        if mha.bias_k is not None or mha.add_zero_attn:
            raise ValueError("add_bias_kv and add_zero_attn are not part of this model")
        D, H = mha.embed_dim, mha.num_heads
        L = D // H
        with torch.no_grad():
            w_q, w_k, w_v = mha.in_proj_weight.detach().chunk(3, dim=0)  # 3 × [D_out, D_in]
            W_Q = split_heads(w_q.T, H)  # [H, D, L]
            W_K = split_heads(w_k.T, H)  # [H, D, L]
            W_V = split_heads(w_v.T, H)  # [H, D, L]
            W_O = mha.out_proj.weight.detach().T.reshape(H, L, D).clone()  # [H·L, D] → [H, L, D]
            if mha.in_proj_bias is None:
                return cls(W_Q, W_K, W_V, W_O)
            b_q, b_k, b_v = mha.in_proj_bias.detach().chunk(3)  # 3 × [D]
            b_O = mha.out_proj.bias.detach().clone()  # [D]
            return cls(W_Q, W_K, W_V, W_O, b_q.reshape(H, L), b_k.reshape(H, L), b_v.reshape(H, L), b_O)

    def to_torch(self) -> nn.MultiheadAttention:
        """An ``nn.MultiheadAttention(batch_first=True)`` computing the same function (dropout 0).

        Missing biases become zeros when some are present. ``nn.MultiheadAttention`` has one key
        and one value head per query head and D = H·L, so grouped weights (H_kv < H) are refused:
        compare those with :func:`sdpa_reference` instead.
        """
        H, D, L = self.n_heads, self.d_model, self.d_head
        if self.n_kv_heads != H:
            raise ValueError(
                f"nn.MultiheadAttention has no grouped-query attention: these weights share "
                f"{self.n_kv_heads} key/value heads among {H} query heads. Use sdpa_reference."
            )
        if H * L != D:
            raise ValueError(f"nn.MultiheadAttention needs n_heads·d_head = d_model, got {H}·{L} ≠ {D}")
        mha = nn.MultiheadAttention(
            D, H, bias=self.has_bias, batch_first=True, device=self.device, dtype=self.dtype
        )
        zeros_hl = torch.zeros(H, L, dtype=self.dtype, device=self.device)
        with torch.no_grad():
            mha.in_proj_weight.copy_(
                torch.cat([merge_heads(W).T for W in (self.W_Q, self.W_K, self.W_V)], dim=0)
            )  # [3D, D]
            mha.out_proj.weight.copy_(self.W_O.reshape(H * L, D).T)  # [D_out, D_in]
            if self.has_bias:
                biases = [b if b is not None else zeros_hl for b in (self.b_Q, self.b_K, self.b_V)]
                mha.in_proj_bias.copy_(torch.cat([b.reshape(D) for b in biases]))  # [3D]
                b_O = self.b_O if self.b_O is not None else torch.zeros(D, dtype=self.dtype, device=self.device)
                mha.out_proj.bias.copy_(b_O)
        return mha.eval()

    def to(self, dtype: torch.dtype | None = None, device: str | torch.device | None = None) -> "AttentionWeights":
        """A copy with every tensor cast and/or moved."""
        moved = {
            f.name: (None if (t := getattr(self, f.name)) is None else t.to(device=device, dtype=dtype))
            for f in fields(self)
        }
        return replace(self, **moved)


@dataclass
class AttentionTrace:
    """Every intermediate of one forward pass, named as in the essay.

    With grouped-query attention k and v keep their H_kv heads; ``k_expanded`` and ``v_expanded``
    are the per-query-head copies the scores and z are computed from (see :func:`expand_kv`).
    With H_kv = H there is nothing to expand: they are k and v themselves (the same tensors).
    """

    x: Tensor  # [B, S, D] the input
    q: Tensor  # [B, H, S, L]
    k: Tensor  # [B, H_kv, S, L]
    v: Tensor  # [B, H_kv, S, L]
    scores: Tensor  # [B, H, S, S] scaled and masked (−inf above the diagonal when causal), before softmax
    pattern: Tensor  # [B, H, S, S] softmax over the last (key) axis: each row sums to 1
    z: Tensor  # [B, H, S, L] pattern @ v: each head's weighted average of values
    per_head: Tensor  # [B, S, H, D] head h's contribution z_h @ W_O[h], without b_O
    out_concat: Tensor  # [B, S, D] concat_h(z_h) @ W_O + b_O
    out_sum: Tensor  # [B, S, D] Σ_h per_head[:, :, h] + b_O
    k_expanded: Tensor | None = None  # [B, H, S, L] k[:, h // G] for every query head h; None → k
    v_expanded: Tensor | None = None  # [B, H, S, L] v[:, h // G]; None → v

    def __post_init__(self) -> None:
        if self.k_expanded is None:
            self.k_expanded = self.k
        if self.v_expanded is None:
            self.v_expanded = self.v

    @property
    def n_kv_heads(self) -> int:
        return self.k.shape[1]

    @property
    def group_size(self) -> int:
        return self.q.shape[1] // self.k.shape[1]


def _project(x: Tensor, W: Tensor, b: Tensor | None) -> Tensor:
    """x [B, S, D] @ W [H, D, L] (+ b [H, L]) → [B, H, S, L] (H may be H_kv)."""
    out = torch.einsum("bsd,hdl->bhsl", x, W)  # [B, H, S, L]
    if b is not None:
        out = out + b[None, :, None, :]
    return out


def expand_kv(t: Tensor, group_size: int, dim: int = 1) -> Tensor:
    """Keys or values per key/value head → per query head: [B, H_kv, S, L] → [B, H, S, L].

    Entry h of the result is entry h // G of ``t`` (G = ``group_size``), as in Hugging Face's
    ``repeat_kv`` and torch's ``enable_gqa``. With G = 1 it returns ``t`` itself.

    This is a **copy** (``repeat_interleave``), and that is a choice. A view with a zero stride
    can't say "head h reads h // G" on a [B, H, S, L] tensor: a stride maps head h to h·stride,
    and h // G is not linear in h unless H_kv = 1 (multi-query: stride 0 over H works) or G = 1.
    The general view is the grouped layout ``t[:, :, None].expand(B, H_kv, G, S, L)``, stride 0
    on the G axis, but reshaping it to [B, H, S, L] copies, and so does ``torch.matmul`` when it
    meets it: a broadcast batch operand is materialised before the batched GEMM (measured with
    torch's profiler, torch 2.13 on the CPU: ``q_grouped @ k_view`` allocates B·H·S·L elements, the
    size of this copy). The copy-free form folds the group into the query rows instead
    (:func:`grouped_attention`), as fused kernels do. The trace keeps the copy because it is the
    tensor a reader can look at: one K and one V matrix per query head, the shared ones equal.
    It costs 2·B·H·S·L elements, counted by :func:`trace_numel`.
    """
    return t if group_size == 1 else t.repeat_interleave(group_size, dim=dim)


def _scale_and_mask(scores: Tensor, d_head: int, causal: bool, scale: bool) -> Tensor:
    """scores [..., S, S] → scaled by 1/√L and masked above the diagonal (−inf) when asked."""
    S_q, S_k = scores.shape[-2:]
    if scale:
        scores = scores / math.sqrt(d_head)
    if causal:
        future = torch.ones(S_q, S_k, dtype=torch.bool, device=scores.device).triu(diagonal=1)  # [S, S]
        scores = scores.masked_fill(future, float("-inf"))
    return scores


def multi_head_attention(
    x: Tensor, weights: AttentionWeights, *, causal: bool = False, scale: bool = True
) -> AttentionTrace:
    """Self-attention of x [B, S, D], keeping every intermediate.

    ``scale`` divides the scores by √L (Vaswani et al.); ``causal`` masks keys after the query.
    Works on whatever device and dtype ``x`` and ``weights`` share. With grouped weights the
    keys and values are projected once per key/value head and expanded (copied) to the query
    heads before the scores; with H_kv = H the operations are exactly those of plain multi-head
    attention, so the numbers are bit for bit the same.
    """
    if x.ndim != 3 or x.shape[-1] != weights.d_model:
        raise ValueError(f"x must be [B, S, {weights.d_model}], got {tuple(x.shape)}")
    L, G = weights.d_head, weights.group_size
    q = _project(x, weights.W_Q, weights.b_Q)  # [B, H, S, L]
    k_kv = _project(x, weights.W_K, weights.b_K)  # [B, H_kv, S, L] one key matrix per key/value head
    v_kv = _project(x, weights.W_V, weights.b_V)  # [B, H_kv, S, L]
    # From here on k and v are per query head (the trace's k_expanded, v_expanded): k[:, h] is
    # k_kv[:, h // G], a copy when G > 1 and k_kv itself when G = 1 (see expand_kv).
    k = expand_kv(k_kv, G)  # [B, H, S, L]
    v = expand_kv(v_kv, G)  # [B, H, S, L]
    scores = q @ k.transpose(-1, -2)  # [B, H, S, S] query rows, key columns
    scores = _scale_and_mask(scores, L, causal, scale)  # [B, H, S, S]
    pattern = scores.softmax(dim=-1)  # [B, H, S, S]
    z = pattern @ v  # [B, H, S, L]
    per_head = per_head_results(z, weights.W_O)  # [B, S, H, D]
    out_concat = concat_then_project(z, weights.W_O, weights.b_O)  # [B, S, D]
    out_sum = _add_bias(per_head.sum(dim=2), weights.b_O)  # [B, S, D]
    return AttentionTrace(x, q, k_kv, v_kv, scores, pattern, z, per_head, out_concat, out_sum, k, v)


def grouped_attention(q: Tensor, k: Tensor, v: Tensor, *, causal: bool = False, scale: bool = True) -> Tensor:
    """z [B, H, S, L] from q [B, H, S, L] and shared k, v [B, H_kv, S, L], without expanding k and v.

    The G query heads of a group are stacked as G·S query rows against their one key matrix:
    q viewed as [B, H_kv, G·S, L] @ kᵀ [B, H_kv, L, S] → [B, H_kv, G·S, S], then back to
    [B, H, S, S] by a view. No [B, H, S, L] copy of k or v is made (q must be contiguous over
    its head, row and width axes for the view; ``reshape`` copies q otherwise, never k or v).
    The same numbers as :func:`multi_head_attention`'s pattern @ v_expanded, up to rounding.
    """
    B, H, S, L = q.shape
    H_kv = k.shape[1]
    G = H // H_kv
    q_rows = q.reshape(B, H_kv, G * S, L)  # [B, H_kv, G·S, L] a group's queries, one under another
    scores = (q_rows @ k.transpose(-1, -2)).view(B, H, S, S)  # [B, H, S, S]
    pattern = _scale_and_mask(scores, L, causal, scale).softmax(dim=-1)  # [B, H, S, S]
    z = pattern.reshape(B, H_kv, G * S, S) @ v  # [B, H_kv, G·S, L]
    return z.view(B, H, S, L)


def sdpa_reference(x: Tensor, weights: AttentionWeights, causal: bool = False, scale: bool = True) -> Tensor:
    """The layer's output [B, S, D] through torch's ``scaled_dot_product_attention``.

    An independent check of :func:`multi_head_attention` that, unlike ``nn.MultiheadAttention``,
    accepts grouped keys and values (``enable_gqa=True``, torch ≥ 2.5: query head h reads key/value
    head h // G, as here). Same weights, same projections; torch does the scores, mask, softmax and
    weighted sum; the ending is ``concat_then_project``. ``scale=False`` passes a scale of 1.
    """
    if x.ndim != 3 or x.shape[-1] != weights.d_model:
        raise ValueError(f"x must be [B, S, {weights.d_model}], got {tuple(x.shape)}")
    q = _project(x, weights.W_Q, weights.b_Q)  # [B, H, S, L]
    k = _project(x, weights.W_K, weights.b_K)  # [B, H_kv, S, L]
    v = _project(x, weights.W_V, weights.b_V)  # [B, H_kv, S, L]
    z = F.scaled_dot_product_attention(
        q, k, v, is_causal=causal, scale=(1.0 / math.sqrt(weights.d_head)) if scale else 1.0,
        enable_gqa=weights.group_size > 1,
    )  # [B, H, S, L]
    return concat_then_project(z, weights.W_O, weights.b_O)  # [B, S, D]


def _add_bias(out: Tensor, b_O: Tensor | None) -> Tensor:
    return out if b_O is None else out + b_O


def concat_then_project(z: Tensor, W_O: Tensor, b_O: Tensor | None = None) -> Tensor:
    """z [B, H, S, L] → [B, S, D]: concatenate the heads, then one product with W_O as [H·L, D].

    The fast path: a single GEMM of [B·S, H·L] × [H·L, D] (bias fused through addmm).
    """
    B, H, S, L = z.shape
    D = W_O.shape[-1]
    z_concat = z.transpose(1, 2).reshape(B * S, H * L)  # [B·S, H·L] heads side by side (one copy)
    W_O_flat = W_O.reshape(H * L, D)  # [H·L, D] the heads' row blocks stacked
    if b_O is None:
        out = z_concat @ W_O_flat  # [B·S, D]
    else:
        out = torch.addmm(b_O, z_concat, W_O_flat)  # [B·S, D]
    return out.view(B, S, D)


def per_head_results(z: Tensor, W_O: Tensor) -> Tensor:
    """z [B, H, S, L] → [B, S, H, D]: each head projected by its own L×D slice W_O[h]."""
    return torch.einsum("bhsl,hld->bshd", z, W_O)  # [B, S, H, D]


def project_then_sum(z: Tensor, W_O: Tensor, b_O: Tensor | None = None) -> Tensor:
    """z [B, H, S, L] → [B, S, D]: per-head results summed over the head axis (then + b_O).

    The same batched product per_head_results makes, written out so that the heads-first copy of
    z lives until the sum is done. Freed earlier (as inside einsum), it leaves some CPU heap layouts
    in which each call's H-fold result lands somewhere new, call after call, at up to 1.7× the time
    (docs/timing.md, "Where the result lands"; scripts/heap_layouts.py measures it).
    """
    B, H, S, L = z.shape
    z_heads = z.transpose(0, 1).reshape(H, B * S, L)  # [H, B·S, L] heads first (a copy unless B, H or S is 1)
    result = torch.bmm(z_heads, W_O)  # [H, B·S, L] @ [H, L, D] → [H, B·S, D]: result[h] = z_h @ W_O[h]
    return _add_bias(result.sum(dim=0).view(B, S, -1), b_O)  # [B, S, D]


def trace_numel(batch: int, seq: int, d_model: int, n_heads: int, n_kv_heads: int | None = None) -> dict[str, int]:
    """Element count of every tensor an :class:`AttentionTrace` holds, without allocating any.

    Pages check these against their memory caps before computing. With grouped-query attention
    (``n_kv_heads`` < ``n_heads``) k and v shrink to B·H_kv·S·L and the two expanded copies,
    ``k_expanded`` and ``v_expanded`` (B·H·S·L each), are listed too; with H_kv = H they are k and
    v themselves, hold nothing new, and are not listed.
    """
    B, S, D, H = batch, seq, d_model, n_heads
    H_kv = H if n_kv_heads is None else n_kv_heads
    kv = B * S * D * H_kv // H  # B·H_kv·S·L, written so that H_kv = H gives B·S·D exactly
    numel = {
        "x": B * S * D,
        "q": B * S * D,
        "k": kv,
        "v": kv,
        "scores": B * H * S * S,
        "pattern": B * H * S * S,
        "z": B * S * D,
        "per_head": B * S * H * D,
        "out_concat": B * S * D,
        "out_sum": B * S * D,
    }
    if H_kv != H:
        numel["k_expanded"] = numel["v_expanded"] = B * S * D  # B·H·S·L
    return numel
