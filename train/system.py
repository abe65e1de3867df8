"""The whole CSVR network as one module, assembled from the model components (paper Fig. 1).

`CSVRModel` owns every network of the three branches under fixed attribute names, grouped into
"module groups" that stages train, checkpoints record and fine-tuning loads:

- context branch: `vnet` (V-Network), `inet` (I-Network R2D-10), `head_v` (g^V), `head_i` (g^I)
- pose branch: `pose_gen` (G_p; its encoder is the pose encoder), `pose_disc` (D_p)
- video branch: `motion_align` (conv + MLP aligning f_d to C), `integration` (AdaIN or concat),
  `video_gen_r`, `video_gen_p` (G_v^r, G_v^p), `video_disc_r`, `video_disc_p` (D_v^r, D_v^p)

It holds no training logic beyond computing features; losses and updates live in `train.steps`.
"""

from __future__ import annotations

import torch
from torch import nn

from csvr.train.config import ModelConfig
from csvr.train.models.backbones import build_backbone
from csvr.train.models.context import MLPHead
from csvr.train.models.integration import build_integration
from csvr.train.models.pose import MotionAligner, PoseDiscriminator, PoseGenerator
from csvr.train.models.video_gen import VideoDiscriminator, VideoGenerator

GROUPS = ("vnet", "inet", "head_v", "head_i", "pose_gen", "pose_disc", "motion_align", "integration",
          "video_gen_r", "video_gen_p", "video_disc_r", "video_disc_p")
DISCRIMINATORS = ("pose_disc", "video_disc_r", "video_disc_p")

# Which groups each pretraining stage updates (the rest are frozen or unused in that stage).
STAGE_GROUPS: dict[str, tuple[str, ...]] = {
    "pose": ("pose_gen", "pose_disc"),
    "context": ("vnet", "inet", "head_v", "head_i"),
    "video": ("motion_align", "integration", "video_gen_r", "video_gen_p", "video_disc_r", "video_disc_p"),
    "joint": GROUPS,
}
# The networks of each video target (Table V switches one off: its networks are then not trained).
TARGET_GROUPS: dict[str, tuple[str, ...]] = {"reconstruct": ("video_gen_r", "video_disc_r"),
                                             "predict": ("video_gen_p", "video_disc_p")}


def stage_groups(stage: str, video_targets: list[str] | tuple[str, ...] = ("reconstruct", "predict"),
                 condition: str = "features") -> tuple[str, ...]:
    """The groups `stage` trains: STAGE_GROUPS without the networks of switched-off video targets (and,
    for a video stage driven by noise, without `motion_align` / `integration`, which then make no f_i),
    so that every group listed gets a gradient in every step."""
    off = {g for t, gs in TARGET_GROUPS.items() if t not in video_targets for g in gs}
    if stage == "video" and condition == "noise":
        off |= {"motion_align", "integration"}
    return tuple(g for g in STAGE_GROUPS[stage] if g not in off)

JOINTS = 17


def _opt(cfg: ModelConfig, key: str, default):
    return cfg.options.get(key, default)


KNOWN_OPTIONS = ("pose_hidden", "pose_decoder_layers", "pose_disc_layers", "feature_layer", "head_hidden",
                 "gen_channels", "gen_min_channels", "frame_latent", "disc_width", "gamma_offset")


