"""Home's checkpoint: how many numbers one head's slice of W_O holds.

The misconception it catches: that a head "has" a share of the output only after the concatenation,
or owns the whole output matrix. In the TransformerLens layout W_O is [H, L, D]; head h's slice
W_O[h] is L × D, the rows h·L … h·L+L−1 of the D × D matrix the concatenated form multiplies by.
"""

from __future__ import annotations

import torch

from core.checkpoints import Checkpoint, choice, fingerprint, number_options

# The essay's running example (home's live check and notation table use the same sizes).
RUNNING_EXAMPLE = {"d_model": 512, "n_heads": 8}


def wo_slice_sizes(d_model: int, n_heads: int) -> dict:
    """The shapes of W_O and of one head's slice, and how many numbers each holds.

    Read off a meta tensor in the code's own layout, so the count is the code's, not a formula's.
    """
    if d_model % n_heads:
        raise ValueError(f"{n_heads} heads don't divide a width of {d_model}")
    d_head = d_model // n_heads
    W_O = torch.empty(n_heads, d_head, d_model, device="meta")  # [H, L, D]
    head = W_O[0]  # [L, D] one head's rows of the output matrix
    return {
        "W_O_shape": tuple(W_O.shape), "W_O_numel": W_O.numel(),
        "slice_shape": tuple(head.shape), "slice_numel": head.numel(),
        "d_model": d_model, "n_heads": n_heads, "d_head": d_head,
    }


def wo_slice(d_model: int = RUNNING_EXAMPLE["d_model"], n_heads: int = RUNNING_EXAMPLE["n_heads"]) -> Checkpoint:
    """How many numbers W_O[h] holds. Wrong options: the whole D × D matrix (the head owns all of
    W_O), L × L (a square per head, like its attention), D (one output row)."""
    sizes = wo_slice_sizes(d_model, n_heads)
    D, H, L = d_model, n_heads, sizes["d_head"]
    right, wrong = number_options(sizes["slice_numel"], [sizes["W_O_numel"], L * L, D])
    share = "all" if H == 1 else f"1/{H}"
    why = (f"W_O is [H, L, D] = [{H}, {L:,}, {D:,}], so W_O[h] is L × D = {L:,} × {D:,} = "
           f"{sizes['slice_numel']:,} numbers: rows hL … hL+L−1 of the {D:,} × {D:,} output matrix, "
           f"{share} of its {sizes['W_O_numel']:,}.")
    return choice(
        "home.wo_slice",
        f"At $D = {D:,}$ and $H = {H}$, how many numbers does one head's slice of the output matrix, "
        "`W_O[h]`, hold?",
        right, wrong, why, fingerprint(d_model=D, n_heads=H),
    )
