"""Home: what gendet is and where to start."""

import streamlit as st

from ui import resources

resources.sidebar()
st.title("gendet")
st.write("Text-to-image generation that checks itself: a VQ-Diffusion generator whose images are judged "
         "by YOLO detectors for cats, dogs and faces.")
st.markdown("- **Generate**: a prompt such as *two black cats* or *a dog to the left of a face*; every image "
            "gets boxes and a verdict.\n- **Detect**: run the detectors on your own images.\n"
            "- **Evaluate**: run a prompt suite and read the report.\n- **Models**: cards and metrics.")
