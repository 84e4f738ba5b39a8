"""Detect: upload images, run the detectors, see boxes and a table."""

import streamlit as st

from detection.draw import draw_detections
from ui import resources
from ui.uploads import IMAGE_TYPES, box_table, boxes_caption, open_image

resources.sidebar()
st.title("Detect")
available = resources.detectors()
if not available:
    st.warning(f"No detector found. {resources.MISSING_HELP}")
    st.stop()
chosen = st.multiselect("Detectors", list(available), default=list(available), key="det_chosen")
c1, c2 = st.columns(2)
conf = c1.slider("Confidence threshold", 0.05, 0.95, 0.3, 0.05, key="det_conf")
iou = c2.slider("NMS IoU", 0.1, 0.95, 0.7, 0.05, key="det_iou")
files = st.file_uploader("Images", type=IMAGE_TYPES, accept_multiple_files=True, key="det_files")
if not chosen:
    st.info("Choose at least one detector above.")
    files = []


for f in files or []:
    image, note = open_image(f.getvalue(), f.name)
    if image is None:
        st.error(note)
        continue
    if note:
        st.info(note)
    found = []
    with resources.device_lock():
        for task in chosen:
            found += list(available[task].detect([image], conf=conf, iou=iou)[0])
    left, right = st.columns([2, 1])
    left.image(draw_detections(image, found), caption=f.name, width="stretch")
    if found:
        right.dataframe(box_table(found, image), hide_index=True)
        right.caption(boxes_caption(image))
    else:
        right.caption(f"nothing found at confidence {conf:.2f} or above")
