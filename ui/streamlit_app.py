"""The gendet app: `streamlit run ui`. Routes to one file per page with st.navigation."""

import gendet_env  # noqa: F401  (offline before any model library loads)

import sys
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `from ui import ...` under `streamlit run ui`

from ui import resources  # noqa: E402

st.set_page_config(page_title="gendet", page_icon=":material/pets:", layout="wide")
# Material icons ship with Streamlit as a font: no emoji font needed on the machine
pages = [st.Page("home.py", title="Home", icon=":material/home:", default=True),
         st.Page("generate.py", title="Generate", icon=":material/brush:"),
         st.Page("detect.py", title="Detect", icon=":material/center_focus_strong:"),
         st.Page("evaluate.py", title="Evaluate", icon=":material/bar_chart:"),
         st.Page("models_page.py", title="Models", icon=":material/inventory_2:", url_path="models")]
page = st.navigation(pages)
resources.drop_jobs(but=page.url_path)
page.run()
