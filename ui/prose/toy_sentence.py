"""The sentences of the sentence page (pages/toy-sentence.py) about sharing keys and values.

Grouped-query attention, for a student who knows multi-head attention and has never heard of it:
the paragraph that introduces it (:data:`SHARING`), and the sentences written from the live
numbers: which heads read which group, what the expansion copies, and what the comparison of two
heads of one group measured (:func:`shared_said`). Pure functions of plain numbers, no Streamlit,
so each wording can be tested at every edge (one head, one token, identical tokens).
"""

from __future__ import annotations

from ui.format import plural, shape

__all__ = ["SHARING", "kv_line", "expansion_note", "groups_said", "gap", "shared_said"]

SHARING = r"""
**Sharing keys and values.** So far every head has its own $W_K^h$ and $W_V^h$. Llama 3, Mistral,
Qwen 2.5, Gemma and Falcon don't work that way: they let several query heads share one key matrix
and one value matrix. This is **grouped-query attention** (GQA). The $H$ query heads are split into
$H_{kv}$ groups of $G = H / H_{kv}$ neighbouring heads; group $g$ owns one $W_K^g$ and one $W_V^g$
(stacked, $[H_{kv}, D, L]$), and query head $h$ reads group $\lfloor h / G \rfloor$. With
$H_{kv} = H$ every group is one head: the multi-head attention above. With $H_{kv} = 1$ all heads
share a single key and value head: **multi-query attention**.

Why share? Not to save work on this page: there are as many queries, scores and weights as before.
A model that writes text one token at a time keeps every earlier token's keys and values in memory
(the *KV cache*) rather than computing them again, and sharing divides that memory by $G$. What it
costs is that the heads of a group must look at the same keys. Whether that makes them look *alike*
is a question for section 5.
"""


def kv_line(heads: int, kv_heads: int) -> str:
    """What the H_kv control chose, in words, beside the head count."""
    if heads == 1:
        return "With one head there is nothing to share: its keys and values are its own ($H_{kv} = H$)."
    if kv_heads == heads:
        return (f"$H_{{kv}} = H = {heads}$: every head has its own keys and values. Choose fewer key/value heads "
                "to make groups of heads share them.")
    everyone = "both heads" if heads == 2 else f"all {heads} heads"
    shared = (f"{everyone} share one key and one value matrix (multi-query attention)." if kv_heads == 1 else
              f"{kv_heads} groups of $G = {heads // kv_heads}$ heads, each group sharing one key and one value matrix.")
    return f"$H_{{kv}} = {kv_heads}$ key/value {plural(kv_heads, 'head')} for {heads} query heads: {shared}"


def expansion_note(kv_shape: tuple[int, ...], group_size: int) -> str:
    """Why the keys are computed per group and then copied, and that fused kernels skip the copy."""
    return (
        f"The new letter $g$ names a key/value head. Keys and values are computed once per group, "
        f"{shape(kv_shape)}, then each group's matrices are copied to its {group_size} query heads, so that from "
        "section 4 on every query head has a key and a value matrix of its own, as before, and the same "
        "`einsum`s run unchanged. Only the copies of one group are equal, number for number. "
        "(torch's `scaled_dot_product_attention(q, k, v, enable_gqa=True)` takes the "
        f"{shape(kv_shape)} keys and values without this copy; the numbers are the same.)"
    )


def groups_said(readers: list[list[int]], most: int = 4) -> str:
    """"K/V group 0 is read by heads 0, 1; …" for the first ``most`` groups."""
    said = "; ".join(
        f"K/V group {g} is read by {plural(len(hs), 'head')} {', '.join(map(str, hs))}" for g, hs in enumerate(readers[:most])
    )
    return said + ("; and so on" if len(readers) > most else "")


def gap(x: float) -> str:
    """A largest difference: "0" when the numbers are the same, else three decimals."""
    return "0" if x == 0 else f"{x:.3f}"


def shared_said(pair: dict, n_tokens: int) -> str:
    """What comparing two heads of one group showed (``core.toy_sentence.shared_pair`` as a dict)."""
    i = pair["query"]
    if pair["weights_differ"]:
        return (
            f"Their keys agree to the last digit and their values too, but each head keeps its own $W_Q^h$, so "
            f"their queries differ by up to {gap(pair['q_diff'])}. A query's dot product with the same key then "
            f"comes out differently in each head (by up to {gap(pair['score_diff'])} in row {i}), and so do the "
            f"weights after the softmax, by up to {gap(pair['weight_diff_all'])}. Sharing fixes *what* a group "
            "can look at; each head still decides *how*, with its own queries. (Their outputs differ further: each "
            "head also has its own slice of $W_O$.)"
        )
    if n_tokens == 1:
        return (
            f"The queries differ by up to {gap(pair['q_diff'])}, and so do the scores, by up to "
            f"{gap(pair['score_diff'])}; yet with one token each row has a single key, whose weight is 1 whatever "
            "its score. Add a word to see the heads part ways."
        )
    return (
        f"The queries differ by up to {gap(pair['q_diff'])}, yet the weights agree: within every row all the "
        "visible keys score alike (identical tokens have identical keys), and equal scores give equal weights "
        "whatever the query. Type a sentence with different words to see the heads part ways."
    )
