"""gendet generation: VQ-Diffusion text-to-image (VQ-VAE tokenizer, text encoders,
denoising transformer, mask-and-replace diffusion, pipeline, train/sample CLIs).

    from generation import TextToImage
    pipe = TextToImage.from_pretrained("models/demo/generator")
    pipe("a black cat", num_images=2, seed=0).pil()
"""

__all__ = ["TextToImage", "GenerationOutput"]


def __getattr__(name: str):
    # lazy: importing the package (for any submodule) stays free of torch until these are asked for
    if name in __all__:
        from generation import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'generation' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
