"""gendet generation: VQ-Diffusion text-to-image (VQ-VAE tokenizer, text encoders,
denoising transformer, mask-and-replace diffusion, pipeline, train/sample CLIs)."""
