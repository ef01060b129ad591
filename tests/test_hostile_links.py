"""Hostile links, property-based: any query string on any page gives a page, never a traceback.

Teachers paste links into chats where they get truncated, edited and mangled; a student may type
anything after the `?`. Every page must answer every one with a working page.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.apptest_utils import ROOT, run_page, texts
from ui.controls import SHARED_NAMES
from ui.registry import PAGES as REGISTRY

PAGES = [p.name for p in REGISTRY]

nasty_values = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["", " ", "nan", "inf", "-0", "1e308", "0x10", "٣", "true", "NULL", "None",
                     "<script>alert(1)</script>", "**bold** $x$ `code`", "\u202e", "\x00",
                     "🙂" * 300, "a" * 10_000, "cuda", "cuda:7", "mps", "float8", "bfloat16"]),
    st.text(max_size=80),
)
queries = st.dictionaries(
    st.one_of(st.sampled_from(SHARED_NAMES), st.sampled_from(["sweep", "values", "budget", "step", "coord", "sequence", "position",
                                   "ablate", "ablation", "train_seed", "steps", "model", "context",
                                   "room", "quiz", "teacher"]),
              st.text(min_size=1, max_size=10)),
    st.one_of(nasty_values, st.lists(nasty_values, min_size=2, max_size=3)),
    max_size=6,
)


def _present(page: str) -> bool:
    return (ROOT / "pages" / f"{page}.py").exists()


@pytest.mark.parametrize("page", PAGES)
@settings(max_examples=8, deadline=None)
@given(query=queries)
def test_any_query_string_gives_a_working_page(page, query):
    if not _present(page):
        pytest.skip(f"pages/{page}.py does not exist")
    at = run_page(page, query)  # fails on any exception element
    assert "Traceback" not in texts(at)


# The largest link each page accepts, to check that the caps bound memory.
LARGEST = {
    "shapes": {"batch": "4096", "seq": "1048576", "vocab": "10000000", "d_model": "65536", "heads": "1024"},
    "toy-sentence": {"sentence": "abc " * 50, "d_model": "64", "heads": "16", "causal": "true"},
    "concat-vs-sum": {"batch": "64", "seq": "1024", "d_model": "2048", "heads": "64", "dtype": "float64"},
    "induction": {"sequence": "a" * 200, "heads": "4", "steps": "3000", "ablate": "0.0,0.1,1.0,1.1",
                  "position": "31"},
    "timing": {"batch": "64", "seq": "1024", "d_model": "2048", "heads": "64"},
}

_PROBE = textwrap.dedent(
    """
    import json, resource, sys
    sys.path.insert(0, {root!r})
    from streamlit.testing.v1 import AppTest
    def run(query):
        at = AppTest.from_file({path!r}, default_timeout=120)
        for k, v in query.items():
            at.query_params[k] = v
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    base = run({{}})
    worst = run(json.loads(sys.argv[1]))
    print(json.dumps({{"base_kib": base, "worst_kib": worst}}))
    """
)


@pytest.mark.parametrize("page", sorted(LARGEST))
def test_largest_link_stays_within_the_memory_cap(page):
    """Peak memory of a fresh process: defaults first, then the largest accepted link."""
    if not _present(page):
        pytest.skip(f"pages/{page}.py does not exist")
    import json

    script = _PROBE.format(root=str(ROOT), path=str(ROOT / "pages" / f"{page}.py"))
    out = subprocess.run(
        [sys.executable, "-c", script, json.dumps(LARGEST[page])],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    peaks = json.loads(out.stdout.strip().splitlines()[-1])
    grew_mib = (peaks["worst_kib"] - peaks["base_kib"]) / 1024
    assert grew_mib < 300, f"{page}: the largest link raised peak memory by {grew_mib:.0f} MiB"


def test_probe_measures_in_kib():
    # ru_maxrss is KiB on Linux: a sanity check so the bound above means what it says.
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss > 10_000
