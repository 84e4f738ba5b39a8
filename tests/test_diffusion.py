"""Mask-and-replace diffusion against brute force: explicit (K+1)x(K+1) transition
matrices, Bayes' rule by hand, empirical marginals, and a tiny model that must learn."""

import math

import pytest
import torch
from torch import nn

from generation.diffusion import LOG_ZERO, MaskReplaceDiffusion, log_onehot


def official_schedule(T, K, att_1=0.99999, att_T=0.000009, ctt_1=0.000009, ctt_T=0.99999):
    """The official alpha_schedule, written out again from its definition (python floats)."""
    att = [1.0] + [att_1 + i / (T - 1) * (att_T - att_1) for i in range(T)]
    ctt = [0.0] + [ctt_1 + i / (T - 1) * (ctt_T - ctt_1) for i in range(T)]
    at = [att[i + 1] / att[i] for i in range(T)]
    ct = [1 - (1 - ctt[i + 1]) / (1 - ctt[i]) for i in range(T)]
    bt = [(1 - a - c) / K for a, c in zip(at, ct)]
    return at, bt, ct, att[1:], ctt[1:]


def test_schedule_is_the_official_one_in_log_buffers():
    K, T = 7, 100
    d = MaskReplaceDiffusion(K, T)
    at, bt, ct, att, ctt = (torch.tensor(v, dtype=torch.float64) for v in official_schedule(T, K))
    for name, want in dict(alpha=at, beta=bt, gamma=ct, alpha_bar=att, gamma_bar=ctt,
                           beta_bar=(1 - att - ctt) / K).items():
        assert torch.allclose(getattr(d, name), want, rtol=1e-9, atol=1e-15), name
    assert math.isclose(d.alpha_bar[0], 0.99999) and math.isclose(d.alpha_bar[-1], 0.000009)
    assert math.isclose(d.gamma_bar[0], 0.000009) and math.isclose(d.gamma_bar[-1], 0.99999)
    assert torch.allclose(d.log_at, at.log()) and torch.allclose(d.log_bt, bt.log())
    assert torch.allclose(d.log_ct, ct.log()) and torch.allclose(d.log_1_min_ct, (1 - ct).log())
    # cumulative ones have an extra last entry: "no step yet" (abar = 1, bbar = gbar = 0)
    assert torch.allclose(d.log_cumprod_at[:T], att.log()) and d.log_cumprod_at[T] == 0
    assert torch.allclose(d.log_cumprod_ct[:T], ctt.log()) and d.log_cumprod_ct[T] < -60
    assert torch.allclose(d.log_1_min_cumprod_ct[:T], (1 - ctt).log()) and d.log_1_min_cumprod_ct[T] == 0
    assert set(d.state_dict()) == {"Lt_history", "Lt_count"}  # the schedule follows from the config


def test_dtype_casts_keep_the_schedule_and_history_in_float64():
    d = MaskReplaceDiffusion(5, 10)
    d.Lt_history += torch.linspace(0.1, 1, 10, dtype=torch.float64) / 3
    ref = MaskReplaceDiffusion(5, 10)
    history = d.Lt_history.clone()
    d.half()
    d.to(torch.bfloat16)
    assert d.beta_bar.dtype == torch.float64 and torch.equal(d.beta_bar, ref.beta_bar)
    assert torch.equal(d.log_cumprod_bt, ref.log_cumprod_bt) and torch.equal(d.Lt_history, history)


def one_step_matrix(d: MaskReplaceDiffusion, t: int) -> torch.Tensor:
    """Q[i, j] = q(x_t = j | x_{t-1} = i), built from alpha/beta/gamma only."""
    K = d.num_classes
    a, b, c = (float(v[t]) for v in (d.alpha, d.beta, d.gamma))
    Q = torch.zeros(K + 1, K + 1, dtype=torch.float64)
    Q[:K, :K] = b
    Q[:K, :K] += torch.eye(K, dtype=torch.float64) * a
    Q[:K, K] = c
    Q[K, K] = 1.0
    return Q


def product(d, first: int, last: int) -> torch.Tensor:
    """q(x_last | x_{first-1}) = Q_first @ ... @ Q_last (identity when first > last)."""
    M = torch.eye(d.num_classes + 1, dtype=torch.float64)
    for k in range(first, last + 1):
        M = M @ one_step_matrix(d, k)
    return M


