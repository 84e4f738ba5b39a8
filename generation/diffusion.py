"""Mask-and-replace discrete diffusion (VQ-Diffusion, Gu et al. 2022), with the sampling of
"Improved Vector Quantized Diffusion Models" (Tang et al. 2022). The reference posterior
`q_posterior` works in log space as the official code does; the training loss and the sampler
use `posterior_probs`, the same posterior in probability space in one pass (tested equal).

Tokens take K + 1 values: the K codes of the VQ-VAE and [MASK] = K. One forward step
keeps a code with alpha_t, replaces it by a uniformly drawn code with beta_t each (K beta_t
in all), or masks it with gamma_t; [MASK] stays [MASK]. Time is 0-based as in the official
code: x_t is the state after t + 1 steps, t = 0..T-1, and x_{-1} is x0.

Transition matrices of this form are closed under products, so any span s -> t has the
same shape with alpha_{s->t} = abar_t / abar_s and 1 - gamma_{s->t} = (1 - gbar_t) / (1 - gbar_s):
that gives q(x_t | x0) in closed form and the exact posterior q(x_s | x_t, x0) for any
s < t, which is what skipping steps needs.

The denoiser is any `denoise_fn(x_t [B, N] long, t [B] long) -> logits [B, K, N]`
predicting x0. With classifier-free guidance (guidance_scale != 1) it is called once
per step on a doubled batch [x_t; x_t] and must return the conditional logits for the
first B rows and the unconditional (null text) logits for the last B rows.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

LOG_ZERO = -70.0  # log-probability that stands for 0 (official VQ-Diffusion clamps to it)
EPS = 1e-30

DenoiseFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def alpha_schedule(T: int, K: int, att_1=0.99999, att_T=0.000009, ctt_1=0.000009, ctt_T=0.99999):
    """Official schedule: the cumulative keep (abar) and mask (gbar) probabilities move
    linearly from att_1 -> att_T and ctt_1 -> ctt_T; one-step values are their ratios."""
    att = torch.linspace(att_1, att_T, T, dtype=torch.float64)
    ctt = torch.linspace(ctt_1, ctt_T, T, dtype=torch.float64)
    att_prev = torch.cat([torch.ones(1, dtype=torch.float64), att[:-1]])
    ctt_prev = torch.cat([torch.zeros(1, dtype=torch.float64), ctt[:-1]])
    at = att / att_prev
    ct = 1 - (1 - ctt) / (1 - ctt_prev)
    bt = (1 - at - ct) / K
    btt = (1 - att - ctt) / K
    return at, bt, ct, att, btt, ctt


def log_onehot(x: torch.Tensor, num_classes: int) -> torch.Tensor:
    """[B, N] indices -> [B, C, N] log one-hot (LOG_ZERO off the index)."""
    onehot = F.one_hot(x, num_classes).permute(0, 2, 1).to(torch.float32)
    return torch.log(onehot.clamp(min=EPS)).clamp(min=LOG_ZERO)


def _log(x: torch.Tensor) -> torch.Tensor:
    return torch.log(x.clamp(min=EPS))


class MaskReplaceDiffusion(nn.Module):
    """The diffusion process, its training loss and its samplers (no learned parameters;
    the importance-sampling history is kept in buffers so checkpoints resume exactly).

    The schedule is held as float64 buffers named as in the official code (log_at, log_bt,
    log_ct, log_1_min_ct, log_cumprod_at/bt/ct, log_1_min_cumprod_ct; the cumulative ones
    have T + 1 entries, the last meaning "no step") plus plain alpha/beta/gamma and
    alpha_bar/beta_bar/gamma_bar of length T."""

    def __init__(self, num_classes: int, num_timesteps: int = 100, alpha_start: float = 0.99999,
                 alpha_end: float = 0.000009, gamma_start: float = 0.000009, gamma_end: float = 0.99999,
                 auxiliary_loss_weight: float = 5e-4, adaptive_auxiliary: bool = True,
                 mask_weight: Sequence[float] = (1.0, 1.0)):
        super().__init__()
        if num_classes < 2 or num_timesteps < 2:
            raise ValueError(f"need num_classes >= 2 and num_timesteps >= 2, got {num_classes}, {num_timesteps}")
        self.num_classes = K = int(num_classes)
        self.num_timesteps = T = int(num_timesteps)
        self.mask_id = K
        self.auxiliary_loss_weight = float(auxiliary_loss_weight)
        self.adaptive_auxiliary = bool(adaptive_auxiliary)
        self.mask_weight = (float(mask_weight[0]), float(mask_weight[1]))
        self.schedule = dict(alpha_start=alpha_start, alpha_end=alpha_end, gamma_start=gamma_start, gamma_end=gamma_end)
        at, bt, ct, att, btt, ctt = alpha_schedule(T, K, alpha_start, alpha_end, gamma_start, gamma_end)
        if (bt < 0).any() or (btt < 0).any() or (ct < 0).any() or (at > 1).any():
            raise ValueError(f"schedule alpha {alpha_start}->{alpha_end}, gamma {gamma_start}->{gamma_end} gives "
                             "probabilities outside [0, 1]; alpha must fall and gamma rise")
        # float64: beta_bar is 1 - alpha_bar - gamma_bar, a difference of nearly equal numbers;
        # in float32 it would be off by percents. Index T of the cumulative tensors stands for
        # "no step" (x_{-1} = x0), as in the official code. Non-persistent: they follow from the
        # config, so checkpoints hold only the importance-sampling history.
        one, zero = torch.ones(1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)
        cum_a, cum_b, cum_c = torch.cat([att, one]), torch.cat([btt, zero]), torch.cat([ctt, zero])
        schedule = dict(alpha=at, beta=bt, gamma=ct, alpha_bar=att, beta_bar=btt, gamma_bar=ctt,
                        cum_a=cum_a, cum_b=cum_b, cum_c=cum_c,
                        log_at=_log(at), log_bt=_log(bt), log_ct=_log(ct), log_1_min_ct=_log(1 - ct),
                        log_cumprod_at=_log(cum_a), log_cumprod_bt=_log(cum_b), log_cumprod_ct=_log(cum_c),
                        log_1_min_cumprod_ct=_log(1 - cum_c))
        for name, v in schedule.items():
            self.register_buffer(name, v, persistent=False)
        self.register_buffer("Lt_history", torch.zeros(T, dtype=torch.float64))
        self.register_buffer("Lt_count", torch.zeros(T, dtype=torch.float64))
        self._float64 = tuple(schedule) + ("Lt_history", "Lt_count")
        self._history_ready = False  # every t seen more than 10 times (counts only grow)

    def _apply(self, fn, *args, **kwargs):
        """`.to(device)` moves every buffer, but a dtype cast (`.half()`, `.float()`, `.to(bf16)`
        of a whole pipeline) must not round the schedule or the loss history: keep them float64."""
        exact = {name: getattr(self, name) for name in self._float64}
        super()._apply(fn, *args, **kwargs)
        for name, v in exact.items():
            setattr(self, name, v.to(getattr(self, name).device))
        return self

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        self._history_ready = False  # a loaded history may be younger: check it again

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, num_timesteps={self.num_timesteps}"

    def config(self) -> dict:
        return dict(num_classes=self.num_classes, num_timesteps=self.num_timesteps, **self.schedule,
                    auxiliary_loss_weight=self.auxiliary_loss_weight, adaptive_auxiliary=self.adaptive_auxiliary,
                    mask_weight=list(self.mask_weight))

    # ------------------------------------------------------------------ spans s -> t
    def _index(self, t: torch.Tensor) -> torch.Tensor:
        return torch.where(t < 0, torch.full_like(t, self.num_timesteps), t).to(self.cum_a.device)

    def _cum(self, t: torch.Tensor, dtype=torch.float32):
        """log abar, log bbar, log gbar, log(1 - gbar) after t + 1 steps ([B, 1, 1]); t = -1: none."""
        i = self._index(t)
        logs = (self.log_cumprod_at, self.log_cumprod_bt, self.log_cumprod_ct, self.log_1_min_cumprod_ct)
        return tuple(v[i].to(dtype).view(-1, 1, 1) for v in logs)

    def _span(self, s: torch.Tensor, t: torch.Tensor, dtype=torch.float32):
        """log alpha, beta, gamma of the multi-step transition x_s -> x_t (s < t), computed
        without subtracting nearly equal numbers (float64, then cast)."""
        i, j = self._index(s), self._index(t)
        omc_s = 1 - self.cum_c[i]
        a = self.cum_a[j] / self.cum_a[i]
        b = (self.cum_b[j] - a * self.cum_b[i]) / omc_s
        c = (self.cum_c[j] - self.cum_c[i]) / omc_s
        return tuple(_log(v.clamp(min=0)).to(dtype).view(-1, 1, 1) for v in (a, b, c))

    # ------------------------------------------------------------------ forward process
    def log_q_xt_given_x0(self, log_x0: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """log q(x_t | x0) for a distribution over x0 ([B, K+1, N] log probs)."""
        la, lb, lc, l1mc = self._cum(t, log_x0.dtype)
        real = torch.logaddexp(log_x0[:, :-1] + la, lb)
        mask = torch.logaddexp(log_x0[:, -1:] + l1mc, lc)
        return torch.cat([real, mask], dim=1).clamp(min=LOG_ZERO)

    def q_probs(self, x0: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
        """q(x_t | x0) as probabilities [B, K+1, N] for tokens x0 [B, N]."""
        t = self._as_t(t, x0)
        return self.log_q_xt_given_x0(log_onehot(x0, self.num_classes + 1), t).exp()

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor | int, generator=None) -> torch.Tensor:
        """Tokens after t + 1 noising steps: a code is kept with abar_t, masked with gbar_t and
        otherwise redrawn uniformly (so every code gets bbar_t, its own included); [MASK]
        stays. Two uniforms per token, not a Gumbel draw over all K + 1 classes."""
        t = self._as_t(t, x0)
        K = self.num_classes
        i = self._index(t)
        keep_below = self.cum_a[i].float().view(-1, 1).to(x0.device)     # u in [0, abar): kept
        mask_from = (1 - self.cum_c[i]).float().view(-1, 1).to(x0.device)  # u in [1 - gbar, 1): masked
        u = _rand((x0.shape[0], 2, x0.shape[1]), generator, x0.device)
        redrawn = (u[:, 1] * K).long().clamp(max=K - 1)
        xt = torch.where(u[:, 0] < keep_below, x0, redrawn)
        return torch.where((u[:, 0] >= mask_from) | (x0 == K), K, xt)

    def _as_t(self, t, x) -> torch.Tensor:
        t = torch.as_tensor(t, device=x.device, dtype=torch.long)
        return t.expand(x.shape[0]) if t.dim() == 0 else t

    # ------------------------------------------------------------------ posterior
    def q_posterior(self, log_x0: torch.Tensor, log_xt: torch.Tensor, t: torch.Tensor,
                    t_prev: torch.Tensor | None = None) -> torch.Tensor:
        """log E_{x0 ~ p}[q(x_s | x_t, x0)] with s = t_prev (default t - 1; -1 means x0).

        log_x0: [B, K+1, N] log-distribution over x0 (a one-hot for the true posterior, the
        model's prediction for p_theta); log_xt: [B, K+1, N] log one-hot of x_t.
        """
        t = self._as_t(t, log_xt)
        if t_prev is None:  # s = t - 1 needs no check, and a check reads the GPU (the training loss)
            s = t - 1
        else:
            s = self._as_t(t_prev, log_xt)
            if (s >= t).any() or (s < -1).any():
                raise ValueError(f"t_prev must be in [-1, t), got t_prev={s.tolist()} for t={t.tolist()}")
        K = self.num_classes
        xt = log_xt.argmax(dim=1)
        is_mask = (xt == K).unsqueeze(1)  # [B, 1, N]
        # q(x_t | x0) at the observed x_t, for every real x0
        la_t, lb_t, lc_t, _ = self._cum(t, log_xt.dtype)
        q_xt_x0 = torch.where(is_mask, lc_t.expand(-1, K, log_xt.shape[2]),
                              torch.logaddexp(log_xt[:, :-1] + la_t, lb_t))
        # w(x0) = p(x0) / q(x_t | x0), kept normalised (its sum is restored below)
        w = log_x0[:, :-1] - q_xt_x0
        w_sum = torch.logsumexp(w, dim=1, keepdim=True)
        w = torch.cat([w - w_sum, torch.full_like(w[:, :1], LOG_ZERO)], dim=1)
        # sum_x0 w(x0) q(x_s | x0), then times q(x_t | x_s) at the observed x_t
        ev = self.log_q_xt_given_x0(w, s)
        la, lb, lc = self._span(s, t, log_xt.dtype)
        one = torch.zeros_like(lc)
        step_real = torch.cat([torch.logaddexp(log_xt[:, :-1] + la, lb),
                               torch.full_like(log_xt[:, -1:], LOG_ZERO)], dim=1)  # x_t real: x_s can't be mask
        step_mask = torch.cat([lc.expand(-1, K, log_xt.shape[2]), one.expand(-1, 1, log_xt.shape[2])], dim=1)
        step = torch.where(is_mask, step_mask, step_real)
        log_post = ev + step + w_sum
        log_post = log_post - torch.logsumexp(log_post, dim=1, keepdim=True)
        return log_post.clamp(LOG_ZERO, 0)

    def posterior_probs(self, log_x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor,
                        t_prev: torch.Tensor) -> torch.Tensor:
        """Unnormalised p(x_s | x_t) for sampling and the training loss: `q_posterior` (up to
        a per-position constant) computed in probability space in one pass, without the
        log-space round trips. log_x0 [B, K+1, N], x_t tokens [B, N]; t_prev >= -1 (-1: x0).

        With abar/bbar/gbar after s and t steps and the s -> t span (a, b, c):
          x_t = [MASK]:  p(x_s = k) ~ (abar_s p0(k) + bbar_s) c,      p(x_s = MASK) ~ gbar_s
          x_t = j:       w(k) = p0(k) / (abar_t [k = j] + bbar_t),    W = sum_k w(k)
                         p(x_s = k) ~ (abar_s w(k) + bbar_s W) (a [k = j] + b),  p(MASK) = 0
        """
        return self._posterior_from_p0(log_x0[:, :-1].float().exp(), x_t, t, t_prev)

    def _posterior_from_p0(self, p0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor,
                           t_prev: torch.Tensor) -> torch.Tensor:
        """`posterior_probs` from probabilities p0 [B, K, N] over the real codes."""
        K = self.num_classes
        i_s, i_t = self._index(t_prev), self._index(t)
        A_s, B_s, C_s = (v[i_s].float().view(-1, 1, 1) for v in (self.cum_a, self.cum_b, self.cum_c))
        A_t, B_t = (v[i_t].float().view(-1, 1, 1) for v in (self.cum_a, self.cum_b))
        a, b, c = (v.exp() for v in self._span(t_prev, t))
        is_mask = (x_t == K).unsqueeze(1)                        # [B, 1, N]
        j = x_t.clamp(max=K - 1).unsqueeze(1)                    # the observed code (real columns)
        w = p0 / B_t
        w = w.scatter(1, j, p0.gather(1, j) / (A_t + B_t))
        w = torch.where(is_mask, p0, w)                          # [MASK]: q(x_t | x0) is the same for all x0
        num = A_s * w + B_s * w.sum(1, keepdim=True)
        post = num * torch.where(is_mask, c, b)
        post = post.scatter(1, j, torch.where(is_mask, post.gather(1, j), num.gather(1, j) * (a + b)))
        mask_row = torch.where(is_mask, C_s, torch.zeros_like(C_s))
        return torch.cat([post, mask_row.expand(-1, 1, post.shape[2])], dim=1)

    # ------------------------------------------------------------------ model
    def predict_start(self, denoise_fn: DenoiseFn, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """log p_theta(x0 | x_t) over K+1 classes ([MASK] gets LOG_ZERO)."""
        logits = denoise_fn(x_t, t)
        return self._logits_to_log_x0(logits, x_t)

    def _logits_to_log_x0(self, logits: torch.Tensor, x_t: torch.Tensor) -> torch.Tensor:
        B, N = x_t.shape
        if logits.shape != (B, self.num_classes, N):
            raise ValueError(f"denoiser returned {tuple(logits.shape)}, expected {(B, self.num_classes, N)}")
        log_pred = F.log_softmax(logits.float(), dim=1)  # float32 is enough (parity tests: 1e-4)
        log_pred = torch.cat([log_pred, torch.full_like(log_pred[:, :1], LOG_ZERO)], dim=1)
        return log_pred.clamp(LOG_ZERO, 0)

    # ------------------------------------------------------------------ training
    def sample_time(self, b: int, device, generator=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Importance sampling of t from the loss history (uniform until every t was seen 10 times)."""
        T = self.num_timesteps
        gdev = _draw_device(generator, device)
        if not self._history_ready:  # a check that waits for the GPU: done until it holds, then never again
            self._history_ready = bool((self.Lt_count > 10).all())
        if not self._history_ready:
            t = torch.randint(0, T, (b,), device=gdev, generator=generator).to(device)
            return t, torch.full((b,), 1.0 / T, device=device)
        lt = torch.sqrt(self.Lt_history + 1e-10) + 1e-4
        lt[0] = lt[1]  # the decoder term is on another scale: weigh t=0 like t=1
        pt_all = (lt / lt.sum()).to(device)
        t = torch.multinomial(pt_all.float().to(gdev), b, replacement=True, generator=generator).to(device)
        return t, pt_all.gather(0, t).float()

    @torch.no_grad()
    def _record(self, t: torch.Tensor, vb: torch.Tensor) -> None:
        """Running mean of the squared loss per t: what the importance sampler reads."""
        new = 0.1 * vb.double().pow(2) + 0.9 * self.Lt_history.gather(0, t)
        self.Lt_history.scatter_(0, t, new)
        self.Lt_count.scatter_add_(0, t, torch.ones_like(new))

    def loss(self, denoise_fn: DenoiseFn, x0: torch.Tensor, generator=None,
             update_history: bool = True) -> tuple[torch.Tensor, dict]:
        """The variational bound per token (KL between true and model posteriors, decoder NLL
        at t = 0) over importance-sampled t, plus the auxiliary x0 loss; returns (loss, stats).
        update_history=False (validation) leaves the importance-sampling history alone."""
        B, N = x0.shape
        K = self.num_classes
        t, pt = self.sample_time(B, x0.device, generator)
        xt = self.q_sample(x0, t, generator)
        log_x0_recon = self.predict_start(denoise_fn, xt, t)
        # both posteriors at s = t - 1 in probability space (posterior_probs): the log-space
        # q_posterior to float32 rounding (tested) in a third of the time, and on two cores these
        # [B, K+1, N] passes and their backward took twice the transformer's time
        s = t - 1
        model = self.posterior_probs(log_x0_recon, xt, t, s)
        log_model = _log(model / model.sum(1, keepdim=True))
        with torch.no_grad():
            onehot = torch.zeros(B, K, N, device=x0.device).scatter_(1, x0.unsqueeze(1), 1.0)
            true = self._posterior_from_p0(onehot, xt, t, s)
            true = true / true.sum(1, keepdim=True)
            neg_entropy = (true * _log(true)).sum(1)
        masked = (xt == K).float()
        weight = masked * self.mask_weight[0] + (1 - masked) * self.mask_weight[1]
        kl = ((neg_entropy - (true * log_model).sum(1)) * weight).sum(1)
        at_x0 = x0.unsqueeze(1)  # x0 is one-hot: its cross-entropies are one entry each
        decoder_nll = -log_model.gather(1, at_x0).squeeze(1).sum(1)
        is_t0 = (t == 0).float()
        vb = is_t0 * decoder_nll + (1 - is_t0) * kl
        if update_history:
            self._record(t, vb.detach())
        loss = vb / pt
        aux = torch.zeros_like(vb)
        if self.auxiliary_loss_weight:
            kl_aux = (-log_x0_recon.gather(1, at_x0).squeeze(1) * weight).sum(1)  # KL from a one-hot
            aux = is_t0 * decoder_nll + (1 - is_t0) * kl_aux
            scale = (1 - t.float() / self.num_timesteps) + 1.0 if self.adaptive_auxiliary else 1.0
            loss = loss + scale * self.auxiliary_loss_weight * aux / pt
        # stats stay tensors: reading one (float()) waits for the GPU, so the trainer reads
        # them only on the steps it logs
        with torch.no_grad():
            pred = log_x0_recon[:, :-1].argmax(1)
            m = masked.bool()
            acc_masked = ((pred == x0) & m).sum() / m.sum()  # nan when nothing is masked
            stats = {"vb": vb.mean() / N, "aux": aux.mean() / N, "t_mean": t.float().mean(),
                     "acc_masked": acc_masked.float()}
        return loss.sum() / (B * N), stats

    # ------------------------------------------------------------------ sampling
    def _sample(self, log_probs: torch.Tensor, generator=None) -> torch.Tensor:
        """Categorical draw over dim 1 with Gumbel noise; `generator` may be a list (one per row)."""
        u = _rand(log_probs.shape, generator, log_probs.device)
        gumbel = -torch.log(-torch.log(u + EPS) + EPS)
        return (gumbel + log_probs).argmax(dim=1)

    def _sample_probs(self, probs: torch.Tensor, generator=None) -> torch.Tensor:
        """The same draw as `_sample(log probs)`, from unnormalised probabilities: with
        E = -log u ~ Exp(1), argmax(p / E) = argmax(log p - log E), the Gumbel-max of log p
        (one log instead of three)."""
        u = _rand(probs.shape, generator, probs.device)
        return (probs / (-torch.log(u + EPS) + EPS)).argmax(dim=1)

    @staticmethod
    def truncate(log_x0: torch.Tensor, r: float) -> torch.Tensor:
        """Keep the smallest set of codes whose probability reaches r, renormalise (dim 1)."""
        if not r > 0:
            raise ValueError(f"truncation r must be in (0, 1], got {r}")
        if r >= 1.0:
            return log_x0
        # rank along a contiguous last dim (about 2x faster on CPU than along dim 1)
        sorted_lp = sort_descending(log_x0[:, :-1].transpose(1, 2).contiguous())
        p = sorted_lp.exp()
        mass = p.cumsum(dim=-1)
        n_keep = ((mass - p) < r).sum(-1, keepdim=True)  # mass ranked above < r; the top code always stays
        # keep every code at least as likely as the last kept one (exact ties at the cut all stay)
        floor = sorted_lp.gather(-1, n_keep - 1).transpose(1, 2)           # [B, 1, N]
        log_kept = mass.gather(-1, n_keep - 1).log().transpose(1, 2)    # renormalise by the kept mass
        return torch.where(log_x0 >= floor, log_x0 - log_kept, torch.full_like(log_x0, LOG_ZERO))

    def guided_log_x0(self, denoise_fn: DenoiseFn, x_t: torch.Tensor, t: torch.Tensor,
                      guidance_scale: float) -> torch.Tensor:
        """log p(x0 | x_t) with classifier-free guidance (Improved VQ-Diffusion):
        log p_u + s (log p_c - log p_u), renormalised over the real codes."""
        if guidance_scale == 1.0:
            return self.predict_start(denoise_fn, x_t, t)
        B, N = x_t.shape
        logits = denoise_fn(torch.cat([x_t, x_t]), torch.cat([t, t]))
        if logits.shape != (2 * B, self.num_classes, N):
            raise ValueError(f"denoiser returned {tuple(logits.shape)}, expected {(2 * B, self.num_classes, N)}")
        both = F.log_softmax(logits.float(), dim=1).clamp_(min=LOG_ZERO)
        cond, uncond = both[:B], both[B:]
        mixed = torch.lerp(uncond, cond, guidance_scale)  # uncond + s (cond - uncond)
        mixed = (mixed - torch.logsumexp(mixed, dim=1, keepdim=True)).clamp_(LOG_ZERO, 0)
        return torch.cat([mixed, mixed.new_full((B, 1, N), LOG_ZERO)], dim=1)

    def start_t_for_filter_ratio(self, filter_ratio: float) -> int:
        """Editing strength as in the official sampler: noise the input for
        int(T * filter_ratio) steps, i.e. start at 0-based t = int(T * filter_ratio) - 1."""
        start = int(self.num_timesteps * float(filter_ratio)) - 1
        if not 0 <= start < self.num_timesteps:
            raise ValueError(f"filter_ratio must be in [1/T, 1] = [{1 / self.num_timesteps:g}, 1], got {filter_ratio}")
        return start

    def timesteps(self, steps: int | None, start_t: int | None = None) -> list[int]:
        """The t visited by a sampler: `steps` values evenly spaced from start_t down to 0."""
        start = self.num_timesteps - 1 if start_t is None else int(start_t)
        if not 0 <= start < self.num_timesteps:
            raise ValueError(f"start_t must be in [0, {self.num_timesteps}), got {start_t}")
        steps = start + 1 if steps is None else int(steps)
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        steps = min(steps, start + 1)
        ts = torch.linspace(start, 0, steps, dtype=torch.float64).round().long().tolist()
        return list(dict.fromkeys(ts))  # rounding can repeat a value

    @torch.no_grad()
    def sample(self, denoise_fn: DenoiseFn, batch_size: int, num_tokens: int, steps: int | None = None,
               guidance_scale: float = 1.0, truncation: float = 1.0, purity: bool = False, generator=None,
               callback=None, x_init: torch.Tensor | None = None, start_t: int | None = None,
               inpaint_mask: torch.Tensor | None = None, device=None) -> torch.Tensor:
        """Tokens [B, N] in [0, K).

        steps: number of denoiser calls (None: every t, the full chain); t values are spread
            evenly and each jump uses the exact multi-step posterior.
        guidance_scale: classifier-free guidance s; when s != 1 denoise_fn is called once per
            step on a doubled batch [x_t; x_t] (2B rows) and must return [2B, K, N]: the
            conditional logits first, then the null-text ones (see `guided_log_x0`).
        truncation: keep the top-r probability mass of p(x0 | x_t) (1.0: off).
        purity: unmask first the masked positions whose x0 prediction is most certain; how many
            are unmasked per step follows the forward process (Improved VQ-Diffusion).
        x_init + start_t: editing, start from x_init noised to start_t (the filter ratio is
            (start_t + 1) / T). x_init + inpaint_mask (True = regenerate): positions outside
            the mask keep x_init's tokens at every step; by default the chain starts from
            all-[MASK] inside the mask.
        generator: a torch.Generator, or a list of B of them (each row then depends on its own).
        callback(step_index, t, x0_tokens): after every step, with the argmax x0 prediction.
        """
        K = self.num_classes
        device = device or self.cum_a.device
        if x_init is not None:
            x_init = x_init.to(device)
            if x_init.shape != (batch_size, num_tokens):
                raise ValueError(f"x_init must be [{batch_size}, {num_tokens}], got {tuple(x_init.shape)}")
        if inpaint_mask is not None:
            if x_init is None:
                raise ValueError("inpaint_mask needs x_init (the tokens to keep)")
            inpaint_mask = inpaint_mask.to(device=device, dtype=torch.bool)
            if inpaint_mask.shape != x_init.shape:
                raise ValueError(f"inpaint_mask must be {tuple(x_init.shape)}, got {tuple(inpaint_mask.shape)}")
        if start_t is not None and x_init is None:
            raise ValueError("start_t (editing) needs x_init")
        if x_init is not None and start_t is None and inpaint_mask is None:
            raise ValueError("x_init is used only with start_t (editing) or inpaint_mask; got neither")
        ts = self.timesteps(steps, start_t)
        if x_init is not None and start_t is not None:
            x = self.q_sample(x_init, torch.full((batch_size,), ts[0], device=device), generator)
        else:
            x = torch.full((batch_size, num_tokens), K, dtype=torch.long, device=device)
        if inpaint_mask is not None:
            x = torch.where(inpaint_mask, x, x_init)
        for i, t_val in enumerate(ts):
            s_val = ts[i + 1] if i + 1 < len(ts) else -1
            t = torch.full((batch_size,), t_val, dtype=torch.long, device=device)
            s = torch.full_like(t, s_val)
            log_x0 = self.guided_log_x0(denoise_fn, x, t, guidance_scale)
            log_x0 = self.truncate(log_x0, truncation)
            if s_val == -1 and not purity:
                # the last jump lands on x0 itself: p(x_-1 | x_t) is p(x0 | x_t), drawn over the
                # K real codes only (the same draw as the official code and diffusers)
                x = self._sample(log_x0[:, :-1], generator)
            elif purity:
                log_post = self.q_posterior(log_x0, log_onehot(x, K + 1), t, s)
                x = self._purity_step(x, log_x0, log_post, t, s, generator)
            else:
                x = self._sample_probs(self.posterior_probs(log_x0, x, t, s), generator)
            if inpaint_mask is not None:
                x = torch.where(inpaint_mask, x, x_init)
            if callback is not None:
                x0_pred = log_x0[:, :-1].argmax(1)
                if inpaint_mask is not None:  # previews show the kept tokens where they are known
                    x0_pred = torch.where(inpaint_mask, x0_pred, x_init)
                callback(i, t_val, x0_pred)
        return x

    def _purity_step(self, x, log_x0, log_post, t, s, generator):
        """Improved VQ-Diffusion purity prior: of the masked positions, reveal the most certain
        ones (max_k p(x0 = k)); as many as the forward process unmasks on average from t to s.

        Differences from the official `prior_rule=2`, on purpose: the official code draws the
        positions at random with probability proportional to purity and reveals a count from a
        hard-coded table per T; here the top ones are taken (deterministic order, the property
        the paper argues for) and the count follows gamma_bar, so it works for any T and any
        skip. Revealed tokens come from the exact posterior restricted to the real codes, and
        already-real tokens follow the posterior as in the plain sampler."""
        K = self.num_classes
        masked = x == K
        # unmasked positions follow the ordinary posterior (they cannot become [MASK])
        draw = self._sample(log_post, generator)
        # q(x_s = mask | x_t = mask, x0 real) = gbar_s / gbar_t, the same for every x0
        _, _, lc_s, _ = self._cum(s, torch.float64)
        _, _, lc_t, _ = self._cum(t, torch.float64)
        stay = (lc_s - lc_t).exp().view(-1).clamp(0, 1)
        n_masked = masked.sum(1)
        n_reveal = torch.round(n_masked.double() * (1 - stay.double())).long()
        purity = log_x0[:, :-1].max(dim=1).values.masked_fill(~masked, -math.inf)
        order = purity.argsort(dim=1, descending=True, stable=True)
        rank = torch.empty_like(order).scatter_(1, order, torch.arange(x.shape[1], device=x.device).expand_as(order))
        reveal = masked & (rank < n_reveal.unsqueeze(1))
        # a revealed token is drawn from the posterior restricted to the real codes
        real = self._sample(log_post[:, :-1], generator)
        out = torch.where(masked, torch.full_like(x, K), draw)
        return torch.where(reveal, real, out)


def sort_descending(x: torch.Tensor, use_numpy: bool | None = None) -> torch.Tensor:
    """Values of x sorted along the last dim, largest first. On CPU numpy's SIMD sort (values
    only) is about 10x faster than torch.sort, which always builds indices too."""
    if use_numpy is None:
        use_numpy = x.device.type == "cpu" and x.dtype == torch.float32 and not x.requires_grad
    if use_numpy:
        return -torch.from_numpy(np.sort(-x.numpy(), axis=-1))
    return x.sort(dim=-1, descending=True).values


def _draw_device(generator, device) -> torch.device:
    """Where a draw from `generator` must happen: torch samples only on the generator's own
    device (a CPU generator with CUDA tensors: draw on the CPU, then move)."""
    return generator.device if isinstance(generator, torch.Generator) else torch.device(device)


def _rand(shape, generator, device) -> torch.Tensor:
    if isinstance(generator, (list, tuple)):
        if len(generator) != shape[0]:
            raise ValueError(f"{len(generator)} generators for a batch of {shape[0]}")
        return torch.stack([torch.rand(shape[1:], generator=g, device=g.device).to(device) for g in generator])
    return torch.rand(shape, generator=generator, device=_draw_device(generator, device)).to(device)
