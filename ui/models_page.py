"""Models: what is loaded, its card, its parameters and file size, and its device."""

import re
from pathlib import Path

import streamlit as st

from generation.sampling_options import describe_settings
from ui import resources


def on_disk(path: str) -> str:
    """"12.3 MB on disk": a file's size, or a folder's files' together."""
    p = Path(path)
    files = [f for f in p.rglob("*") if f.is_file()] if p.is_dir() else [p]
    return f"{sum(f.stat().st_size for f in files) / 1e6:.1f} MB on disk"


def offline_markdown(text: str) -> str:
    """A card as markdown, its images shown as their alt text: a model folder may come from anyone,
    and `![](http://...)` would have the browser fetch from the network (a relative one would be
    fetched from this app, which does not serve the folder). Inline images, with parentheses in
    their address too, and reference-style ones `![x][ref]`."""
    inline = r"!\[([^\]]*)\]\((?:[^()]|\([^()]*\))*\)"
    reference = r"!\[([^\]]*)\]\[[^\]]*\]"
    return re.sub(reference, r"[image: \1]", re.sub(inline, r"[image: \1]", text))


resources.sidebar()
st.title("Models")
p = resources.paths()
pipe = resources.generator()
if pipe is not None:
    st.subheader("Generator")
    n_params = sum(t.numel() for t in pipe.parameters())
    st.write(f"`{p['generator']}` - {n_params / 1e6:.2f} M parameters ({on_disk(p['generator'])}) on {pipe.device}; "
             f"{pipe.image_size}x{pipe.image_size} images, {pipe.vqvae.codebook_size} codes, "
             f"{pipe.diffusion.num_timesteps} diffusion steps; {pipe.text_encoder.kind} text encoder "
             f"({pipe.text_encoder.max_length} tokens, width {pipe.text_encoder.dim}); "
             f"samples at {describe_settings(pipe.defaults)} by default")
    card = Path(p["generator"]).parent / "README.md"
    if card.is_file():
        with st.expander("Bundle model card (data, commands, measured metrics)"):
            st.markdown(offline_markdown(card.read_text()))
for task, det in resources.detectors().items():
    st.subheader(f"{task} detector")
    n_params = sum(t.numel() for t in det.model.model.parameters())
    st.write(f"`{p[task]}` - classes {', '.join(det.names)}, {n_params / 1e6:.2f} M parameters "
             f"({on_disk(p[task])}), "
             f"image size {det.imgsz}, device {det.device}")
    metrics = {k: det.card[k] for k in ("mAP50", "mAP50-95", "precision", "recall")
               if isinstance(det.card.get(k), (int, float))}
    if metrics:
        st.dataframe([{k: round(float(v), 3) for k, v in metrics.items()}], hide_index=True)
        if det.card.get("n_val"):  # which images the figures come from
            st.caption(f"Measured on the {det.card['n_val']} val images of `{det.card.get('data', '?')}`, "
                       f"at image size {det.card.get('imgsz', det.imgsz)} (mAP50-95: COCO's mean over IoU 0.5-0.95)")
    if det.card.get("readme"):
        with st.expander("Training card"):
            st.markdown(offline_markdown(det.card["readme"]))
