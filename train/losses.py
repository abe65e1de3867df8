"""CSVR losses as pure functions of tensors (no module state). Equation numbers are the paper's.

Context matching: :func:`mi_infonce` (Eq. 2), :func:`infonce` (Eq. 10), :func:`context_l2` (Table IV
ablation) and :func:`select_iframe` (one random I-frame per clip for the two ablations).
Pose prediction: :func:`pose_l2` (the L2 term of Eq. 1, visibility-masked).
Video generation: :func:`video_l2` (the pixel term of Eqs. 6-7).
GANs: :func:`d_adv_loss`, :func:`g_adv_loss` for ``kind`` in :data:`GAN_KINDS` and
:func:`gradient_penalty` (WGAN-GP, the last term of Eq. 1). The branch totals (Eqs. 1, 8) and the joint
objective (Eq. 9) are assembled where they are trained, in :mod:`train.steps`.

Adversarial formulation. Eqs. 1, 6, 7 are written with log D, but the paper trains the pose GAN with
the WGAN-GP penalty, which only makes sense for a Wasserstein critic; so ``"wgan"`` (critic scores,
L_D = E[D(fake)] - E[D(real)] (+ GP), L_G = -E[D(fake)]) is the default for every GAN here.
``"nonsaturating"`` (the log D form of the equations, on logits) and ``"hinge"`` are available; see
``docs/models.md`` and :mod:`train.osgan` for which of them the one-stage update supports exactly.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

__all__ = [
    "GAN_KINDS",
    "mi_infonce",
    "infonce",
    "context_l2",
    "select_iframe",
    "pose_l2",
    "video_l2",
    "d_adv_loss",
    "g_adv_loss",
    "d_fake_per_sample",
    "g_fake_per_sample",
    "gradient_penalty",
]

GAN_KINDS = ("wgan", "nonsaturating", "hinge")


# ------------------------------------------------------------------------------ context matching
def mi_infonce(
    video_emb: torch.Tensor,
    iframe_emb: torch.Tensor,
    iframe_mask: torch.Tensor | None = None,
    temperature: float = 0.07,
    video_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """Multi-instance InfoNCE (Eq. 2).

    video_emb (B, C) are the clips' x*; iframe_emb (B, K, C) the I-frames' z*; iframe_mask (B, K) marks
    real (non-padding) I-frames. For clip i the positives are its own valid I-frames and the negatives
    the valid I-frames of every other clip in the batch; similarities are cosines / temperature:
    loss_i = -log( sum_pos exp(s) / (sum_pos exp(s) + sum_neg exp(s)) ), averaged over the B clips.
    ``video_ids`` (B,) optionally drops I-frames of *other clips of the same video* from the negatives
    (they are not negatives, but not this clip's positives either).
    """
    if video_emb.dim() != 2 or iframe_emb.dim() != 3 or iframe_emb.shape[0] != video_emb.shape[0]:
        raise ValueError(
            f"mi_infonce expects video_emb (B, C) and iframe_emb (B, K, C), got {tuple(video_emb.shape)} "
            f"and {tuple(iframe_emb.shape)}"
        )
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    b, k, c = iframe_emb.shape
    if iframe_mask is None:
        iframe_mask = torch.ones(b, k, dtype=torch.bool, device=iframe_emb.device)
    iframe_mask = iframe_mask.bool()
    if not bool(iframe_mask.any(dim=1).all()):
        bad = (~iframe_mask.any(dim=1)).nonzero().flatten().tolist()
        raise ValueError(f"mi_infonce: clips {bad} have no valid I-frame (every clip needs a positive)")
    x = F.normalize(video_emb, dim=1)
    z = F.normalize(iframe_emb, dim=2).reshape(b * k, c)
    logits = x @ z.t() / temperature  # (B, B*K)
    owner = torch.arange(b, device=x.device).repeat_interleave(k)  # clip owning each I-frame
    valid = iframe_mask.reshape(b * k)[None, :]
    same = owner[None, :] == torch.arange(b, device=x.device)[:, None]
    pos = same & valid
    neg = ~same & valid
    if video_ids is not None:
        vid_owner = video_ids[owner]
        neg = neg & (vid_owner[None, :] != video_ids[:, None])
    neg_inf = torch.finfo(logits.dtype).min
    log_num = torch.logsumexp(logits.masked_fill(~pos, neg_inf), dim=1)
    log_den = torch.logsumexp(logits.masked_fill(~(pos | neg), neg_inf), dim=1)
    return (log_den - log_num).mean()


def infonce(video_emb: torch.Tensor, iframe_emb: torch.Tensor, temperature: float = 0.07) -> torch.Tensor:
    """InfoNCE with one positive per clip (Eq. 10): video_emb (B, C), iframe_emb (B, C) (row i is clip
    i's positive, the other rows its negatives); cross-entropy over cosine/temperature logits."""
    if video_emb.shape != iframe_emb.shape or video_emb.dim() != 2:
        raise ValueError(f"infonce expects two (B, C) tensors, got {tuple(video_emb.shape)}, {tuple(iframe_emb.shape)}")
    logits = F.normalize(video_emb, dim=1) @ F.normalize(iframe_emb, dim=1).t() / temperature
    return F.cross_entropy(logits, torch.arange(len(logits), device=logits.device))


def context_l2(video_emb: torch.Tensor, iframe_emb: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """L2 ablation of Table IV: mean over clips of ||x* - z*||^2 (on unit vectors when ``normalize``)."""
    if normalize:
        video_emb, iframe_emb = F.normalize(video_emb, dim=1), F.normalize(iframe_emb, dim=1)
    return (video_emb - iframe_emb).pow(2).sum(dim=1).mean()


def select_iframe(
    iframe_emb: torch.Tensor, iframe_mask: torch.Tensor | None = None, generator: torch.Generator | None = None
) -> torch.Tensor:
    """One uniformly random valid I-frame per clip: (B, K, C) -> (B, C) (for Eq. 10 and the L2 ablation)."""
    b, k, _ = iframe_emb.shape
    if iframe_mask is None:
        iframe_mask = torch.ones(b, k, dtype=torch.bool, device=iframe_emb.device)
    if not bool(iframe_mask.any(dim=1).all()):
        raise ValueError("select_iframe: a clip has no valid I-frame")
    weights = iframe_mask.float()
    idx = torch.multinomial(weights.cpu(), 1, generator=generator).squeeze(1).to(iframe_emb.device)
    return iframe_emb[torch.arange(b, device=iframe_emb.device), idx]


# ------------------------------------------------------------------------------ reconstruction
def pose_l2(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """L2 term of Eq. 1: (1/T') sum_t ||p_t - p'_t||^2, averaged over the batch.

    pred, target (B, T', J, 2); mask (B, T', J) bool/float = joint observed in the target. Unobserved
    joints contribute nothing (their target is unknown); no renormalisation, as in the paper's sum.
    """
    if pred.shape != target.shape or pred.dim() != 4:
        raise ValueError(f"pose_l2: pred {tuple(pred.shape)} and target {tuple(target.shape)} must be (B, T', J, 2)")
    err = (pred - target).pow(2).sum(dim=-1)  # (B, T', J)
    if mask is not None:
        if mask.shape != err.shape:
            raise ValueError(f"pose_l2: mask shape {tuple(mask.shape)} != {tuple(err.shape)}")
        err = err * mask.to(err.dtype)
    return err.sum(dim=2).mean()


def video_l2(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Pixel term of Eqs. 6-7: (1/THW) sum ||v_t(h,w) - g_t(h,w)||^2 (squared norm over RGB), batch mean."""
    if pred.shape != target.shape or pred.dim() != 5:
        raise ValueError(f"video_l2: pred {tuple(pred.shape)} and target {tuple(target.shape)} must be (B, 3, T, H, W)")
    return (pred - target).pow(2).sum(dim=1).mean()


# ------------------------------------------------------------------------------ adversarial
def _check_kind(kind: str) -> None:
    if kind not in GAN_KINDS:
        raise ValueError(f"unknown GAN loss {kind!r}; known: {GAN_KINDS}")


def d_fake_per_sample(fake_scores: torch.Tensor, kind: str = "wgan") -> torch.Tensor:
    """The discriminator's per-sample loss on fakes (its batch mean is the fake part of L_D)."""
    _check_kind(kind)
    if kind == "wgan":
        return fake_scores
    if kind == "nonsaturating":
        return F.softplus(fake_scores)  # -log(1 - sigmoid(y))
    return F.relu(1.0 + fake_scores)


def g_fake_per_sample(fake_scores: torch.Tensor, kind: str = "wgan") -> torch.Tensor:
    """The generator's per-sample adversarial loss (its batch mean is L_G)."""
    _check_kind(kind)
    if kind == "nonsaturating":
        return F.softplus(-fake_scores)  # -log sigmoid(y)
    return -fake_scores  # wgan and hinge


def d_adv_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor, kind: str = "wgan") -> torch.Tensor:
    """L_D (to minimise) from raw critic scores / logits."""
    _check_kind(kind)
    if kind == "wgan":
        real = -real_scores
    elif kind == "nonsaturating":
        real = F.softplus(-real_scores)
    else:
        real = F.relu(1.0 - real_scores)
    return real.mean() + d_fake_per_sample(fake_scores, kind).mean()


def g_adv_loss(fake_scores: torch.Tensor, kind: str = "wgan") -> torch.Tensor:
    """L_G (to minimise) from the critic's scores on generated samples."""
    return g_fake_per_sample(fake_scores, kind).mean()


def gradient_penalty(
    critic: Callable[[torch.Tensor], torch.Tensor],
    real: torch.Tensor,
    fake: torch.Tensor,
    eps: torch.Tensor | None = None,
) -> torch.Tensor:
    """WGAN-GP: E[(||grad_x D(x)||_2 - 1)^2] at x = eps * real + (1 - eps) * fake, eps ~ U(0, 1) per sample.

    ``critic`` maps a batch to scores (B,) (bind any condition, e.g. ``lambda x: D(x, current_poses)``).
    ``fake`` is detached, so the penalty only produces gradients for the critic's parameters. The graph
    is kept (create_graph) so the penalty itself can be backpropagated.
    """
    if real.shape != fake.shape:
        raise ValueError(f"gradient_penalty: real {tuple(real.shape)} and fake {tuple(fake.shape)} differ")
    if eps is None:
        eps = torch.rand(real.shape[0], device=real.device, dtype=real.dtype)
    eps = eps.reshape(-1, *([1] * (real.dim() - 1)))
    x = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)
    scores = critic(x)
    (grad,) = torch.autograd.grad(scores.sum(), x, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1).pow(2).mean()
