"""The gendet app: `streamlit run ui`. Routes to one file per page with st.navigation."""

import gendet_env  # noqa: F401  (offline before any model library loads)

import streamlit as st

st.set_page_config(page_title="gendet", page_icon="🐾", layout="wide")

pages = [st.Page("home.py", title="Home", icon="🏠", default=True)]
st.navigation(pages).run()
