"""Entry point: `streamlit run streamlit_app.py`. The pages are listed once, in ui/registry.py;
their URL paths are stable, because links shared in class point at them."""

import streamlit as st

from ui.registry import PAGES

st.set_page_config(
    page_title="Multi-head attention is a sum",
    page_icon="➕",
    layout="wide",
    menu_items={"About": "An explorable essay on multi-head attention: concatenate-then-project "
                         "equals project-each-head-then-add."},
)

navigation = st.navigation(
    [
        st.Page(page.file, title=page.title, url_path=page.url_path or None, icon=page.icon,
                default=page.url_path == "")
        for page in PAGES
        if page.exists
    ]
)
navigation.run()
