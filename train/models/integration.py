"""Feature integration layer (paper Sec. III-D, Eqs. 3-5, Fig. 2) and the concatenation ablation.

f_s, f_d and f_i are vectors of the context dimension C (the paper defines f_s in R^C). "Convolution"
on such a vector is a 1x1 convolution, i.e. a linear map over channels, which is what is used here:

    f_s_bar = BN(f_s)                       (Eq. 3, batch statistics, no affine parameters)
    gamma_d, beta_d = conv_g(f_d), conv_b(f_d)
    D = gamma_d * f_s_bar + beta_d          (Eq. 4)
    M = sigmoid(conv_m(f_s_bar))
    f_i = (1 - M) * D + M * f_s             (Eq. 5)

``gamma_offset=1`` (default) parametrises gamma_d = 1 + conv_g(f_d) so a fresh layer starts close to
the identity denormalisation (SPADE-style); set 0 for the literal form.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["AdaINIntegration", "ConcatIntegration", "build_integration"]


class AdaINIntegration(nn.Module):
    """Eqs. 3-5. ``forward(f_s, f_d)`` returns f_i; ``parts(...)`` also returns f_s_bar, gamma, beta, D, M."""

    kind = "adain"

    def __init__(self, dim: int = 128, motion_dim: int | None = None, gamma_offset: float = 1.0):
        super().__init__()
        motion_dim = dim if motion_dim is None else motion_dim
        self.dim, self.gamma_offset = dim, gamma_offset
        self.norm = nn.BatchNorm1d(dim, affine=False)
        self.to_gamma = nn.Linear(motion_dim, dim)
        self.to_beta = nn.Linear(motion_dim, dim)
        self.to_mask = nn.Linear(dim, dim)

    def parts(self, f_s: torch.Tensor, f_d: torch.Tensor) -> dict[str, torch.Tensor]:
        if f_s.dim() != 2 or f_s.shape[1] != self.dim:
            raise ValueError(f"f_s must be (B, {self.dim}), got {tuple(f_s.shape)}")
        if f_d.shape[0] != f_s.shape[0]:
            raise ValueError(f"batch mismatch: f_s {tuple(f_s.shape)} vs f_d {tuple(f_d.shape)}")
        f_s_bar = self.norm(f_s)
        gamma = self.gamma_offset + self.to_gamma(f_d)
        beta = self.to_beta(f_d)
        d = gamma * f_s_bar + beta
        m = torch.sigmoid(self.to_mask(f_s_bar))
        f_i = (1 - m) * d + m * f_s
        return {"f_s_bar": f_s_bar, "gamma": gamma, "beta": beta, "D": d, "M": m, "f_i": f_i}

    def forward(self, f_s: torch.Tensor, f_d: torch.Tensor) -> torch.Tensor:
        return self.parts(f_s, f_d)["f_i"]


class ConcatIntegration(nn.Module):
    """Table I ablation f_i(Concat): concatenate f_s and f_d, then a 1x1 convolution (linear) back to C."""

    kind = "concat"

    def __init__(self, dim: int = 128, motion_dim: int | None = None):
        super().__init__()
        motion_dim = dim if motion_dim is None else motion_dim
        self.dim = dim
        self.proj = nn.Linear(dim + motion_dim, dim)

    def forward(self, f_s: torch.Tensor, f_d: torch.Tensor) -> torch.Tensor:
        if f_s.dim() != 2 or f_s.shape[1] != self.dim:
            raise ValueError(f"f_s must be (B, {self.dim}), got {tuple(f_s.shape)}")
        return self.proj(torch.cat([f_s, f_d], dim=1))


def build_integration(kind: str, dim: int, motion_dim: int | None = None, gamma_offset: float = 1.0) -> nn.Module:
    """``"adain"`` (Eqs. 3-5; ``gamma_offset`` see :class:`AdaINIntegration`) or ``"concat"`` (Table I)."""
    if kind == "adain":
        return AdaINIntegration(dim, motion_dim, gamma_offset)
    if kind == "concat":
        return ConcatIntegration(dim, motion_dim)
    raise ValueError(f"unknown integration {kind!r}; use 'adain' or 'concat'")
