"""The gendet app: `streamlit run ui`. Routes to one file per page with st.navigation."""

import gendet_env  # noqa: F401  (offline before any model library loads)

import sys
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `from ui import ...` under `streamlit run ui`

st.set_page_config(page_title="gendet", page_icon="🐾", layout="wide")
pages = [st.Page("home.py", title="Home", icon="🏠", default=True),
         st.Page("generate.py", title="Generate", icon="🎨"),
         st.Page("detect.py", title="Detect", icon="🔍"),
         st.Page("evaluate.py", title="Evaluate", icon="📊"),
         st.Page("models_page.py", title="Models", icon="📦", url_path="models")]
st.navigation(pages).run()
