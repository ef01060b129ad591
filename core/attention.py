"""Multi-head attention written so that every intermediate tensor can be looked at.

Conventions (as in TransformerLens): weights right-multiply (``x @ W``), and

    W_Q, W_K, W_V : [H, D, L]      one D×L matrix per head
    W_O           : [H, L, D]      head h owns rows h·L … (h+1)·L−1 of the D×D output matrix

with B = batch, S = sequence length, D = d_model, H = n_heads, L = d_head = D / H.

The module's point is the identity between the two ways of finishing attention:

    concat_then_project:  concat_h(z_h) @ W_O            one [B·S, H·L] × [H·L, D] product
    project_then_sum:     Σ_h z_h @ W_O[h]               H products of [B·S, L] × [L, D], then a sum

Both are the same sum over (h, l); only the order of the additions differs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import torch
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
]


def split_heads(W: Tensor, n_heads: int) -> Tensor:
    """[D, H·L] → [H, D, L]: a right-multiplying projection cut into per-head column blocks."""
    d_in, d_out = W.shape
    return W.reshape(d_in, n_heads, d_out // n_heads).permute(1, 0, 2).contiguous()


def merge_heads(W: Tensor) -> Tensor:
    """[H, D, L] → [D, H·L]: the inverse of :func:`split_heads`."""
    n_heads, d_in, d_head = W.shape
    return W.permute(1, 0, 2).reshape(d_in, n_heads * d_head)


@dataclass
class AttentionWeights:
    """The parameters of one multi-head attention layer, stored per head."""

    W_Q: Tensor  # [H, D, L]
    W_K: Tensor  # [H, D, L]
    W_V: Tensor  # [H, D, L]
    W_O: Tensor  # [H, L, D]
    b_Q: Tensor | None = None  # [H, L]
    b_K: Tensor | None = None  # [H, L]
    b_V: Tensor | None = None  # [H, L]
    b_O: Tensor | None = None  # [D]

    def __post_init__(self) -> None:
        H, D, L = self.W_Q.shape
        for name in ("W_K", "W_V"):
            if getattr(self, name).shape != (H, D, L):
                raise ValueError(f"{name} has shape {tuple(getattr(self, name).shape)}, expected {(H, D, L)}")
        if self.W_O.shape != (H, L, D):
            raise ValueError(f"W_O has shape {tuple(self.W_O.shape)}, expected {(H, L, D)}")
        if H * L != D:
            raise ValueError(f"n_heads·d_head = {H}·{L} must equal d_model = {D}")
        for name in ("b_Q", "b_K", "b_V"):
            b = getattr(self, name)
            if b is not None and b.shape != (H, L):
                raise ValueError(f"{name} has shape {tuple(b.shape)}, expected {(H, L)}")
        if self.b_O is not None and self.b_O.shape != (D,):
            raise ValueError(f"b_O has shape {tuple(self.b_O.shape)}, expected {(D,)}")

    @property
    def n_heads(self) -> int:
        return self.W_Q.shape[0]

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

    @classmethod
    def random(
        cls,
        d_model: int,
        n_heads: int,
        *,
        seed: int = 0,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
        bias: bool = False,
    ) -> "AttentionWeights":
        """Seeded random weights, identical on every machine and device.

        Drawn in float64 from a CPU generator, then cast and moved, so the seed alone decides the
        numbers. Each matrix has entries of standard deviation 1/√D: a unit-variance input keeps
        unit-variance queries, keys, values and outputs (each output sums D products).
        """
        if d_model < 1 or n_heads < 1:
            raise ValueError("d_model and n_heads must be positive")
        if d_model % n_heads:
            raise ValueError(f"n_heads = {n_heads} does not divide d_model = {d_model}")
        d_head = d_model // n_heads
        gen = torch.Generator(device="cpu").manual_seed(int(seed))
        std = 1.0 / math.sqrt(d_model)

        def draw(*shape: int, scale: float = std) -> Tensor:
            t = torch.randn(*shape, generator=gen, dtype=torch.float64) * scale
            return t.to(device=device, dtype=dtype)

        W_Q = draw(n_heads, d_model, d_head)  # [H, D, L]
        W_K = draw(n_heads, d_model, d_head)  # [H, D, L]
        W_V = draw(n_heads, d_model, d_head)  # [H, D, L]
        W_O = draw(n_heads, d_head, d_model)  # [H, L, D]
        if not bias:
            return cls(W_Q, W_K, W_V, W_O)
        b_Q = draw(n_heads, d_head, scale=0.1)  # [H, L]
        b_K = draw(n_heads, d_head, scale=0.1)  # [H, L]
        b_V = draw(n_heads, d_head, scale=0.1)  # [H, L]
        b_O = draw(d_model, scale=0.1)  # [D]
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

        Missing biases become zeros when some are present.
        """
        H, D, L = self.n_heads, self.d_model, self.d_head
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
    """Every intermediate of one forward pass, named as in the essay."""

    x: Tensor  # [B, S, D] the input
    q: Tensor  # [B, H, S, L]
    k: Tensor  # [B, H, S, L]
    v: Tensor  # [B, H, S, L]
    scores: Tensor  # [B, H, S, S] scaled and masked (−inf above the diagonal when causal), before softmax
    pattern: Tensor  # [B, H, S, S] softmax over the last (key) axis: each row sums to 1
    z: Tensor  # [B, H, S, L] pattern @ v: each head's weighted average of values
    per_head: Tensor  # [B, S, H, D] head h's contribution z_h @ W_O[h], without b_O
    out_concat: Tensor  # [B, S, D] concat_h(z_h) @ W_O + b_O
    out_sum: Tensor  # [B, S, D] Σ_h per_head[:, :, h] + b_O


