"""Every number and shape the pages print, formatted one way (core computes, the page formats).

One module so that a shape reads ``[1, 20, 512]`` and a byte count ``40 KiB`` on every page, and
so that the sentences built around them share the edge-case rules: a count of one is singular,
a difference that rounds to zero is printed as ``0`` (never ``−0``), and two equal quantities are
never described as one larger than the other.
"""

from __future__ import annotations

import math
import string

__all__ = [
    "count", "plural", "number", "shape", "shape_md", "plain_shape", "size_bytes", "flops",
    "sci", "signed", "same_or_compare", "times", "escape_md",
]


def count(n: int, noun: str, plural_form: str | None = None) -> str:
    """'1 head', '8 heads', '1,024 tokens': a whole number with its noun, singular or plural."""
    return f"{int(n):,} {plural(n, noun, plural_form)}"


def plural(n: int | float, noun: str, plural_form: str | None = None) -> str:
    """The noun alone, singular when n is exactly 1."""
    return noun if n == 1 else (plural_form or noun + "s")


def number(x: int) -> str:
    """A whole number with thousands separators: 50,000."""
    return f"{int(x):,}"


def shape(dims) -> str:
    """'[1, 20, 512]': a tensor's shape as the code prints it, with thousands separators."""
    return "[" + ", ".join(f"{int(d):,}" for d in dims) + "]"


def shape_md(sym: str | None, dims: tuple | None, contracted_at: int | None = None) -> str:
    """"B×S×*V* = 1×20×*50,000*": letters and numbers, the summed-away axis in italics."""
    if sym is None or dims is None:
        return "–"
    letters, numbers = sym.split("×"), [number(v) for v in dims]
    if contracted_at is not None:
        i = int(contracted_at)
        letters[i], numbers[i] = f"*{letters[i]}*", f"*{numbers[i]}*"
    return f"{'×'.join(letters)} = {'×'.join(numbers)}"


def plain_shape(dims: tuple | None) -> str:
    """'1×20×512', or '' where there is no tensor."""
    return "" if dims is None else "×".join(map(str, dims))


def size_bytes(x: float) -> str:
    """'812 bytes', '40 KiB', '1.5 GiB' (binary units, three significant figures)."""
    x = float(x)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB"):
        if abs(x) < 1024 or unit == "ZiB":
            return f"{int(x):,} bytes" if unit == "bytes" else f"{x:.3g} {unit}"
        x /= 1024
    raise AssertionError


def flops(x: float) -> str:
    """'512', '10.5 M', '1.07 G': a count of floating-point operations, SI prefixes."""
    x = float(x)
    if x < 1000:
        return f"{x:,.0f}"
    for unit, scale in (("Y", 1e24), ("Z", 1e21), ("E", 1e18), ("P", 1e15), ("T", 1e12), ("G", 1e9),
                        ("M", 1e6), ("k", 1e3)):
        if x >= scale:
            return f"{x / scale:.3g} {unit}"
    raise AssertionError


def _no_negative_zero(text: str) -> str:
    """'-0.00' → '0.00': a value that rounds to zero carries no sign."""
    stripped = text.lstrip("-−")
    if stripped != text and not any(ch in "123456789" for ch in stripped.split("e")[0]):
        return stripped
    return text


def sci(x: float | None, digits: int = 2) -> str:
    """A readout in scientific notation ('3.07e-01'); '—' where there is nothing to show."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    return _no_negative_zero(f"{x:.{digits}e}")


def signed(x: float, spec: str = ".2f") -> str:
    """A formatted number that never prints as −0."""
    return _no_negative_zero(f"{x:{spec}}")


def times(ratio: float, spec: str = ".1f") -> str:
    """'4.0×': a ratio as a multiplier (callers say 'the same' where it formats as 1)."""
    return f"{ratio:{spec}}×"


def same_or_compare(a: float, b: float, spec: str, more: str, less: str, same: str = "the same as") -> str:
    """The word between two numbers, decided on the numbers as printed: 'larger than', 'smaller
    than', or 'the same as' when they print alike, so a sentence never calls X against X different."""
    fa, fb = f"{a:{spec}}", f"{b:{spec}}"
    if fa == fb:
        return same
    return more if a > b else less


def escape_md(text: str) -> str:
    """User text made inert for st.markdown: every ASCII punctuation mark backslash-escaped
    (so no emphasis, links, HTML, LaTeX `$` or `:color[...]` directives), newlines flattened."""
    return "".join("\\" + ch if ch in string.punctuation else ch for ch in " ".join(text.split()))
