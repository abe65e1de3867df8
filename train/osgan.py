"""One-stage GAN update (OSGAN; Shen et al., "Training Generative Adversarial Networks in One Stage",
CVPR 2021; paper ref. [50]): generator and discriminator gradients from ONE backward pass.

Mechanism. The fake batch enters the discriminator through :class:`GradScale`, an identity in the
forward pass whose backward multiplies the gradient of sample i by a factor s_i. The single loss that is
backpropagated is ``L = w_D * L_D(real, fake) [+ GP] + (non-adversarial generator terms, e.g. L2)``.
Then D's parameters receive exactly dL_D/dtheta_D (the scaling sits upstream of D, on the G side), and
G's parameters receive, through sample i's D output y_i,

    s_i * w_D * dl_D(y_i)/dy_i * dy_i/dtheta_G,   with   s_i = (w_G * dl_G(y_i)/dy_i) / (w_D * dl_D(y_i)/dy_i),

i.e. exactly w_G * dL_G/dtheta_G, the generator's ordinary gradient (l_D, l_G: per-sample losses on the
fake score; L_D, L_G their batch means).

Supported exactly (a test checks the equality with the two-pass update on the same parameters):
- symmetric losses, L_G = -L_D on fakes (``"wgan"``): s_i = -w_G / w_D, a constant gradient reversal;
- asymmetric ``"nonsaturating"`` (the paper's log D form): s_i = -(w_G/w_D) * exp(-y_i), a per-sample
  factor, the OSGAN paper's scale for the asymmetric case; scores are clamped to [-30, 30] inside the
  factor only (beyond that float32 cannot represent dl_D/dy);
- ``"hinge"`` only while every fake score is > -1: where relu(1 + y) is flat the critic passes no
  gradient that could be rescaled, so :meth:`OneStageGAN.discriminator_loss` raises.
Requirements: the critic scores each sample independently (no batch norm across samples in D -- the
discriminators in :mod:`train.models` have none), and D's condition inputs carry no generator
gradient, or they are routed through :meth:`OneStageGAN.to_discriminator` as well.
Gradient penalty: computed by :func:`train.losses.gradient_penalty` on an interpolate built from the
*detached* fake batch, so it changes only D's gradient, exactly as in the two-pass update; just add it.
"Same batch" means both updates see the same, not yet updated, parameters (simultaneous update); the
two-pass alternation would evaluate G's step after D's step.
"""

from __future__ import annotations

import torch

from csvr.train.losses import GAN_KINDS, d_adv_loss, d_fake_per_sample, g_fake_per_sample

__all__ = ["GradScale", "OneStageGAN"]


class _ScaleHolder:
    """Mutable slot for the per-sample scale, filled after the critic ran (before backward)."""

    def __init__(self) -> None:
        self.scale: torch.Tensor | None = None


class GradScale(torch.autograd.Function):
    """Identity forward; backward multiplies sample i's gradient by ``holder.scale[i]``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, holder: _ScaleHolder) -> torch.Tensor:  # type: ignore[override]
        ctx.holder = holder
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        scale = ctx.holder.scale
        if scale is None:
            raise RuntimeError("OSGAN: backward reached GradScale before discriminator_loss() set the scale")
        scale = scale.to(grad.dtype).reshape(-1, *([1] * (grad.dim() - 1)))
        return grad * scale, None


class OneStageGAN:
    """Per-step helper: ``to_discriminator(fake)`` -> D -> ``discriminator_loss(real, fake)`` -> one backward.

    ``d_weight`` and ``g_weight`` are the weights of L_D and L_G in the caller's totals (e.g. sigma_p of
    Eq. 9 for both). Create one instance per GAN per step (the scale belongs to one forward pass).
    """

    def __init__(self, kind: str = "wgan", d_weight: float = 1.0, g_weight: float = 1.0):
        if kind not in GAN_KINDS:
            raise ValueError(f"unknown GAN loss {kind!r}; known: {GAN_KINDS}")
        if d_weight <= 0:
            raise ValueError(f"d_weight must be > 0, got {d_weight}")
        self.kind, self.d_weight, self.g_weight = kind, d_weight, g_weight
        self._holder = _ScaleHolder()

    def to_discriminator(self, fake: torch.Tensor) -> torch.Tensor:
        """Route a generator output (or a generator-dependent condition) into the critic."""
        return GradScale.apply(fake, self._holder)

    def scale_for(self, fake_scores: torch.Tensor) -> torch.Tensor:
        """s_i = (w_G dl_G/dy_i) / (w_D dl_D/dy_i) from the detached fake scores (B,)."""
        y = fake_scores.detach()
        if self.kind == "wgan":
            return torch.full_like(y, -self.g_weight / self.d_weight)
        if self.kind == "nonsaturating":
            return -(self.g_weight / self.d_weight) * torch.exp(-y.clamp(-30.0, 30.0))
        # generic per-sample ratio by autograd (hinge): fails where the critic's fake loss is flat
        leaf = y.clone().requires_grad_(True)
        (gd,) = torch.autograd.grad(d_fake_per_sample(leaf, self.kind).sum(), leaf)
        (gg,) = torch.autograd.grad(g_fake_per_sample(leaf, self.kind).sum(), leaf)
        flat = (gd == 0) & (gg != 0)
        if bool(flat.any()):
            raise ValueError(
                f"OSGAN cannot reproduce the {self.kind!r} generator gradient: {int(flat.sum())} fake score(s) lie "
                "where the critic's loss is flat (hinge: score <= -1); use 'wgan' or 'nonsaturating' or two passes"
            )
        return torch.where(gd == 0, torch.zeros_like(gd), (self.g_weight * gg) / (self.d_weight * gd))

    def discriminator_loss(self, real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
        """w_D * L_D(real, fake), and sets the scale for the backward pass. Add GP and G's other terms.

        A further factor applied to the returned loss scales both players' gradients alike (the ratio
        w_G / w_D is what the scale encodes).
        """
        if fake_scores.dim() != 1:
            raise ValueError(f"critic scores must be (B,), got {tuple(fake_scores.shape)}")
        self._holder.scale = self.scale_for(fake_scores)
        return self.d_weight * d_adv_loss(real_scores, fake_scores, self.kind)
