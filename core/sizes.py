"""The sizes of one attention layer, as one immutable value, with the rules that make them a layer.

Before this module the sizes travelled as loose ints through long argument lists, the head width
was read back from tensor shapes, and "heads must divide the width" was checked, and worded, in
many places. :class:`LayerSizes` holds them together, derives what follows from them (the head
width L and the group size G of grouped-query attention) and states every rule once, with the
sentence a reader sees when a rule is broken (:meth:`LayerSizes.problems`).

Letters, as everywhere in the essay: B batch, S sequence length, V vocabulary, D model width
(d_model), H query heads, H_kv key/value heads, L head width (d_head), G = H / H_kv query heads per
key/value head. Plain multi-head attention is H_kv = H (G = 1); multi-query attention is H_kv = 1.

It is a frozen dataclass, so it can key a cache (it is hashable and compares by value).
``n_kv_heads`` left out means "as many as there are query heads" and is stored as that number, so
``LayerSizes(..., n_heads=8)`` and ``LayerSizes(..., n_heads=8, n_kv_heads=8)`` are equal. To
change the head count use :meth:`with_heads`, which re-derives ``n_kv_heads``; ``dataclasses.replace``
would keep the old one.

Mapping from the older per-page types (they can be replaced by this one):
``core.shapes.Sizes(B, S, V, D, H)`` → ``batch, seq, vocab, d_model, n_heads`` and ``L`` → ``d_head``;
``core.timing.Size(batch, seq, d_model, n_heads)`` → the same names, ``d_head`` the same, ``bsd``
→ ``batch * seq * d_model`` (and ``vocab`` is not used there).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = [
    "LayerSizes",
    "RUNNING_EXAMPLE",
    "divisors",
    "heads_rule",
    "kv_heads_rule",
    "nearest_heads",
    "nearest_kv_heads",
]


def divisors(n: int) -> list[int]:
    """Every whole number that divides ``n`` evenly, smallest first (n ≥ 1)."""
    small = [d for d in range(1, int(n**0.5) + 1) if n % d == 0]
    return sorted(set(small + [n // d for d in small]))


def _nearest(candidates: list[int], asked: int) -> int:
    """The candidate closest to ``asked``; on a tie, the smaller one."""
    return min(candidates, key=lambda c: (abs(c - asked), c))


def nearest_kv_heads(n_heads: int, asked: int) -> int:
    """The valid key/value head count nearest to ``asked``: a divisor of ``n_heads``.

    For a hostile link (``kv_heads=0``, ``kv_heads=5`` with 8 heads, ``kv_heads=99``): 0 → 1,
    5 → 4, 99 → 8. Ties go to the smaller count (6 with 8 heads → 4), which shares more.
    """
    if n_heads < 1:
        raise ValueError(f"n_heads must be at least 1, got {n_heads}")
    return _nearest(divisors(n_heads), asked)


def nearest_heads(d_model: int, asked: int, hi: int | None = None) -> int:
    """The valid query head count nearest to ``asked``: a divisor of ``d_model``, at most ``hi``."""
    options = [h for h in divisors(d_model) if hi is None or h <= hi] or [1]
    return _nearest(options, asked)


def heads_rule(d_model: int, n_heads: int, hi: int | None = None) -> str | None:
    """The readable message when ``n_heads`` does not divide ``d_model``, else None.

    Each head gets D / H dimensions; a head's width must be a whole number. The message offers
    the nearest head counts that work (at most ``hi``), so a reader can fix it in one step.
    """
    if d_model % n_heads == 0:
        return None
    options = [h for h in divisors(d_model) if hi is None or h <= hi]
    near = sorted(sorted(options, key=lambda h: (abs(h - n_heads), h))[:4])
    return (
        f"{n_heads} heads don't divide a width of {d_model}: each head gets D / H = "
        f"{d_model}/{n_heads} = {d_model / n_heads:.3g} dimensions, and a head's width must be a whole "
        f"number. Try heads = {', '.join(map(str, near))}, or change the width."
    )


def kv_heads_rule(n_heads: int, n_kv_heads: int) -> str | None:
    """The readable message when ``n_kv_heads`` cannot serve ``n_heads`` query heads, else None.

    Grouped-query attention splits the H query heads into H_kv equal groups, each group reading
    one key/value head; that needs H_kv to divide H (so H_kv ≤ H).
    """
    if 1 <= n_kv_heads <= n_heads and n_heads % n_kv_heads == 0:
        return None
    options = divisors(n_heads)
    head_word = "query head" if n_heads == 1 else "query heads"
    if n_kv_heads > n_heads:
        why = (
            f"{n_kv_heads} key/value heads are more than the {n_heads} {head_word}: every key/value "
            f"head serves at least one query head, so there can be at most {n_heads}."
        )
    elif n_kv_heads < 1:
        why = f"{n_kv_heads} key/value heads leave the queries nothing to read: there must be at least 1."
    else:
        why = (
            f"{n_kv_heads} key/value heads don't divide {n_heads} {head_word}: each group would hold "
            f"H / H_kv = {n_heads}/{n_kv_heads} = {n_heads / n_kv_heads:.3g} query heads, and groups "
            f"must be equal and whole."
        )
    return f"{why} With {n_heads} {head_word}, kv_heads can be {', '.join(map(str, options))}."


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


@dataclass(frozen=True)
class LayerSizes:
    """B, S, V, D, H, H_kv of one attention layer; L and G derived; every rule in :meth:`problems`.

    ``head_dim`` is for published models whose head width is set on its own (some configs carry a
    ``head_dim`` field with H·L ≠ D, e.g. Gemma 7B: D 3072, 16 heads of 256). Left out, L = D / H
    and H must divide D; given, H·L need not equal D (W_Q is [H, D, L], W_O is [H, L, D]).
    """

    batch: int
    seq: int
    vocab: int
    d_model: int
    n_heads: int
    n_kv_heads: int | None = None  # None → n_heads (plain multi-head attention); stored as the number
    head_dim: int | None = None  # None → d_model // n_heads

    def __post_init__(self) -> None:
        if self.n_kv_heads is None:
            object.__setattr__(self, "n_kv_heads", self.n_heads)
        if (self.head_dim is not None and _is_count(self.d_model) and _is_count(self.n_heads)
                and self.d_model % self.n_heads == 0 and self.head_dim == self.d_model // self.n_heads):
            object.__setattr__(self, "head_dim", None)  # the usual width, said out loud: same layer
        problems = self.problems()
        if problems:
            raise ValueError(" ".join(problems))

    # ---- the rules, in one place ----------------------------------------------------------------

    def problems(self) -> list[str]:
        """Every broken rule as a sentence for the reader; empty when the sizes make a layer."""
        out = []
        names = ("batch", "seq", "vocab", "d_model", "n_heads", "n_kv_heads", "head_dim")
        for name in names:
            value = getattr(self, name)
            if name == "head_dim" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int):
                out.append(f"{name} must be a whole number, got {value!r}.")
            elif value < 1:
                out.append(f"{name} must be at least 1, got {value}.")
        if out:
            return out
        if self.head_dim is None and (msg := heads_rule(self.d_model, self.n_heads)):
            out.append(msg)
        if msg := kv_heads_rule(self.n_heads, self.n_kv_heads):
            out.append(msg)
        return out

    @classmethod
    def check(cls, **sizes: int | None) -> list[str]:
        """The problems of sizes that may not make a layer, without raising: [] when they do."""
        try:
            cls(**sizes)
        except ValueError as err:
            return [str(err)]
        except TypeError as err:  # a missing or unknown size name
            return [str(err)]
        return []

    # ---- derived sizes --------------------------------------------------------------------------

    @property
    def d_head(self) -> int:
        """L: the width of one head's query, key and value vectors."""
        return self.head_dim if self.head_dim is not None else self.d_model // self.n_heads

    @property
    def group_size(self) -> int:
        """G = H / H_kv: how many query heads read each key/value head (1 for multi-head)."""
        return self.n_heads // self.n_kv_heads

    @property
    def is_grouped(self) -> bool:
        """True when keys and values are shared (H_kv < H)."""
        return self.n_kv_heads < self.n_heads

    def kv_head_of(self, head: int) -> int:
        """The key/value head that query head ``head`` reads: h // G (heads count from 0)."""
        if not 0 <= head < self.n_heads:
            raise ValueError(f"head {head} is not one of the {self.n_heads} heads 0…{self.n_heads - 1}")
        return head // self.group_size

    def query_heads_of(self, kv_head: int) -> list[int]:
        """The query heads that share key/value head ``kv_head``: G consecutive heads."""
        if not 0 <= kv_head < self.n_kv_heads:
            raise ValueError(f"kv head {kv_head} is not one of 0…{self.n_kv_heads - 1}")
        G = self.group_size
        return list(range(kv_head * G, (kv_head + 1) * G))

    # ---- changing sizes ---------------------------------------------------------------------------

    def with_heads(self, n_heads: int, n_kv_heads: int | None = None) -> "LayerSizes":
        """The same layer with another head count (H_kv defaults to the new H, not the old H_kv)."""
        return LayerSizes(self.batch, self.seq, self.vocab, self.d_model, n_heads, n_kv_heads, self.head_dim)

    def without_sharing(self) -> "LayerSizes":
        """The same layer as plain multi-head attention: H_kv = H."""
        return self.with_heads(self.n_heads)

    @classmethod
    def from_controls(cls, values: dict[str, object], default: "LayerSizes | None" = None) -> "LayerSizes":
        """The layer a page's controls describe, from their URL names.

        ``batch, seq, vocab, d_model, heads, kv_heads`` (as in ``ui.controls.SHARED_NAMES``); a
        page without one of them gets ``default``'s (the running example unless given). Raises
        ValueError with the rules' sentences when the values don't make a layer.
        """
        base = default or RUNNING_EXAMPLE
        heads = int(values.get("heads", base.n_heads))
        kv = values.get("kv_heads")
        return cls(
            int(values.get("batch", base.batch)), int(values.get("seq", base.seq)),
            int(values.get("vocab", base.vocab)), int(values.get("d_model", base.d_model)),
            heads, None if kv is None else int(kv),
        )

    def as_dict(self) -> dict[str, int | None]:
        """Plain values for ``st.cache_data`` arguments, tables and links."""
        return asdict(self)

    def letters(self) -> dict[str, int]:
        """The essay's letters: B, S, V, D, H, H_kv, L, G."""
        return {
            "B": self.batch, "S": self.seq, "V": self.vocab, "D": self.d_model, "H": self.n_heads,
            "H_kv": self.n_kv_heads, "L": self.d_head, "G": self.group_size,
        }


# The essay's running example, defined once: one sentence of 20 tokens, GPT-2's width halved.
RUNNING_EXAMPLE = LayerSizes(batch=1, seq=20, vocab=50_000, d_model=512, n_heads=8)
