"""Cached views of home (pages/home.py): the live check of the identity and the checkpoint's sizes.

In a module of their own rather than in the page script, so that a rerun of home finds them
already defined (a ``st.cache_data`` function defined in a page is wrapped again, and its source
read again, on every run).
"""

from __future__ import annotations

import streamlit as st

from core.checkpoints import Checkpoint
from core.checkpoints import home as cps
from core.device import dtype_from_name
from core.identity import identity_demo

# The essay's running example (the first source post's sizes), used by home's live check.
DEMO = {"batch": 1, "seq": 20, "d_model": 512, "n_heads": 8}
DEMO_DTYPE = "float32"


@st.cache_data(show_spinner=False, max_entries=4)
def live_check(dtype_name: str) -> dict:
    """Seed-0 weights at the essay's sizes; the max difference between the two endings
    (core.identity.identity_demo)."""
    return identity_demo(**DEMO, seed=0, dtype=dtype_from_name(dtype_name)).as_dict()


@st.cache_data(show_spinner=False, max_entries=4)
def wo_slice_view(d_model: int, n_heads: int) -> tuple[Checkpoint, dict]:
    """Home's checkpoint (core.checkpoints.home.wo_slice) and the sizes its answer reads."""
    return cps.wo_slice(d_model, n_heads), cps.wo_slice_sizes(d_model, n_heads)
