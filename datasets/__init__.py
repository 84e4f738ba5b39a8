"""gendet datasets: data on disk -> tensors.

Procedural scenes (`datasets.scenes`), converters from real dataset formats
(`datasets.convert`) and box-aware augmentations (`datasets.augment`).

This package shadows Hugging Face's `datasets`; gendet does not depend on it.
"""
