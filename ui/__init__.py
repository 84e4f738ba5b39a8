"""gendet ui: the Streamlit app (`streamlit run ui` runs ui/streamlit_app.py)."""
