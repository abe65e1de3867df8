"""Collaborative video generation (paper Sec. III-D, Eqs. 6-8): TGAN-v2-style conditional generators
and R3D-based video discriminators.

Generator (one for reconstruction G_v^r, one for prediction G_v^p): a temporal generator maps
[f_i, z_v] to T per-frame latents (linear to a (channels, T) sequence, then temporal 1D convs -- as in
TGAN/TGAN-v2, where a temporal generator feeds a per-frame image generator); the image generator maps
each [frame latent, f_i] to an S x S RGB frame (linear to a small map, then nearest-upsample + conv
blocks, tanh). S is configurable: the start size is S / 2^k with 4 <= start (S = 32, 64, 112, 128 ...).
TGAN-v2's multi-resolution sub-sampling (a memory trick for 256 px output) is not reproduced: at
<= 112 px a single-resolution renderer fits in memory.
Step tests (tests/test_video_branch.py; numbers in docs/models.md): on toy clips this generator
overfits a batch from f_i, depends on f_i and predicts the future; next to a WGAN-GP critic it needs
`loss.video_l2_weight` ~ 0.6 sqrt(3THW) (100 at 8 x 32 x 32), else the critic's gradient drowns L2.

Discriminator: a small 3D ResNet (R3D: stem + 4 stages of one 3x3x3 BasicBlock, widths c, 2c, 4c, 8c)
without batch norm (per-sample critic, needed for the gradient penalty and the exact OSGAN update),
global average pooling and a linear score.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["VideoGenerator", "VideoDiscriminator", "start_size"]


def start_size(size: int) -> tuple[int, int]:
    """(start, num_upsamplings) with start * 2**num = size and start >= 4; error for unsupported sizes."""
    if size < 8:
        raise ValueError(f"video size must be >= 8, got {size}")
    s, k = size, 0
    while s % 2 == 0 and s // 2 >= 4:
        s //= 2
        k += 1
    if s > 16:
        raise ValueError(f"video size {size} must be (4..16) x 2^k, e.g. 32, 64, 112, 128")
    return s, k


class VideoGenerator(nn.Module):
    """G_v(z | f_i) -> video (B, 3, T, S, S) in [-1, 1]."""

    def __init__(
        self,
        cond_dim: int = 128,
        frames: int = 16,
        size: int = 64,
        noise_dim: int = 64,
        frame_latent: int = 64,
        channels: int = 256,
        min_channels: int = 32,
    ):
        super().__init__()
        self.cond_dim, self.frames, self.size, self.noise_dim = cond_dim, frames, size, noise_dim
        self.start, ups = start_size(size)
        tch = 128
        self.temporal_in = nn.Linear(cond_dim + noise_dim, tch * frames)
        self.temporal = nn.Sequential(
            nn.LeakyReLU(0.2),
            nn.Conv1d(tch, tch, 3, padding=1),
            nn.BatchNorm1d(tch),
            nn.LeakyReLU(0.2),
            nn.Conv1d(tch, frame_latent, 3, padding=1),
        )
        self.tch = tch
        self.image_in = nn.Linear(frame_latent + cond_dim, channels * self.start * self.start)
        blocks: list[nn.Module] = [nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]
        c = channels
        for _ in range(ups):
            cout = max(min_channels, c // 2)
            blocks += [
                nn.Upsample(scale_factor=2, mode="nearest"),
                nn.Conv2d(c, cout, 3, padding=1),
                nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True),
            ]
            c = cout
        blocks += [nn.Conv2d(c, 3, 3, padding=1), nn.Tanh()]
        self.image = nn.Sequential(*blocks)
        self.channels = channels

    def sample_noise(self, batch: int, device: torch.device | None = None) -> torch.Tensor:
        return torch.randn(batch, self.noise_dim, device=device)

    def frame_latents(self, f_i: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Temporal generator: (B, T, frame_latent)."""
        h = self.temporal_in(torch.cat([f_i, z], dim=1)).view(-1, self.tch, self.frames)
        return self.temporal(h).transpose(1, 2)

    def forward(self, f_i: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        if f_i.dim() != 2 or f_i.shape[1] != self.cond_dim:
            raise ValueError(f"f_i must be (B, {self.cond_dim}), got {tuple(f_i.shape)}")
        b = f_i.shape[0]
        if z is None:
            z = self.sample_noise(b, f_i.device)
        lat = self.frame_latents(f_i, z)  # (B, T, L)
        cond = f_i[:, None, :].expand(-1, self.frames, -1)
        h = self.image_in(torch.cat([lat, cond], dim=2).reshape(b * self.frames, -1))
        img = self.image(h.view(b * self.frames, self.channels, self.start, self.start))
        return img.view(b, self.frames, 3, self.size, self.size).transpose(1, 2)


class _Block3d(nn.Module):
    """R3D BasicBlock without normalisation: two 3x3x3 convs + (strided 1x1x1) shortcut."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv3d(cin, cout, 3, stride=stride, padding=1)
        self.conv2 = nn.Conv3d(cout, cout, 3, padding=1)
        self.act = nn.LeakyReLU(0.2)
        self.short = nn.Identity() if (cin == cout and stride == 1) else nn.Conv3d(cin, cout, 1, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv2(self.act(self.conv1(x))) + self.short(x))


class VideoDiscriminator(nn.Module):
    """D_v: R3D-style critic on (B, 3, T, S, S) -> scores (B,)."""

    def __init__(self, width: int = 32):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv3d(3, width, (3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3)), nn.LeakyReLU(0.2))
        ws = [width, 2 * width, 4 * width, 8 * width]
        stages, cin = [], width
        for i, w in enumerate(ws):
            stages.append(_Block3d(cin, w, 1 if i == 0 else 2))
            cin = w
        self.stages = nn.Sequential(*stages)
        self.out = nn.Linear(cin, 1)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        if video.dim() != 5 or video.shape[1] != 3:
            raise ValueError(f"video must be (B, 3, T, H, W), got {tuple(video.shape)}")
        h = self.stages(self.stem(video))
        return self.out(h.flatten(2).mean(dim=2)).squeeze(1)
