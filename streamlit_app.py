"""Entry point: `streamlit run streamlit_app.py`. Pages live in pages/; their URL paths are stable,
because links shared in class point at them."""

from pathlib import Path

import streamlit as st

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

HERE = Path(__file__).parent

# (file, title, url_path, icon). Home is the default page at "/".
PAGES = [
    ("pages/home.py", "Attention is a sum", "", ":material/home:"),
    ("pages/shapes.py", "The shape table", "shapes", ":material/table_chart:"),
    ("pages/toy-sentence.py", "Attention on a sentence", "toy-sentence", ":material/chat:"),
    ("pages/concat-vs-sum.py", "Concat versus sum", "concat-vs-sum", ":material/functions:"),
    ("pages/induction.py", "The sum at work", "induction", ":material/psychology:"),
    ("pages/timing.py", "Timing", "timing", ":material/timer:"),
]

navigation = st.navigation(
    [
        st.Page(path, title=title, url_path=url or None, icon=icon, default=(url == ""))
        for path, title, url, icon in PAGES
        if (HERE / path).exists()
    ]
)
navigation.run()
