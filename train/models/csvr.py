"""The assembled CSVR network (paper Fig. 1) and the fine-tuning classifier built from it.

:class:`CSVRModel` holds the three branches and exposes each feature as a method:

- context: V-Network (3D backbone) + g^V -> f_s = x* (B, C); I-Network (R2D-10) + g^I -> z* (B, K, C)
- pose: G_p (1D-CNN encoder/decoder) -> future poses; encoder feature -> :class:`MotionAligner` -> f_d (B, C)
- video: integration layer (AdaIN, or concat ablation) -> f_i (B, C) -> G_v^r (current clip) and G_v^p
  (future clip); critics D_p, D_v^r, D_v^p.

Losses are not computed here (see :mod:`train.losses`, :mod:`train.osgan`); the training loop decides
which parts run. :meth:`CSVRModel.build_downstream` returns the fine-tuning network of Sec. IV-B/Table I.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, fields

import torch
from torch import nn

from train.models.backbones import build_backbone
from train.models.context import MLPHead
from train.models.integration import build_integration
from train.models.pose import MotionAligner, PoseDiscriminator, PoseGenerator
from train.models.video_gen import VideoDiscriminator, VideoGenerator

__all__ = ["CSVRConfig", "CSVRModel", "DownstreamClassifier", "DOWNSTREAM_VARIANTS"]

DOWNSTREAM_VARIANTS = ("f_s", "f_d", "f_i", "adain", "concat")


@dataclass
class CSVRConfig:
    """Every architectural choice of the CSVR network (defaults: the paper's setting where it gives one)."""

    backbone: str = "r2plus1d_18"  # V-Network
    iframe_backbone: str = "r2d_10"  # I-Network
    embed_dim: int = 128  # C: size of f_s, f_d, f_i and of the contrastive space
    head_hidden: int = 512  # hidden width of g^V, g^I and the aligner MLP
    joints: int = 17
    clip_frames: int = 16  # T
    future_frames: int = 16  # T'
    pose_hidden: int = 128
    pose_layers: int = 6  # encoder conv layers of G_p (Table III: 2/4/6)
    pose_feature_layer: int | None = None  # encoder layer feeding f_d (None = last)
    pose_noise_dim: int = 16
    pose_disc_layers: int = 4
    integration: str = "adain"  # "adain" (Eqs. 3-5) or "concat" (Table I ablation)
    video_size: int = 64  # generated S x S (64 on CPU, 112 on GPU)
    video_frames: int | None = None  # generated frames (None = clip_frames)
    video_noise_dim: int = 64
    video_gen_channels: int = 256
    video_disc_width: int = 32

    def __post_init__(self) -> None:
        if self.integration not in ("adain", "concat"):
            raise ValueError(f"integration must be 'adain' or 'concat', got {self.integration!r}")
        if self.embed_dim < 1 or self.clip_frames < 1 or self.future_frames < 1:
            raise ValueError(f"embed_dim, clip_frames and future_frames must be >= 1: {self}")

    @classmethod
    def from_dict(cls, d: dict) -> "CSVRConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown CSVRConfig keys {unknown}; known: {sorted(known)}")
        return cls(**d)

    def to_dict(self) -> dict:
        return asdict(self)


