import gendet_env  # noqa: F401  (offline first)

import math

import pytest
import torch

from generation.transformer import (
    PRESETS,
    DenoisingTransformer,
    TextContext,
    TransformerConfig,
    count_parameters,
    map_official_state_dict,
)


@pytest.fixture
def setup():
    torch.manual_seed(0)
    cfg = TransformerConfig.preset("tiny")
    model = DenoisingTransformer(cfg).eval()
    B, L = 3, 7
    x = torch.randint(0, cfg.num_classes + 1, (B, cfg.seq_len))
    x[:, :5] = cfg.mask_id
    t = torch.tensor([0, 4, 9])
    emb = torch.randn(B, L, cfg.text_dim)
    mask = torch.ones(B, L, dtype=torch.bool)
    mask[1, 4:] = False
    mask[2, 2:] = False
    return cfg, model, x, t, emb, mask


def test_shape_and_cached_equals_uncached(setup):
    cfg, model, x, t, emb, mask = setup
    ctx = model.prepare_text(emb, mask)
    assert len(ctx.kv) == cfg.depth
    assert ctx.kv[0][0].shape == (3, cfg.heads, 7, cfg.width // cfg.heads)
    out = model(x, t, ctx)
    assert out.shape == (3, cfg.num_classes, cfg.seq_len)
    ref = model.forward_uncached(x, t, emb, mask)
    assert torch.allclose(out, ref, atol=1e-6, rtol=0)
    # the closure and a scalar timestep
    den = model.denoiser(ctx)
    assert torch.equal(den(x, t), out)
    assert torch.allclose(model(x, 4, ctx), model(x, torch.tensor([4, 4, 4]), ctx))
    # context is reusable across steps (nothing consumed) and batch ops are consistent
    both = TextContext.cat([ctx, ctx])
    out2 = model(torch.cat([x, x]), torch.cat([t, t]), both)
    assert torch.allclose(out2[:3], out, atol=1e-6) and torch.allclose(out2[3:], out, atol=1e-6)
    rep = ctx.repeat_interleave(2)
    out3 = model(x.repeat_interleave(2, 0), t.repeat_interleave(2, 0), rep)
    assert torch.allclose(out3[::2], out, atol=1e-6)


def test_inference_fused_qkv_equals_separate_projections_and_follows_weight_updates(setup):
    cfg, model, x, t, emb, mask = setup
    ctx = model.prepare_text(emb, mask)
    with torch.no_grad():
        fused = model(x, t, ctx)
    separate = model(x, t, ctx).detach()  # grad enabled: three separate projections
    assert torch.allclose(fused, separate, atol=1e-5, rtol=0)
    with torch.no_grad():
        model.blocks[0].attn1.value.weight.mul_(2.0)  # in place: the fused copy must be rebuilt
        changed = model(x, t, ctx)
    assert not torch.allclose(changed, fused, atol=1e-3)
    assert torch.allclose(changed, model(x, t, ctx).detach(), atol=1e-5, rtol=0)
    with torch.no_grad():
        model.blocks[0].attn1.value.weight.div_(2.0)


def test_padding_is_ignored(setup):
    cfg, model, x, t, emb, mask = setup
    out = model(x, t, model.prepare_text(emb, mask))
    emb2 = emb.clone()
    emb2[~mask] = 100 * torch.randn(int((~mask).sum()), cfg.text_dim)
    out2 = model(x, t, model.prepare_text(emb2, mask))
    assert torch.allclose(out, out2, atol=1e-6)
    # but real tokens matter
    emb3 = emb.clone()
    emb3[2, 0] += 1.0
    out3 = model(x, t, model.prepare_text(emb3, mask))
    assert torch.allclose(out3[:2], out[:2], atol=1e-6)
    assert (out3[2] - out[2]).abs().max() > 1e-4
    # padding the sequence longer with masked positions changes nothing
    emb4 = torch.cat([emb, torch.randn(3, 5, cfg.text_dim)], 1)
    mask4 = torch.cat([mask, torch.zeros(3, 5, dtype=torch.bool)], 1)
    assert torch.allclose(model(x, t, model.prepare_text(emb4, mask4)), out, atol=1e-6)
    # a row with no valid token is refused (SDPA would give NaN)
    bad = mask.clone()
    bad[0] = False
    with pytest.raises(ValueError, match="no valid token"):
        model.prepare_text(emb, bad)


def test_cat_with_a_null_context_gives_its_rows_an_all_true_mask(setup):
    """Guidance batches a padded prompt (mask) with the null text (mask None): the null rows
    must attend to every text position, exactly as they do alone. An all-False fill would
    change (or NaN) the unconditional half of every guided step."""
    cfg, model, x, t, emb, mask = setup
    a = model.prepare_text(emb, mask)
    b = model.prepare_text(emb, None)
    both = TextContext.cat([a, b])
    assert torch.equal(both.mask[:3], mask) and both.mask[3:].all()
    out = model(torch.cat([x, x]), torch.cat([t, t]), both)
    assert torch.allclose(out[3:], model(x, t, b), atol=1e-5, rtol=0)
    assert torch.allclose(out[:3], model(x, t, a), atol=1e-5, rtol=0)


def test_timestep_changes_output(setup):
    cfg, model, x, t, emb, mask = setup
    ctx = model.prepare_text(emb, mask)
    a = model(x, torch.tensor([1, 1, 1]), ctx)
    b = model(x, torch.tensor([2, 2, 2]), ctx)
    assert torch.equal(a, model(x, torch.tensor([1, 1, 1]), ctx))
    assert (a - b).abs().max() > 1e-4  # small at N(0, 0.02) init, but far above float noise
    # per-sample: only the sample whose t changed moves
    c = model(x, torch.tensor([1, 2, 1]), ctx)
    assert torch.allclose(c[0], a[0], atol=1e-6) and torch.allclose(c[2], a[2], atol=1e-6)
    assert torch.allclose(c[1], b[1], atol=1e-6)
    sin = DenoisingTransformer(TransformerConfig.preset("tiny", timestep_emb="sinusoidal")).eval()
    ctx = sin.prepare_text(emb, mask)
    assert (sin(x, torch.tensor([1, 1, 1]), ctx) - sin(x, torch.tensor([8, 8, 8]), ctx)).abs().max() > 1e-4


def test_sinusoidal_timestep_table_has_the_official_values():
    """The official adalayernorm_abs table: t' = t / T * 4000, frequencies 10000^(-k / (half - 1))
    for k < half, then [sin | cos]. Other frequencies or order would make official
    sinusoidal checkpoints (ITHQ-style) produce noise."""
    from generation.transformer import SinusoidalPosEmb
    got = SinusoidalPosEmb(100, 8)(torch.tensor([0, 50]))
    assert got[0].tolist() == [0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0]
    args = [2000.0 * 10000 ** (-k / 3) for k in range(4)]  # t' = 50 / 100 * 4000
    want = [math.sin(a) for a in args] + [math.cos(a) for a in args]
    assert torch.allclose(got[1], torch.tensor(want), atol=1e-4, rtol=0), (got[1], want)


def test_gradients_reach_every_parameter(setup):
    cfg, model, x, t, emb, mask = setup
    model.train()
    x = torch.arange(cfg.seq_len).repeat(3, 1) % (cfg.num_classes + 1)
    x[0, 0] = cfg.mask_id
    target = torch.randint(0, cfg.num_classes, (3, cfg.seq_len))
    logits = model.forward_uncached(x, t, emb, mask)
    loss = torch.nn.functional.cross_entropy(logits, target)
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert p.grad.abs().sum() > 0, name


def test_grow_keeps_the_outputs_exactly_and_the_new_blocks_learn(setup):
    """grow(depth) appends identity blocks: the same logits to the bit, then one optimiser step
    moves the new blocks off the identity (their zeroed output layers get gradients)."""
    cfg, model, x, t, emb, mask = setup
    before = model.forward_uncached(x, t, emb, mask)
    assert model.grow(cfg.depth + 2) is model and model.config.depth == len(model.blocks) == cfg.depth + 2
    assert torch.equal(model.forward_uncached(x, t, emb, mask), before)
    assert torch.equal(model(x, t, model.prepare_text(emb, mask)), before)
    new = model.blocks[cfg.depth]
    assert new.attn1.query.weight.abs().sum() > 0 and new.mlp[2].weight.abs().sum() == 0
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    torch.nn.functional.cross_entropy(model.forward_uncached(x, t, emb, mask),
                                      torch.randint(0, cfg.num_classes, (3, cfg.seq_len))).backward()
    opt.step()
    assert all(layer.weight.abs().sum() > 0 for layer in (new.attn1.proj, new.attn2.proj, new.mlp[2]))
    assert not torch.equal(model.forward_uncached(x, t, emb, mask), before)
    # the grown model saves and loads as a plain model of the new depth
    again = DenoisingTransformer(TransformerConfig.from_dict(model.config.to_dict()))
    again.load_state_dict(model.state_dict())
    with pytest.raises(ValueError, match="below the model's"):
        model.grow(1)


def test_sdpa_matches_bruteforce_attention(setup):
    cfg, model, x, t, emb, mask = setup
    blk = model.blocks[0]
    h = torch.randn(3, cfg.seq_len, cfg.width)
    H, hd = cfg.heads, cfg.width // cfg.heads

    def split(z):
        return z.view(z.shape[0], z.shape[1], H, hd).transpose(1, 2)

    def merge(z):
        return z.transpose(1, 2).reshape(z.shape[0], z.shape[2], cfg.width)

    # self-attention
    a = blk.attn1
    q, k, v = split(a.query(h)), split(a.key(h)), split(a.value(h))
    att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd), -1)
    ref = a.proj(merge(att @ v))
    assert torch.allclose(a(h), ref, atol=1e-5)
    # masked cross-attention
    c = blk.attn2
    q, k, v = split(c.query(h)), split(c.key(emb)), split(c.value(emb))
    scores = q @ k.transpose(-1, -2) / math.sqrt(hd)
    scores = scores.masked_fill(~mask[:, None, None, :], float("-inf"))
    ref = c.proj(merge(torch.softmax(scores, -1) @ v))
    assert torch.allclose(c(h, c.text_kv(emb), mask), ref, atol=1e-5)
    # AdaLayerNorm formula
    ln = blk.ln1
    s, sh = ln.linear(torch.nn.functional.silu(ln.emb(t))).chunk(2, -1)
    mu, var = h.mean(-1, keepdim=True), h.var(-1, unbiased=False, keepdim=True)
    ref = (h - mu) / torch.sqrt(var + 1e-5) * (1 + s[:, None]) + sh[:, None]
    assert torch.allclose(ln(h, t), ref, atol=1e-5)


