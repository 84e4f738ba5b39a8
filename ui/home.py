"""Home page: what gendet is and what the app will grow into."""

import streamlit as st

st.title("gendet")
st.write(
    "Text-to-image generation that checks itself: a VQ-Diffusion generator whose "
    "images are judged by YOLO detectors for cats, dogs and faces."
)
st.info(
    "Coming next in this app: **Generate** (live step previews, boxes and a verdict on every "
    "image), **Detect** (upload images), **Evaluate** (prompt suites with reports) and "
    "**Models** (cards and metrics of the bundled demo models)."
)