@pytest.mark.parametrize("K,T", [(4, 8), (5, 10), (6, 12)])
def test_cumulative_terms_equal_products_of_one_step_matrices(K, T):
    d = MaskReplaceDiffusion(K, T).double()
    for t in range(T):
        M = product(d, 0, t)
        assert torch.allclose(M[0, 0], d.alpha_bar[t].double() + d.beta_bar[t].double(), atol=1e-6)
        assert torch.allclose(M[0, 1], d.beta_bar[t].double(), atol=1e-6)
        assert torch.allclose(M[0, K], d.gamma_bar[t].double(), atol=1e-6)
        x0 = torch.arange(K + 1).unsqueeze(0)
        probs = d.q_probs(x0, t)[0].double()  # [K+1 (x_t), K+1 (x0 positions)]
        assert torch.allclose(probs.T[:K], M[:K], atol=1e-5)


def bayes_posterior(d, p0: torch.Tensor, xt: int, t: int, s: int) -> torch.Tensor:
    """E_{x0~p0}[q(x_s | x_t, x0)] by Bayes' rule with explicit matrices; p0 over the K real codes."""
    K = d.num_classes
    to_t = product(d, s + 1, t)         # q(x_t | x_s)
    to_s = product(d, 0, s)             # q(x_s | x0); identity for s = -1
    out = torch.zeros(K + 1, dtype=torch.float64)
    for x0 in range(K):
        joint = to_s[x0, :] * to_t[:, xt]       # q(x_s = j, x_t | x0)
        out += p0[x0] * joint / joint.sum()
    return out


@pytest.mark.parametrize("K,T", [(4, 8), (5, 11), (6, 12)])
def test_posterior_equals_bayes_for_every_xt_and_every_step(K, T):
    torch.manual_seed(K * T)
    d = MaskReplaceDiffusion(K, T).double()
    p0 = torch.softmax(torch.randn(K, dtype=torch.float64) * 2, 0)
    log_x0 = torch.cat([p0.log(), torch.tensor([LOG_ZERO], dtype=torch.float64)]).view(1, K + 1, 1)
    for t in range(T):
        for xt in range(K + 1):
            log_xt = log_onehot(torch.tensor([[xt]]), K + 1).double()
            got = d.q_posterior(log_x0, log_xt, torch.tensor([t])).exp()[0, :, 0]
            want = bayes_posterior(d, p0, xt, t, t - 1)
            assert torch.allclose(got, want, atol=1e-5), (t, xt, got, want)