def _project(x: Tensor, W: Tensor, b: Tensor | None) -> Tensor:
    """x [B, S, D] @ W [H, D, L] (+ b [H, L]) → [B, H, S, L]."""
    out = torch.einsum("bsd,hdl->bhsl", x, W)  # [B, H, S, L]
    if b is not None:
        out = out + b[None, :, None, :]
    return out


def multi_head_attention(
    x: Tensor, weights: AttentionWeights, *, causal: bool = False, scale: bool = True
) -> AttentionTrace:
    """Self-attention of x [B, S, D], keeping every intermediate.

    ``scale`` divides the scores by √L (Vaswani et al.); ``causal`` masks keys after the query.
    Works on whatever device and dtype ``x`` and ``weights`` share.
    """
    if x.ndim != 3 or x.shape[-1] != weights.d_model:
        raise ValueError(f"x must be [B, S, {weights.d_model}], got {tuple(x.shape)}")
    S, L = x.shape[1], weights.d_head
    q = _project(x, weights.W_Q, weights.b_Q)  # [B, H, S, L]
    k = _project(x, weights.W_K, weights.b_K)  # [B, H, S, L]
    v = _project(x, weights.W_V, weights.b_V)  # [B, H, S, L]
    scores = q @ k.transpose(-1, -2)  # [B, H, S, S] query rows, key columns
    if scale:
        scores = scores / math.sqrt(L)
    if causal:
        future = torch.ones(S, S, dtype=torch.bool, device=x.device).triu(diagonal=1)  # [S, S]
        scores = scores.masked_fill(future, float("-inf"))
    pattern = scores.softmax(dim=-1)  # [B, H, S, S]
    z = pattern @ v  # [B, H, S, L]
    per_head = per_head_results(z, weights.W_O)  # [B, S, H, D]
    out_concat = concat_then_project(z, weights.W_O, weights.b_O)  # [B, S, D]
    out_sum = _add_bias(per_head.sum(dim=2), weights.b_O)  # [B, S, D]
    return AttentionTrace(x, q, k, v, scores, pattern, z, per_head, out_concat, out_sum)


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


def trace_numel(batch: int, seq: int, d_model: int, n_heads: int) -> dict[str, int]:
    """Element count of every tensor an :class:`AttentionTrace` holds, without allocating any.

    Pages check these against their memory caps before computing.
    """
    B, S, D, H = batch, seq, d_model, n_heads
    return {
        "x": B * S * D,
        "q": B * S * D,
        "k": B * S * D,
        "v": B * S * D,
        "scores": B * H * S * S,
        "pattern": B * H * S * S,
        "z": B * S * D,
        "per_head": B * S * H * D,
        "out_concat": B * S * D,
        "out_sum": B * S * D,
    }