class CSVRModel(nn.Module):
    """V-Network + g^V, I-Network + g^I, G_p/D_p + aligner, integration, G_v^r/D_v^r and G_v^p/D_v^p."""

    def __init__(self, config: CSVRConfig | None = None):
        super().__init__()
        cfg = config or CSVRConfig()
        self.config = cfg
        c = cfg.embed_dim
        self.v_net = build_backbone(cfg.backbone)
        self.i_net = build_backbone(cfg.iframe_backbone)
        self.g_v = MLPHead(self.v_net.feature_dim, c, cfg.head_hidden)
        self.g_i = MLPHead(self.i_net.feature_dim, c, cfg.head_hidden)
        self.pose_gen = PoseGenerator(
            cfg.joints, cfg.clip_frames, cfg.future_frames, cfg.pose_hidden, cfg.pose_layers,
            noise_dim=cfg.pose_noise_dim, feature_layer=cfg.pose_feature_layer,
        )
        self.pose_disc = PoseDiscriminator(cfg.joints, cfg.pose_hidden, cfg.pose_disc_layers)
        self.aligner = MotionAligner(cfg.pose_hidden, c, cfg.head_hidden)
        self.integration = build_integration(cfg.integration, c)
        frames = cfg.video_frames or cfg.clip_frames
        gen = dict(cond_dim=c, frames=frames, size=cfg.video_size, noise_dim=cfg.video_noise_dim, channels=cfg.video_gen_channels)
        self.video_gen_r = VideoGenerator(**gen)
        self.video_gen_p = VideoGenerator(**gen)
        self.video_disc_r = VideoDiscriminator(cfg.video_disc_width)
        self.video_disc_p = VideoDiscriminator(cfg.video_disc_width)

    # --- features -----------------------------------------------------------------------------
    def static_feature(self, clip: torch.Tensor) -> torch.Tensor:
        """f_s = x* = g^V(pool(V(clip))): (B, 3, T, H, W) -> (B, C)."""
        return self.g_v(self.v_net.forward_pooled(clip))

    def iframe_embedding(self, iframes: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """z* = g^I(pool(I(iframe))): (B, K, 3, H, W) -> (B, K, C).

        With ``mask`` (B, K) only valid I-frames go through the I-Network (padding would otherwise
        enter g^I's batch-norm statistics); padded slots are zeros (the loss masks them anyway).
        """
        if iframes.dim() != 5:
            raise ValueError(f"iframes must be (B, K, 3, H, W), got {tuple(iframes.shape)}")
        b, k = iframes.shape[:2]
        flat = iframes.flatten(0, 1)
        if mask is None:
            return self.g_i(self.i_net.forward_pooled(flat)).view(b, k, -1)
        if mask.shape != (b, k):
            raise ValueError(f"iframe mask must be ({b}, {k}), got {tuple(mask.shape)}")
        idx = mask.reshape(-1).nonzero().squeeze(1)
        emb = self.g_i(self.i_net.forward_pooled(flat[idx]))
        out = emb.new_zeros(b * k, emb.shape[-1]).index_copy(0, idx, emb)
        return out.view(b, k, -1)

    def predict_poses(self, pose: torch.Tensor, z: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """G_p: current poses (B, T, J, 2) -> (future poses (B, T', J, 2), f_d (B, C)) from one encoder pass."""
        future, feats = self.pose_gen(pose, z)
        f_d = self.aligner(feats[self.pose_gen.feature_layer - 1])
        return future, f_d

    def dynamic_feature(self, pose: torch.Tensor) -> torch.Tensor:
        """f_d = aligner(encoder feature of G_p): (B, T, J, 2) -> (B, C)."""
        return self.aligner(self.pose_gen.motion_feature_map(pose))

    def integrate(self, f_s: torch.Tensor, f_d: torch.Tensor) -> torch.Tensor:
        """f_i from the integration layer (Eqs. 3-5, or the concat ablation)."""
        return self.integration(f_s, f_d)

    def features(self, clip: torch.Tensor, pose: torch.Tensor) -> dict[str, torch.Tensor]:
        """f_s, f_d and f_i for a batch of clips and their current poses."""
        f_s = self.static_feature(clip)
        f_d = self.dynamic_feature(pose)
        return {"f_s": f_s, "f_d": f_d, "f_i": self.integrate(f_s, f_d)}

    def generate_videos(
        self, f_i: torch.Tensor, z_r: torch.Tensor | None = None, z_p: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(reconstructed current clip, predicted future clip), each (B, 3, T, S, S) in [-1, 1]."""
        return self.video_gen_r(f_i, z_r), self.video_gen_p(f_i, z_p)

    # --- groups for optimisers ------------------------------------------------------------------
    def discriminator_parameters(self) -> list[nn.Parameter]:
        """Parameters of D_p, D_v^r, D_v^p (everything else is on the generator/encoder side)."""
        return [*self.pose_disc.parameters(), *self.video_disc_r.parameters(), *self.video_disc_p.parameters()]

    def generator_parameters(self) -> list[nn.Parameter]:
        ids = {id(p) for p in self.discriminator_parameters()}
        return [p for p in self.parameters() if id(p) not in ids]

    # --- fine-tuning ----------------------------------------------------------------------------
    def build_downstream(self, num_classes: int, variant: str = "f_i", dropout: float = 0.3) -> "DownstreamClassifier":
        """The fine-tuning network: copies of the pretrained V-Network + g^V, pose encoder + aligner and
        integration layer (those the variant needs), then dropout + a fresh linear classifier.

        ``variant``: "f_s" (video only), "f_d" (poses only), "f_i" (the model's integration layer),
        "adain"/"concat" (like "f_i" but asserting the model's integration kind, Table I).
        """
        if variant not in DOWNSTREAM_VARIANTS:
            raise ValueError(f"unknown downstream variant {variant!r}; known: {DOWNSTREAM_VARIANTS}")
        if variant in ("adain", "concat") and variant != self.config.integration:
            raise ValueError(f"variant {variant!r} needs a model pretrained with integration={variant!r}, "
                             f"this one has {self.config.integration!r}")
        kind = "f_i" if variant in ("adain", "concat") else variant
        need_video, need_pose = kind in ("f_s", "f_i"), kind in ("f_d", "f_i")
        return DownstreamClassifier(
            kind,
            num_classes,
            dropout,
            self.config.embed_dim,
            v_net=copy.deepcopy(self.v_net) if need_video else None,
            g_v=copy.deepcopy(self.g_v) if need_video else None,
            pose_encoder=copy.deepcopy(self.pose_gen.encoder) if need_pose else None,
            feature_layer=self.pose_gen.feature_layer,
            aligner=copy.deepcopy(self.aligner) if need_pose else None,
            integration=copy.deepcopy(self.integration) if kind == "f_i" else None,
        )


class DownstreamClassifier(nn.Module):
    """Fine-tuning network: feature (f_s, f_d or f_i) -> dropout (0.3) -> linear. ``forward(clip, pose)``."""

    def __init__(
        self,
        kind: str,
        num_classes: int,
        dropout: float,
        embed_dim: int,
        *,
        v_net: nn.Module | None,
        g_v: nn.Module | None,
        pose_encoder: nn.Module | None,
        feature_layer: int,
        aligner: nn.Module | None,
        integration: nn.Module | None,
    ):
        super().__init__()
        self.kind, self.feature_layer = kind, feature_layer
        self.v_net, self.g_v = v_net, g_v
        self.pose_encoder, self.aligner, self.integration = pose_encoder, aligner, integration
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(embed_dim, num_classes)

    @property
    def needs_pose(self) -> bool:
        return self.kind in ("f_d", "f_i")

    @property
    def needs_clip(self) -> bool:
        return self.kind in ("f_s", "f_i")

    def feature(self, clip: torch.Tensor | None, pose: torch.Tensor | None) -> torch.Tensor:
        """The (B, C) representation before dropout + linear (also used for retrieval)."""
        if self.needs_clip and clip is None:
            raise ValueError(f"downstream variant {self.kind!r} needs the clip")
        if self.needs_pose and pose is None:
            raise ValueError(f"downstream variant {self.kind!r} needs the poses")
        f_s = self.g_v(self.v_net.forward_pooled(clip)) if self.needs_clip else None
        f_d = self.aligner(self.pose_encoder(pose)[self.feature_layer - 1]) if self.needs_pose else None
        if self.kind == "f_s":
            return f_s
        if self.kind == "f_d":
            return f_d
        return self.integration(f_s, f_d)

    def forward(self, clip: torch.Tensor | None = None, pose: torch.Tensor | None = None) -> torch.Tensor:
        return self.fc(self.dropout(self.feature(clip, pose)))