@pytest.mark.parametrize("s_from_t", [lambda t: t - 3, lambda t: -1, lambda t: t // 2])
def test_skip_step_posterior_equals_bayes_over_the_product_matrix(s_from_t):
    K, T = 5, 10
    torch.manual_seed(1)
    d = MaskReplaceDiffusion(K, T).double()
    p0 = torch.softmax(torch.randn(K, dtype=torch.float64), 0)
    log_x0 = torch.cat([p0.log(), torch.tensor([LOG_ZERO], dtype=torch.float64)]).view(1, K + 1, 1)
    for t in range(1, T):
        s = max(-1, s_from_t(t))
        if s >= t:
            continue
        for xt in range(K + 1):
            log_xt = log_onehot(torch.tensor([[xt]]), K + 1).double()
            got = d.q_posterior(log_x0, log_xt, torch.tensor([t]), torch.tensor([s])).exp()[0, :, 0]
            assert torch.allclose(got, bayes_posterior(d, p0, xt, t, s), atol=1e-5), (t, s, xt)


@pytest.mark.parametrize("K,T", [(5, 10), (40, 100)])
def test_fused_sampling_posterior_equals_q_posterior(K, T):
    """posterior_probs (probability space, what the sampler draws from and the training loss
    uses) against the log-space q_posterior, for mask and real x_t, one-step and skipping
    jumps, and jumps to x0 (t_prev = -1)."""
    torch.manual_seed(K)
    d = MaskReplaceDiffusion(K, T)
    B, N = 3, 50
    log_x0 = torch.log_softmax(torch.randn(B, K, N) * 4, dim=1).clamp(min=LOG_ZERO)
    log_x0 = torch.cat([log_x0, torch.full((B, 1, N), LOG_ZERO)], dim=1)
    x_t = torch.randint(0, K + 1, (B, N))
    x_t[:, :10] = K
    for t, s in [(1, 0), (T - 1, T - 2), (T // 2, T // 2 - 1), (T - 1, T // 3), (T // 2, 0), (3, 1), (0, -1),
                 (T // 2, -1)]:
        tt, ss = torch.full((B,), t), torch.full((B,), s)
        want = d.q_posterior(log_x0, log_onehot(x_t, K + 1), tt, ss).exp()
        post = d.posterior_probs(log_x0, x_t, tt, ss)
        got = post / post.sum(1, keepdim=True)
        assert (got - want).abs().max() < 1e-5, (t, s)


@pytest.mark.parametrize("use_numpy", [True, False], ids=["numpy-sort", "torch-sort"])
def test_truncation_keeps_exactly_what_a_per_position_brute_force_keeps(use_numpy, monkeypatch):
    """K = 300, peaked and flat rows, through both sorts (numpy on CPU, torch elsewhere)."""
    import generation.diffusion as diffusion

    real_sort = diffusion.sort_descending
    monkeypatch.setattr(diffusion, "sort_descending", lambda x: real_sort(x, use_numpy=use_numpy))
    K, N = 300, 20
    d = MaskReplaceDiffusion(K, 10)
    g = torch.Generator().manual_seed(0)
    for scale in (8.0, 0.5):  # peaked, flat
        lp = torch.log_softmax(torch.randn(2, K, N, generator=g) * scale, dim=1)
        log_x0 = torch.cat([lp, torch.full((2, 1, N), LOG_ZERO)], dim=1)
        out = d.truncate(log_x0, 0.8)
        for b in range(2):
            for n in range(N):
                p = lp[b, :, n].double().exp()
                order = p.argsort(descending=True)
                above = torch.cumsum(p[order], 0) - p[order]
                kept = set(order[above < 0.8].tolist())
                got = set((out[b, :K, n] > LOG_ZERO + 1).nonzero().flatten().tolist())
                assert got == kept, (scale, b, n)
                assert abs(out[b, :K, n].exp().sum() - 1) < 1e-5
        assert (out[:, K] == LOG_ZERO).all()


def test_drawing_from_probabilities_is_the_gumbel_max_draw_from_log_probabilities():
    d = MaskReplaceDiffusion(50, 10)
    g = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(4, 51, 200, generator=g) * 3, dim=1) * 7.0  # unnormalised is fine
    a = d._sample_probs(probs, torch.Generator().manual_seed(1))
    b = d._sample(probs.log(), torch.Generator().manual_seed(1))
    assert (a == b).float().mean() > 0.999
    # and it follows the distribution: empirical frequencies over many draws
    p = torch.tensor([0.5, 0.3, 0.15, 0.05])
    draws = d._sample_probs(p.view(1, 4, 1).expand(1, 4, 40000).clone(), torch.Generator().manual_seed(2))
    freq = torch.bincount(draws.flatten(), minlength=4).float() / 40000
    assert (freq - p).abs().max() < 0.01


def test_posterior_at_t0_is_the_x0_distribution():
    d = MaskReplaceDiffusion(4, 8)
    p0 = torch.tensor([0.1, 0.2, 0.3, 0.4])
    log_x0 = torch.cat([p0.log(), torch.tensor([LOG_ZERO])]).view(1, 5, 1)
    for xt in (0, 4):
        got = d.q_posterior(log_x0, log_onehot(torch.tensor([[xt]]), 5), torch.tensor([0])).exp()[0, :4, 0]
        assert torch.allclose(got, p0, atol=1e-5)


def test_q_sample_marginals_match_the_cumulative_matrix():
    K, T, n = 4, 8, 20000
    d = MaskReplaceDiffusion(K, T)
    g = torch.Generator().manual_seed(0)
    for start in (0, 2, K):  # K: [MASK] stays [MASK]
        x0 = torch.full((2, n), start)
        for t in (0, 3, 7):
            xt = d.q_sample(x0, torch.tensor([t, t]), generator=g).flatten()
            freq = torch.bincount(xt, minlength=K + 1).double() / (2 * n)
            want = product(d, 0, t)[start]
            assert (freq - want).abs().max() < 4 * math.sqrt(0.25 / (2 * n)), (start, t, freq, want)


def test_q_sample_replacement_draws_every_code_including_the_last():
    """A schedule where replacement is frequent (beta_bar large): each of the K codes, K - 1
    included, must come out with its cumulative-matrix share. If the redraw covered only
    K - 1 codes, the last codebook entry would never appear in noised training inputs."""
    K, n = 4, 20000
    d = MaskReplaceDiffusion(K, 8, alpha_end=0.2, gamma_end=0.4)
    g = torch.Generator().manual_seed(0)
    for start in (0, K - 1):
        x0 = torch.full((2, n), start)
        for t in (3, 7):
            xt = d.q_sample(x0, torch.tensor([t, t]), generator=g).flatten()
            freq = torch.bincount(xt, minlength=K + 1).double() / (2 * n)
            want = product(d, 0, t)[start]
            assert want[:K].min() > 0.04  # every code is drawn often enough to count
            assert (freq - want).abs().max() < 4 * math.sqrt(0.25 / (2 * n)), (start, t, freq, want)


class TableDenoiser(nn.Module):
    """An MLP over the whole one-hot grid and t: enough capacity to memorise a few grids."""

    def __init__(self, K, N, T, hidden=128):
        super().__init__()
        self.K, self.N = K, N
        self.time = nn.Embedding(T, hidden)
        self.inp = nn.Linear(N * (K + 1), hidden)
        self.out = nn.Sequential(nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, K * N))

    def forward(self, x_t, t):
        h = self.inp(torch.nn.functional.one_hot(x_t, self.K + 1).float().flatten(1)) + self.time(t)
        return self.out(h).view(-1, self.K, self.N)                  # [B, K, N]


def test_loss_is_finite_and_reaches_every_parameter():
    K, T, N = 6, 10, 9
    d = MaskReplaceDiffusion(K, T)
    net = TableDenoiser(K, N, T)
    loss, stats = d.loss(net, torch.randint(0, K, (8, N)), generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(loss) and loss > 0
    loss.backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert set(stats) >= {"vb", "aux", "t_mean", "acc_masked"}


def test_acc_masked_counts_only_masked_positions():
    """acc_masked (logged while training) is the x0 accuracy over [MASK] positions of x_t: a
    denoiser right everywhere except at masked positions scores 0, the converse scores 1.
    Counting unmasked positions too would report progress the model has not made."""
    K, T, N = 4, 6, 40
    d = MaskReplaceDiffusion(K, T)
    t = torch.full((4,), 3)
    d.sample_time = lambda b, device, generator=None: (t, torch.full((b,), 1.0 / T))
    x0 = torch.randint(0, K, (4, N), generator=torch.Generator().manual_seed(0))
    for right_on_masked, want in ((False, 0.0), (True, 1.0)):
        def fn(x_t, t_):
            masked = x_t == K
            wrong = (x0 + 1) % K
            target = torch.where(masked == right_on_masked, x0, wrong)
            return torch.nn.functional.one_hot(target, K).permute(0, 2, 1).float() * 20
        seen = []
        _, stats = d.loss(lambda x_t, t_: seen.append(x_t) or fn(x_t, t_), x0,
                          generator=torch.Generator().manual_seed(1))
        m = seen[0] == K
        assert 0 < int(m.sum()) < m.numel()  # both kinds of position are present
        assert float(stats["acc_masked"]) == want, right_on_masked


def onehot64(i, K):
    v = torch.zeros(K, dtype=torch.float64)
    v[i] = 1
    return v


@pytest.mark.parametrize("aux_weight,adaptive,mask_weight", [(0.0, True, (1.0, 1.0)), (0.3, True, (2.0, 0.5)),
                                                            (0.3, False, (1.0, 1.0))])
def test_loss_equals_brute_force_bound_aux_term_and_history(aux_weight, adaptive, mask_weight):
    K, T, N = 4, 6, 5
    d = MaskReplaceDiffusion(K, T, auxiliary_loss_weight=aux_weight, adaptive_auxiliary=adaptive,
                             mask_weight=mask_weight)
    t = torch.tensor([0, 1, 3, 5, 4, 2])
    pt = torch.tensor([0.1, 0.3, 0.2, 0.15, 0.05, 0.2])
    d.sample_time = lambda b, device, generator=None: (t, pt)  # fixed t, non-uniform pt
    logits = torch.randn(len(t), K, N, generator=torch.Generator().manual_seed(3)).requires_grad_()
    seen = []

    def fn(x_t, t_):
        seen.append((x_t.clone(), t_.clone()))
        return logits

    x0 = torch.randint(0, K, (len(t), N), generator=torch.Generator().manual_seed(4))
    loss, stats = d.loss(fn, x0, generator=torch.Generator().manual_seed(5))
    loss.backward()
    (xt, t_seen), = seen
    assert torch.equal(t_seen, t)
    # the same bound in float64 from Bayes' rule, with its own gradient for the logits'
    logits64 = logits.detach().double().requires_grad_()
    p = torch.softmax(logits64, 1)
    total, vbs = 0.0, []
    for b in range(len(t)):
        tb, vb, aux = int(t[b]), 0.0, 0.0
        for n in range(N):
            x0_, xt_ = int(x0[b, n]), int(xt[b, n])
            w = mask_weight[0] if xt_ == K else mask_weight[1]
            nll = -p[b, x0_, n].log()
            if tb == 0:  # decoder term: -log p_theta(x0 | x_0) = -log p(x0) itself
                vb, aux = vb + nll, aux + nll
                continue
            true = bayes_posterior(d, onehot64(x0_, K), xt_, tb, tb - 1)
            model = bayes_posterior(d, p[b, :, n], xt_, tb, tb - 1)
            keep = true > 0  # 0 log 0 = 0 (indexing, not where: where's other branch gives nan gradients)
            kl = (true[keep] * (true[keep] / model[keep]).log()).sum()
            vb, aux = vb + w * kl, aux + w * nll
        scale = (1 - tb / T) + 1 if adaptive else 1.0
        total += (vb + aux_weight * scale * aux) / float(pt[b])
        vbs.append(float(vb.detach()))
    want = total / (len(t) * N)
    got, want_value = float(loss.detach()), float(want.detach())
    assert math.isclose(got, want_value, rel_tol=1e-4), (got, want_value)
    want.backward()
    assert torch.allclose(logits.grad.double(), logits64.grad, rtol=1e-4, atol=1e-6), \
        (logits.grad.double() - logits64.grad).abs().max()
    assert math.isclose(stats["vb"], sum(vbs) / len(vbs) / N, rel_tol=1e-4)
    # importance-sampling history: running mean of the squared per-image bound, from 0
    want_hist = torch.zeros(T, dtype=torch.float64)
    want_hist[t] = 0.1 * torch.tensor(vbs, dtype=torch.float64) ** 2
    assert torch.allclose(d.Lt_history, want_hist, rtol=1e-4) and torch.equal(d.Lt_count, torch.ones(T, dtype=torch.float64))


def test_importance_sampling_of_t_follows_the_loss_history():
    T, n = 6, 40000
    d = MaskReplaceDiffusion(4, T)
    d.Lt_history.copy_(torch.tensor([9.0, 1.0, 4.0, 0.25, 16.0, 0.0], dtype=torch.float64))
    d.Lt_count.fill_(11)
    d.Lt_count[3] = 10  # one t seen only 10 times: still uniform, as official (count > 10)
    g = torch.Generator().manual_seed(0)
    t, pt = d.sample_time(n, "cpu", g)
    assert torch.allclose(pt, torch.full((n,), 1 / T))
    assert (torch.bincount(t, minlength=T) / n - 1 / T).abs().max() < 0.01
    d.Lt_count[3] = 11
    t, pt = d.sample_time(n, "cpu", g)
    w = torch.tensor([1.0, 1.0, 2.0, 0.5, 4.0, 1e-5], dtype=torch.float64) + 1e-4  # sqrt(history + 1e-10)
    want = w / w.sum()  # and t=0 (decoder term, another scale) weighted like t=1
    assert torch.allclose(pt.double(), want[t], rtol=1e-6)
    assert (torch.bincount(t, minlength=T) / n - want).abs().max() < 0.01
    assert (t == 5).sum() < 20  # (near) zero loss: (almost) never drawn


def test_tiny_model_overfits_and_sampling_reproduces_training_grids():
    torch.manual_seed(0)
    K, T, N = 8, 12, 9
    grids = torch.tensor([[0, 1, 2, 3, 4, 5, 6, 7, 0], [7, 7, 7, 1, 1, 1, 3, 3, 3], [2, 4, 6, 2, 4, 6, 2, 4, 6]])
    d = MaskReplaceDiffusion(K, T)
    net = TableDenoiser(K, N, T)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(1)
    losses = []
    for step in range(500):
        x0 = grids[torch.randint(0, 3, (32,), generator=g)]
        loss, _ = d.loss(net, x0, generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    # at init vs trained; what is left is the irreducible doubt of which grid, early in the chain
    first, last = sum(losses[:5]) / 5, sum(losses[-100:]) / 100
    assert last < first / 10, (first, last)
    assert (d.Lt_count > 10).all()  # importance sampling took over
    for kw in ({}, {"steps": 4}, {"steps": 4, "purity": True}):  # full chain, skip steps, purity
        samples = d.sample(net, 24, N, generator=torch.Generator().manual_seed(2), **kw)
        match = torch.stack([(samples == g_).float().mean(1) for g_ in grids])  # [grid, sample]
        best = match.max(0).values
        assert best.mean() > 0.9, (kw, best)
        assert set(match.argmax(0)[best == 1].tolist()) == {0, 1, 2}, kw  # every grid, not one mode


def constant_denoiser(logits_per_position):
    def fn(x_t, t):
        return logits_per_position.unsqueeze(0).expand(x_t.shape[0], -1, -1)
    return fn


def test_truncation_never_samples_outside_the_kept_mass():
    K, N = 6, 4
    d = MaskReplaceDiffusion(K, 10)
    p = torch.tensor([0.5, 0.3, 0.1, 0.05, 0.03, 0.02]).log()
    logits = p.view(K, 1).expand(K, N).clone()
    out = d.truncate(torch.cat([p, torch.tensor([LOG_ZERO])]).view(1, K + 1, 1), 0.75).exp()[0, :, 0]
    assert torch.allclose(out[:2], torch.tensor([0.5, 0.3]) / 0.8, atol=1e-6) and out[2:].max() < 1e-20
    # the smallest set reaching r: mass exactly r is enough (0.5 + 0.25 of 0.75), nothing more
    exact = torch.tensor([0.5, 0.25, 0.125, 0.0625, 0.03125, 0.03125]).log()
    out = d.truncate(torch.cat([exact, torch.tensor([LOG_ZERO])]).view(1, K + 1, 1), 0.75).exp()[0, :, 0]
    assert torch.allclose(out[:2], torch.tensor([2 / 3, 1 / 3]), atol=1e-6) and out[2:].max() < 1e-20
    x = d.sample(constant_denoiser(logits), 200, N, truncation=0.75, generator=torch.Generator().manual_seed(0))
    assert set(x.unique().tolist()) <= {0, 1} and len(x.unique()) == 2
    full = d.sample(constant_denoiser(logits), 200, N, generator=torch.Generator().manual_seed(0))
    assert len(full.unique()) > 2  # without truncation the tail shows up


def test_fast_sampling_visits_the_requested_steps():
    d = MaskReplaceDiffusion(5, 100)
    assert d.timesteps(None) == list(range(99, -1, -1))
    ts = d.timesteps(25)
    assert len(ts) == 25 and ts[0] == 99 and ts[-1] == 0 and ts == sorted(ts, reverse=True)
    calls = []
    logits = torch.zeros(5, 3)
    d.sample(lambda x, t: calls.append(int(t[0])) or logits.expand(x.shape[0], -1, -1), 2, 3, steps=10)
    assert calls == d.timesteps(10) and len(calls) == 10


def test_skip_step_timesteps_are_rounded_not_truncated():
    """25 steps over T = 100: t = round(99 - 99 i / 24), rounding halves to even as torch and
    Python do (82.5 -> 82, 16.5 -> 16). Truncating instead (94.875 -> 94) shifts every jump
    and would change a seed's image against earlier runs."""
    d = MaskReplaceDiffusion(5, 100)
    want = [round(99 - 99 * i / 24) for i in range(25)]
    assert d.timesteps(25)[:6] == [99, 95, 91, 87, 82, 78] == want[:6]
    assert d.timesteps(25) == want
    assert d.timesteps(4, start_t=10) == [10, 7, 3, 0]  # 10, 6.67, 3.33, 0


def test_guidance_formula_and_scale_one_is_unguided():
    K, N = 4, 2
    d = MaskReplaceDiffusion(K, 6)
    pc = torch.tensor([0.7, 0.1, 0.1, 0.1])
    pu = torch.tensor([0.25, 0.25, 0.25, 0.25])

    def fn(x_t, t):
        B = x_t.shape[0] // 2
        cond = pc.log().view(1, K, 1).expand(B, K, N)
        return torch.cat([cond, pu.log().view(1, K, 1).expand(B, K, N)])

    x = torch.full((1, N), K)
    t = torch.tensor([3])
    got = d.guided_log_x0(fn, x, t, 3.0).exp()[0, :K, 0]
    want = pu * (pc / pu) ** 3
    assert torch.allclose(got, want / want.sum(), atol=1e-6)
    single = d.guided_log_x0(lambda x_t, t_: pc.log().view(1, K, 1).expand(1, K, N), x, t, 1.0).exp()[0, :K, 0]
    assert torch.allclose(single, pc, atol=1e-6)
    # predict_start: log-softmax over the K codes, and [MASK] (never an x0) at the official -70
    logits = torch.randn(1, K, N)
    log_x0 = d.predict_start(lambda x_t, t_: logits, x, t)
    assert log_x0.shape == (1, K + 1, N) and torch.all(log_x0[:, K] == LOG_ZERO)
    assert torch.allclose(log_x0[:, :K], torch.log_softmax(logits, 1), atol=1e-6)


def test_guided_sampling_doubles_the_batch_once_and_equals_unguided_when_cond_is_null():
    K, N, T, B = 5, 6, 10, 3
    d = MaskReplaceDiffusion(K, T)
    net = TableDenoiser(K, N, T)  # a function of x_t and t, so the chain is not trivial
    calls = []

    def guided(x_t, t):
        calls.append(x_t.shape[0])
        assert torch.equal(x_t[:B], x_t[B:]) and torch.equal(t[:B], t[B:])
        return net(x_t, t)  # conditional half == null half

    plain = d.sample(net, B, N, generator=torch.Generator().manual_seed(7), truncation=0.9)
    for s in (1.0, 4.0):
        fn = guided if s != 1.0 else (lambda x, t: calls.append(x.shape[0]) or net(x, t))
        calls.clear()
        out = d.sample(fn, B, N, guidance_scale=s, generator=torch.Generator().manual_seed(7), truncation=0.9)
        assert torch.equal(out, plain), s
        assert calls == [B if s == 1.0 else 2 * B] * T  # one call per step, doubled batch when guided


def test_purity_unmasks_the_most_certain_positions_first():
    K, N, T = 4, 6, 10
    d = MaskReplaceDiffusion(K, T)
    certainty = torch.tensor([0.3, 2.0, 0.5, 4.0, 1.0, 3.0])  # sharper logits -> purer position
    logits = torch.zeros(K, N)
    logits[0] = certainty * 3
    seen = []

    def fn(x_t, t):
        seen.append(x_t.clone())
        return logits.expand(x_t.shape[0], -1, -1)

    d.sample(fn, 1, N, steps=4, purity=True, generator=torch.Generator().manual_seed(0))
    order = certainty.argsort(descending=True).tolist()  # 3, 5, 1, 4, 2, 0
    for x in seen[1:]:
        revealed = (x[0] != K).nonzero().flatten().tolist()
        assert sorted(revealed) == sorted(order[:len(revealed)]), (revealed, order)
    assert 0 < len((seen[1][0] != K).nonzero()) < N


def test_inpainting_never_changes_unmasked_tokens_and_editing_starts_midway():
    K, N = 5, 8
    d = MaskReplaceDiffusion(K, 20)
    x_init = torch.randint(0, K, (3, N), generator=torch.Generator().manual_seed(0))
    region = torch.zeros(3, N, dtype=torch.bool)
    region[:, 2:5] = True
    logits = torch.randn(K, N)
    steps = []
    out = d.sample(constant_denoiser(logits), 3, N, x_init=x_init, inpaint_mask=region,
                   callback=lambda i, t, x0: steps.append(t), generator=torch.Generator().manual_seed(1))
    assert torch.equal(out[~region], x_init[~region]) and (out < K).all()
    previews = []
    d.sample(constant_denoiser(logits), 3, N, x_init=x_init, inpaint_mask=region, start_t=9,
             callback=lambda i, t, x0: previews.append(x0), generator=torch.Generator().manual_seed(2))
    assert len(previews) == 10 and all(torch.equal(x0[~region], x_init[~region]) for x0 in previews)
    assert all(torch.equal(x0[region], logits.argmax(0).expand(3, -1)[region]) for x0 in previews)
    seen_t = []
    d.sample(lambda x, t: seen_t.append(int(t[0])) or logits.expand(x.shape[0], -1, -1), 3, N,
             x_init=x_init, start_t=7)
    assert seen_t == list(range(7, -1, -1))
    assert d.start_t_for_filter_ratio(0.4) == 7 and d.start_t_for_filter_ratio(1.0) == 19  # int(T r) - 1
    # editing from a midway t: the chain starts at q(x_7 | x_init), so most tokens survive
    # when the model agrees with x_init (alpha_bar_7 = 0.63, all kept positions stay real)
    agree = torch.full((K, N), -30.0).scatter(0, x_init[:1], 30.0)
    edited = d.sample(constant_denoiser(agree), 3, N, x_init=x_init[:1].expand(3, -1), start_t=7,
                      generator=torch.Generator().manual_seed(4))
    assert torch.equal(edited, x_init[:1].expand(3, -1))


def test_editing_noises_the_input_to_start_t():
    """Editing with strength (start_t = 19 of T = 20): x_init is noised to t = 19 before the
    chain, so with a denoiser that disagrees with x_init everywhere nearly every token changes
    (only about alpha_bar_19 of them could survive). Noising to the chain's last t instead
    would hand back the input almost unchanged."""
    K, N, B = 5, 64, 4
    d = MaskReplaceDiffusion(K, 20)
    x_init = torch.randint(0, K, (B, N), generator=torch.Generator().manual_seed(0))
    seen_t = []
    real_q_sample = d.q_sample
    d.q_sample = lambda x0, t, generator=None: seen_t.append(t.tolist()) or real_q_sample(x0, t, generator)
    wrong = torch.full((K, N), -30.0).scatter(0, ((x_init[0] + 1) % K).unsqueeze(0), 30.0)
    out = d.sample(constant_denoiser(wrong), B, N, x_init=x_init[:1].expand(B, -1), start_t=19, steps=5,
                   generator=torch.Generator().manual_seed(1))
    assert seen_t == [[19] * B]
    assert float(d.cum_a[19]) < 1e-3
    assert (out != x_init[:1]).float().mean() > 0.95


def test_same_generator_same_samples_and_rows_depend_on_their_own_generator():
    K, N = 6, 5
    d = MaskReplaceDiffusion(K, 10)
    logits = torch.randn(K, N)
    fn = constant_denoiser(logits)
    a = d.sample(fn, 4, N, generator=torch.Generator().manual_seed(3))
    b = d.sample(fn, 4, N, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    gens = lambda seeds: [torch.Generator().manual_seed(s) for s in seeds]  # noqa: E731
    batch = d.sample(fn, 3, N, generator=gens([10, 11, 12]))
    alone = d.sample(fn, 1, N, generator=gens([11]))
    assert torch.equal(batch[1:2], alone)


def test_importance_history_is_saved_and_restored_exactly():
    K, T, N = 5, 8, 4
    d = MaskReplaceDiffusion(K, T)
    net = TableDenoiser(K, N, T)
    g = torch.Generator().manual_seed(0)
    for _ in range(30):
        d.loss(net, torch.randint(0, K, (16, N), generator=g), generator=g)
    state = d.state_dict()
    assert set(state) == {"Lt_history", "Lt_count"}
    assert (d.Lt_count > 10).all()  # past the uniform phase: the history decides t
    e = MaskReplaceDiffusion(K, T)
    e.load_state_dict(state)
    assert torch.equal(e.Lt_history, d.Lt_history) and torch.equal(e.Lt_count, d.Lt_count)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert torch.equal(d.sample_time(64, "cpu", g1)[0], e.sample_time(64, "cpu", g2)[0])
    # resume: the same batches and seeds give bit-identical losses and histories afterwards
    x0 = torch.randint(0, K, (16, N), generator=g)
    for _ in range(3):
        la, _ = d.loss(net, x0, generator=g1)
        lb, _ = e.loss(net, x0, generator=g2)
        assert torch.equal(la, lb)
    assert torch.equal(e.Lt_history, d.Lt_history) and torch.equal(e.Lt_count, d.Lt_count)


def test_bad_arguments_are_named():
    d = MaskReplaceDiffusion(5, 10)
    fn = constant_denoiser(torch.zeros(5, 3))
    with pytest.raises(ValueError, match="inpaint_mask needs x_init"):
        d.sample(fn, 1, 3, inpaint_mask=torch.ones(1, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="start_t must be in"):
        d.sample(fn, 1, 3, x_init=torch.zeros(1, 3, dtype=torch.long), start_t=10)
    with pytest.raises(ValueError, match="x_init is used only with"):
        d.sample(fn, 1, 3, x_init=torch.zeros(1, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="truncation r must be in"):
        d.sample(fn, 1, 3, truncation=0.0)
    with pytest.raises(ValueError, match="filter_ratio must be in"):
        d.start_t_for_filter_ratio(0.05)
    with pytest.raises(ValueError, match="outside"):
        MaskReplaceDiffusion(5, 10, alpha_start=0.1, alpha_end=0.9)
    with pytest.raises(ValueError, match="denoiser returned"):
        d.sample(constant_denoiser(torch.zeros(4, 3)), 1, 3)
