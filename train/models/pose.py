"""Generative pose prediction branch (paper Sec. III-B, Eq. 1): a 1D-CNN conditional GAN over time.

Poses are (B, T, J, 2) normalised coordinates; the networks see them as 1D signals of 2J channels
over time (p_t in R^{2N}). The generator encodes the current T poses with ``num_layers`` temporal
convolutions, injects noise z_p (broadcast over time, concatenated as channels), and its decoder emits all
T' future poses at once (temporal convs, then a learned linear map from T to T' time steps). The
discriminator is conditioned on the current poses by reading the concatenated sequence [P_in, P_fut]
(B, 2J, T + T'), so it judges whether the future continues the given past. It has no batch norm, so
the WGAN-GP penalty and the one-stage (OSGAN) update stay exact per sample.

The dynamic motion feature f_d is taken from an encoder layer (the last by default; Table III compares
layers 2/4/6) and aligned to the context feature size by :class:`MotionAligner` (conv + MLP).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["PoseEncoder", "PoseGenerator", "PoseDiscriminator", "MotionAligner", "poses_to_channels"]


def poses_to_channels(poses: torch.Tensor) -> torch.Tensor:
    """(B, T, J, 2) -> (B, 2J, T)."""
    if poses.dim() != 4 or poses.shape[-1] != 2:
        raise ValueError(f"poses must be (B, T, J, 2), got shape {tuple(poses.shape)}")
    b, t, j, c = poses.shape
    return poses.reshape(b, t, j * c).transpose(1, 2)


def _channels_to_poses(x: torch.Tensor, joints: int) -> torch.Tensor:
    b, _, t = x.shape
    return x.transpose(1, 2).reshape(b, t, joints, 2)


class PoseEncoder(nn.Module):
    """``num_layers`` x [Conv1d(k=3) + BatchNorm + LeakyReLU] over time; returns every layer's output."""

    def __init__(self, joints: int = 17, hidden: int = 128, num_layers: int = 6, kernel_size: int = 3):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        self.joints, self.hidden, self.num_layers = joints, hidden, num_layers
        layers = []
        cin = 2 * joints
        for _ in range(num_layers):
            layers.append(
                nn.Sequential(
                    nn.Conv1d(cin, hidden, kernel_size, padding=kernel_size // 2),
                    nn.BatchNorm1d(hidden),
                    nn.LeakyReLU(0.2, inplace=True),
                )
            )
            cin = hidden
        self.layers = nn.ModuleList(layers)

    def forward(self, poses: torch.Tensor) -> list[torch.Tensor]:
        """Current poses (B, T, J, 2) -> list of ``num_layers`` feature maps (B, hidden, T)."""
        x = poses_to_channels(poses)
        if x.shape[1] != 2 * self.joints:
            raise ValueError(f"expected {self.joints} joints, got poses of shape {tuple(poses.shape)}")
        feats = []
        for layer in self.layers:
            x = layer(x)
            feats.append(x)
        return feats


class PoseGenerator(nn.Module):
    """G_p(z_p | P_in): encoder, noise injection, decoder emitting all T' future poses at once."""

    def __init__(
        self,
        joints: int = 17,
        in_frames: int = 16,
        out_frames: int = 16,
        hidden: int = 128,
        num_layers: int = 6,
        decoder_layers: int = 3,
        noise_dim: int = 16,
        feature_layer: int | None = None,
    ):
        super().__init__()
        self.joints, self.in_frames, self.out_frames, self.noise_dim = joints, in_frames, out_frames, noise_dim
        self.encoder = PoseEncoder(joints, hidden, num_layers)
        fl = num_layers if feature_layer is None else feature_layer
        if not 1 <= fl <= num_layers:
            raise ValueError(f"feature_layer must be in 1..{num_layers}, got {feature_layer}")
        self.feature_layer = fl  # 1-based index of the encoder layer that feeds f_d
        dec: list[nn.Module] = []
        cin = hidden + noise_dim
        for _ in range(decoder_layers):
            dec += [nn.Conv1d(cin, hidden, 3, padding=1), nn.BatchNorm1d(hidden), nn.LeakyReLU(0.2, inplace=True)]
            cin = hidden
        self.decoder = nn.Sequential(*dec)
        self.to_time = nn.Linear(in_frames, out_frames)  # all T' steps at once from the T-step feature
        self.to_pose = nn.Conv1d(hidden, 2 * joints, 1)

    def sample_noise(self, batch: int, device: torch.device | None = None) -> torch.Tensor:
        return torch.randn(batch, self.noise_dim, device=device)

    def forward(
        self, poses: torch.Tensor, z: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Returns predicted future poses (B, T', J, 2) and the encoder's per-layer features."""
        if poses.shape[1] != self.in_frames:
            raise ValueError(f"PoseGenerator built for {self.in_frames} input frames, got {poses.shape[1]}")
        feats = self.encoder(poses)
        h = feats[-1]
        if z is None:
            z = self.sample_noise(h.shape[0], h.device)
        h = torch.cat([h, z[:, :, None].expand(-1, -1, h.shape[2])], dim=1)
        h = self.decoder(h)
        h = self.to_time(h)  # (B, hidden, T')
        return _channels_to_poses(self.to_pose(h), self.joints), feats

    def motion_feature_map(self, poses: torch.Tensor) -> torch.Tensor:
        """The encoder feature that is the source of f_d: (B, hidden, T) at ``feature_layer``."""
        return self.encoder(poses)[self.feature_layer - 1]


class PoseDiscriminator(nn.Module):
    """D_p(P | P_in): temporal convs over [P_in, P] (B, 2J, T+T'), no normalisation, one score each."""

    def __init__(self, joints: int = 17, hidden: int = 128, num_layers: int = 4):
        super().__init__()
        self.joints = joints
        layers: list[nn.Module] = []
        cin = 2 * joints
        for i in range(num_layers):
            layers += [nn.Conv1d(cin, hidden, 3, stride=2 if i > 0 else 1, padding=1), nn.LeakyReLU(0.2)]
            cin = hidden
        self.net = nn.Sequential(*layers)
        self.out = nn.Linear(hidden, 1)

    def forward(self, future: torch.Tensor, current: torch.Tensor, future_mask: torch.Tensor | None = None) -> torch.Tensor:
        """future (B, T', J, 2), current (B, T, J, 2) -> critic scores (B,).

        ``future_mask`` (B, T', J): zero the joints unobserved in the real future before scoring, for real
        and generated sequences alike, so the critic cannot tell them apart by the estimator's gaps.
        """
        if future_mask is not None:
            future = future * future_mask[..., None].to(future.dtype)
        x = torch.cat([poses_to_channels(current), poses_to_channels(future)], dim=2)
        return self.out(self.net(x).mean(dim=2)).squeeze(1)


class MotionAligner(nn.Module):
    """Turn an encoder feature map (B, hidden, T) into f_d (B, out_dim): conv, temporal mean, 2-layer MLP."""

    def __init__(self, in_channels: int = 128, out_dim: int = 128, hidden: int = 512):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv1d(in_channels, in_channels, 3, padding=1), nn.BatchNorm1d(in_channels), nn.ReLU(inplace=True)
        )
        self.mlp = nn.Sequential(nn.Linear(in_channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out_dim))
        self.out_dim = out_dim

    def forward(self, feature_map: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.conv(feature_map).mean(dim=2))