def test_cpu_training_attention_runs_in_float32_under_bf16_autocast():
    """Training under CPU bf16 autocast, the attention itself (not the projections) is float32:
    its output and its gradients match float32 attention over the same bf16 inputs, which a bf16
    kernel misses by ~1e-2; outside training autocast keeps its bf16 choice."""
    from generation.transformer import _attention

    torch.manual_seed(0)
    shape = (2, 3, 40, 16)
    q, k, v = (torch.randn(shape).bfloat16().requires_grad_() for _ in range(3))
    mask = torch.rand(2, 1, 1, 40) > 0.3
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = _attention(q, k, v, mask)
    assert y.dtype == torch.bfloat16
    y.float().pow(2).sum().backward()
    got = [z.grad.clone() for z in (q, k, v)]
    q32, k32, v32 = (z.detach().float().requires_grad_() for z in (q, k, v))
    ref = torch.nn.functional.scaled_dot_product_attention(q32, k32, v32, attn_mask=mask)
    assert torch.equal(y, ref.bfloat16())
    ref.bfloat16().float().pow(2).sum().backward()
    for g, z in zip(got, (q32, k32, v32)):
        assert (g.float() - z.grad).abs().max() <= 0.01 * z.grad.abs().max()  # bf16 rounding of the grads only
    bf16_kernel = torch.nn.functional.scaled_dot_product_attention(q.detach(), k.detach(), v.detach(), attn_mask=mask)
    assert not torch.equal(bf16_kernel, y)  # the bf16 kernel would have given something else
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(_attention(q, k, v, mask), bf16_kernel)


