"""The gendet app: `streamlit run ui`. Routes to one file per page with st.navigation."""

import gendet_env  # noqa: F401  (offline before any model library loads)

import sys
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `from ui import ...` under `streamlit run ui`

from ui import resources  # noqa: E402



def tab_icon():
    """The browser tab's icon, drawn here: a ":material/..." page_icon is fetched from fonts.gstatic.com,
    a request on every page load that an offline app must not make."""
    from PIL import Image, ImageDraw

    icon = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    draw, red = ImageDraw.Draw(icon), (255, 75, 75, 255)
    draw.ellipse((16, 30, 48, 60), fill=red)  # a paw: the pad and four toes
    for x, y in ((8, 24), (22, 10), (42, 10), (56, 24)):
        draw.ellipse((x - 7, y - 8, x + 7, y + 8), fill=red)
    return icon


st.set_page_config(page_title="gendet", page_icon=tab_icon(), layout="wide")
# Material icons ship with Streamlit as a font: no emoji font needed on the machine
pages = [st.Page("home.py", title="Home", icon=":material/home:", default=True),
         st.Page("generate.py", title="Generate", icon=":material/brush:"),
         st.Page("detect.py", title="Detect", icon=":material/center_focus_strong:"),
         st.Page("evaluate.py", title="Evaluate", icon=":material/bar_chart:"),
         st.Page("models_page.py", title="Models", icon=":material/inventory_2:", url_path="models")]
page = st.navigation(pages)
resources.drop_jobs(but=page.url_path)
page.run()
