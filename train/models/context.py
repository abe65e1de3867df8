"""Context matching heads (paper Sec. III-C): two-layer MLPs g^V and g^I to a C-dimensional space.

x* = g^V(x_pool) is the static context feature f_s; z* = g^I(z_pool) embeds an I-frame. The loss
(MI-InfoNCE, Eq. 2) lives in :mod:`train.losses`.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["MLPHead"]


class MLPHead(nn.Module):
    """Linear -> [BatchNorm] -> ReLU -> Linear. Accepts (B, D) or (B, K, D) (K flattened for the BN)."""

    def __init__(self, in_dim: int, out_dim: int = 128, hidden: int = 512, batch_norm: bool = True):
        super().__init__()
        self.in_dim, self.out_dim = in_dim, out_dim
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden),
            nn.BatchNorm1d(hidden) if batch_norm else nn.Identity(),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, out_dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.in_dim:
            raise ValueError(f"MLPHead expects last dim {self.in_dim}, got shape {tuple(x.shape)}")
        lead = x.shape[:-1]
        return self.net(x.reshape(-1, self.in_dim)).reshape(*lead, self.out_dim)