def test_presets_and_parameter_count():
    for name in ("tiny", "demo", "demo32", "cub", "ithq"):
        assert TransformerConfig.preset(name).width % TransformerConfig.preset(name).heads == 0
    cfg = PRESETS["tiny"]
    model = DenoisingTransformer(cfg)
    W, K, T, D = cfg.width, cfg.num_classes, cfg.diffusion_steps, cfg.text_dim
    per_block = (
        2 * (T * W + W * 2 * W + 2 * W)  # two AdaLayerNorms
        + 4 * (W * W + W)  # self-attention
        + 2 * (W * W + W) + 2 * (D * W + W)  # cross-attention
        + 2 * W  # ln2
        + (W * 4 * W + 4 * W) + (4 * W * W + W)  # mlp
    )
    expected = (K + 1 + cfg.h + cfg.w) * W + cfg.depth * per_block + 2 * W + W * K + K
    assert model.num_parameters() == expected == count_parameters(model)
    with pytest.raises(ValueError):
        TransformerConfig(width=65, heads=4)
    assert TransformerConfig.from_dict(cfg.to_dict()) == cfg


def test_official_key_mapping():
    cfg = TransformerConfig.preset("tiny", activation="gelu2")
    model = DenoisingTransformer(cfg)
    official = {"transformer.transformer." + k: v for k, v in model.state_dict().items()}
    official["transformer.condition_emb.foo"] = torch.zeros(1)
    official["transformer.transformer.condition_emb.bar"] = torch.zeros(1)
    mapped = map_official_state_dict(official)
    assert set(mapped) == set(model.state_dict())
    model.load_state_dict(mapped, strict=True)
