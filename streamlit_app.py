"""Entry point: `streamlit run streamlit_app.py`. The pages are listed once, in ui/registry.py;
their URL paths are stable, because links shared in class point at them."""

import streamlit as st

from ui.gate import heavy
from ui.registry import PAGES

st.set_page_config(
    page_title="Multi-head attention is a sum",
    page_icon="➕",
    layout="wide",
    menu_items={"About": "An explorable essay on multi-head attention: concatenate-then-project "
                         "equals project-each-head-then-add."},
)

# KaTeX's display formulas scroll sideways, and some overhang their box by a pixel or two, which
# makes them scroll regions that no keyboard can reach (axe: scrollable-region-focusable).
st.html("<style>.katex-display { padding-right: 4px; }</style>")


navigation = st.navigation(
    [
        st.Page(page.file, title=page.title, url_path=page.url_path or None, icon=page.icon,
                default=page.url_path == "")
        for page in PAGES
        if page.exists
    ]
)
# One page run per usable core at a time (ui.gate): the others wait holding nothing, so thirty
# students arriving at once peak at a few runs' worth of memory (docs/class-load.md, patch 5). The
# gate is taken before any cache lock, so it cannot deadlock; long jobs (a training run, a benchmark)
# step out of it inside ui.jobs.run_job. A fragment rerun does not pass here (Streamlit calls the
# fragment alone): a page gates its heavy fragments itself with ``@heavy`` under ``@st.fragment``.
with heavy.hold():
    navigation.run()