class CSVRModel(nn.Module):
    """Every CSVR network (see module docstring); built from a `ModelConfig` and the clip lengths."""

    def __init__(self, cfg: ModelConfig, frames: int, future_frames: int):
        super().__init__()
        unknown = sorted(set(cfg.options) - set(KNOWN_OPTIONS))
        if unknown:
            raise ValueError(f"model.options: unknown key(s) {unknown}; known: {list(KNOWN_OPTIONS)}")
        self.cfg = cfg
        self.frames, self.future_frames = frames, future_frames
        w = cfg.width
        c = cfg.embed_dim
        self.vnet = build_backbone(cfg.backbone, width=w)
        self.inet = build_backbone(cfg.inet, width=w)
        head_hidden = int(_opt(cfg, "head_hidden", 512))
        self.head_v = MLPHead(self.vnet.feature_dim, c, hidden=head_hidden)
        self.head_i = MLPHead(self.inet.feature_dim, c, hidden=head_hidden)
        pose_hidden = int(_opt(cfg, "pose_hidden", max(8, round(128 * w))))
        self.pose_gen = PoseGenerator(joints=JOINTS, in_frames=frames, out_frames=future_frames, hidden=pose_hidden,
                                      num_layers=cfg.pose_layers,
                                      decoder_layers=int(_opt(cfg, "pose_decoder_layers", 3)),
                                      noise_dim=cfg.noise_dim, feature_layer=_opt(cfg, "feature_layer", None))
        self.pose_disc = PoseDiscriminator(joints=JOINTS, hidden=pose_hidden,
                                           num_layers=int(_opt(cfg, "pose_disc_layers", 4)))
        self.motion_align = MotionAligner(pose_hidden, c, hidden=head_hidden)
        self.integration = build_integration(cfg.integration, c, gamma_offset=float(_opt(cfg, "gamma_offset", 1.0)))
        gen_kw = dict(cond_dim=c, size=cfg.video_size, noise_dim=cfg.noise_dim,
                      frame_latent=int(_opt(cfg, "frame_latent", 64)),
                      channels=int(_opt(cfg, "gen_channels", max(16, round(256 * w)))),
                      min_channels=int(_opt(cfg, "gen_min_channels", max(8, round(32 * w)))))
        self.video_gen_r = VideoGenerator(frames=frames, **gen_kw)
        self.video_gen_p = VideoGenerator(frames=future_frames, **gen_kw)
        disc_width = int(_opt(cfg, "disc_width", max(4, round(32 * w))))
        self.video_disc_r = VideoDiscriminator(width=disc_width)
        self.video_disc_p = VideoDiscriminator(width=disc_width)

    # ----------------------------------------------------------------------------------- groups
    def groups(self, names: tuple[str, ...] | list[str] = GROUPS) -> dict[str, nn.Module]:
        """Named module groups (see module docstring)."""
        return {n: getattr(self, n) for n in names}

    def group_state(self, names: tuple[str, ...] | list[str]) -> dict[str, torch.Tensor]:
        """State dict restricted to the given groups (keys keep their `group.` prefix)."""
        prefixes = tuple(f"{n}." for n in names)
        return {k: v for k, v in self.state_dict().items() if k.startswith(prefixes)}

    # ---------------------------------------------------------------------------------- features
    def video_embedding(self, clip: torch.Tensor) -> torch.Tensor:
        """x* = g^V(pool(V-Network(clip))): the static context feature f_s, (B, C)."""
        return self.head_v(self.vnet.forward_pooled(clip))

    def iframe_embeddings(self, iframes: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """z* = g^I(pool(I-Network(I-frame))) for every valid I-frame; (B, K, C), zeros where masked."""
        b, k = iframes.shape[:2]
        flat_mask = mask.reshape(-1)
        valid = iframes.reshape(b * k, *iframes.shape[2:])[flat_mask]
        emb = self.head_i(self.inet.forward_pooled(valid))
        out = emb.new_zeros(b * k, emb.shape[-1])
        out = out.index_copy(0, flat_mask.nonzero().squeeze(1), emb)
        return out.view(b, k, -1)

    def motion_feature(self, feats: list[torch.Tensor]) -> torch.Tensor:
        """f_d from the pose encoder's per-layer features (the configured feature layer)."""
        return self.motion_align(feats[self.pose_gen.feature_layer - 1])

    def pose_features(self, poses: torch.Tensor) -> torch.Tensor:
        """f_d directly from current poses (B, T, 17, 2)."""
        return self.motion_align(self.pose_gen.motion_feature_map(poses))

    def integrate(self, f_s: torch.Tensor, f_d: torch.Tensor) -> torch.Tensor:
        """f_i from f_s and f_d (Eqs. 3-5, or the concat ablation)."""
        return self.integration(f_s, f_d)


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
