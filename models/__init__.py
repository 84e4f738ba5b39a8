"""The demo bundle (models/demo/) and the recipe that rebuilds it (build_demo.py)."""
