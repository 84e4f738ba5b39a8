"""models.half on the shipped generator: half the bytes, float32 compute, outputs that barely move."""

import shutil

import gendet_env
import pytest
import torch

from generation.pipeline import TextToImage
from models.half import halve, main

DEMO = gendet_env.ROOT / "models" / "demo" / "generator"


@pytest.mark.skipif(not (DEMO / "pipeline.json").is_file(), reason="no bundled generator")
def test_half_storage_of_the_bundled_generator(tmp_path):
    full = TextToImage.from_pretrained(DEMO, device="cpu")
    copy = tmp_path / "generator"
    shutil.copytree(DEMO, copy)
    before, after = halve(copy)
    assert after < 0.55 * before
    half = TextToImage.from_pretrained(copy, device="cpu")
    assert all(p.dtype == torch.float32 for p in half.parameters())  # stored in 16 bits, computed in 32
    assert half.text_encoder.model.dtype == torch.float32

    prompts = ["a black cat", "two faces to the left of a dog"]
    e_full, _ = full.encode_text(prompts)
    e_half, _ = half.encode_text(prompts)
    # within 2% of the embeddings' scale (the 8-block build's text encoder: 0.9%, 0.024 of 2.63);
    # what sampling sees is the transformer's output below, fed each model's own embedding
    assert (e_full - e_half).abs().max() < 0.02 * e_full.abs().max()
    g = torch.Generator().manual_seed(0)
    cfg = full.transformer.config
    x = torch.randint(0, cfg.num_classes + 1, (2, cfg.seq_len), generator=g)
    t = torch.tensor([5, 80])
    with torch.no_grad():
        a = full.transformer(x, t, full.transformer.prepare_text(e_full)).log_softmax(1)
        b = half.transformer(x, t, half.transformer.prepare_text(e_half)).log_softmax(1)
    assert (a.exp() - b.exp()).abs().max() < 1e-2  # probabilities within a percent point
    # and the same most likely token, but for near-ties: where the two disagree, the full model
    # rates the half model's choice within that percent point of its own
    top_full, top_half = a.argmax(1), b.argmax(1)
    differ = top_full != top_half
    assert differ.float().mean() < 0.01
    p = a.exp()
    gap = p.gather(1, top_full.unsqueeze(1)) - p.gather(1, top_half.unsqueeze(1))
    assert (gap.squeeze(1)[differ] < 1e-2).all()
    ids = torch.randint(0, full.vqvae.codebook_size, (2, cfg.seq_len), generator=g)
    assert (full.vqvae.decode(ids) - half.vqvae.decode(ids)).abs().max() < 2e-2
    # the same draws: a whole chain can part at one near-tie (the tenth build's seed 0 kept 64% of
    # its tokens, seeds 2 and 4 99% and 100%), so the median of three chains is what is asserted
    chains = [(full("a black cat", num_images=2, seed=s).tokens, half("a black cat", num_images=2, seed=s).tokens)
              for s in (0, 2, 4)]
    agree = sorted((x == y).float().mean().item() for x, y in chains)
    assert agree[1] > 0.95, agree

    assert main([str(tmp_path / "empty")]) == 2
