"""The named training steps of CSVR pretraining: `pose_step`, `context_step`, `video_step`, `joint_step`.

Each step takes the (possibly DDP-wrapped) `LossModule`, an augmented batch on the device, the
optimizer and a `StepContext`; it computes the stage's loss terms in one forward pass, refuses a
non-finite term before touching the weights, backpropagates once (the GANs use the one-stage OSGAN
update, so generator and discriminator share that single backward), optionally clips, steps the
optimizer and returns a dict of scalars: `loss/<term>` and `grad_norm/<group>`.

Loss terms (all logged, so GAN instabilities are visible):
- pose (Eq. 1): `pose_d` (critic loss), `pose_g` (generator adversarial loss), `pose_gp`, `pose_l2`,
  `pose_wdist` (mean real - fake critic score), `pose` (the backpropagated branch total)
- context (Eq. 2): `context` (MI-InfoNCE / InfoNCE / L2), `context_acc` (top-1 I-frame retrieval)
- video (Eqs. 6-8): `video_r_*`, `video_p_*` (d, g, gp, l2, wdist), `video` (Eq. 8)
- joint (Eq. 9): all of the above plus `total`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from csvr.train import losses as L
from csvr.train.config import LossConfig, ModelConfig
from csvr.train.distributed import gather_with_grad
from csvr.train.data import KINETICS_MEAN, KINETICS_STD
from csvr.train.osgan import OneStageGAN
from csvr.train.system import CSVRModel
from csvr.train.metrics_log import grad_norms

GAN_KIND = "wgan"


@dataclass
class StepContext:
    """What a step needs besides model, batch and optimizer."""

    loss: LossConfig
    model: ModelConfig
    groups: tuple[str, ...]                       # trainable module groups (for grad norms)
    check: Callable[[dict[str, torch.Tensor]], None]  # raises on a non-finite term (before any update)
    autocast: Callable[[], object]
    grad_clip: float | None = None
    frozen_features: bool = False                 # video stage: f_s / f_d from frozen encoders
    video_condition: str = "features"             # video stage: "features" (f_i) or "noise" (TGAN-v2, no L2)
    extras: dict = field(default_factory=dict)


# ------------------------------------------------------------------------------------- helpers
def video_target(clip: torch.Tensor, size: int) -> torch.Tensor:
    """A normalised clip (B, 3, T, H, W) -> the generators' target in [-1, 1] at size x size."""
    mean = torch.tensor(KINETICS_MEAN, device=clip.device, dtype=clip.dtype).view(1, 3, 1, 1, 1)
    std = torch.tensor(KINETICS_STD, device=clip.device, dtype=clip.dtype).view(1, 3, 1, 1, 1)
    x = (clip * std + mean).clamp(0, 1) * 2 - 1
    if x.shape[-1] != size or x.shape[-2] != size:
        b, c, t, h, w = x.shape
        x = F.interpolate(x.transpose(1, 2).reshape(b * t, c, h, w), size=(size, size), mode="bilinear",
                          align_corners=False, antialias=True).reshape(b, t, c, size, size).transpose(1, 2)
    return x


def _gan_terms(prefix: str, disc: nn.Module, fake: torch.Tensor, real: torch.Tensor, weight: float,
               cfg: LossConfig, cond: torch.Tensor | None, l2: torch.Tensor) -> dict[str, torch.Tensor]:
    """One conditional GAN's OSGAN terms; `<prefix>` is the backpropagated total (critic + GP + weighted L2)."""
    osgan = OneStageGAN(GAN_KIND, d_weight=weight, g_weight=weight * cfg.adv_weight)
    if cond is None:
        def critic(x):
            return disc(x)
    else:
        def critic(x):
            return disc(x, cond)
    fake_scores = critic(osgan.to_discriminator(fake))
    real_scores = critic(real)
    d_loss = osgan.discriminator_loss(real_scores, fake_scores)
    gp = L.gradient_penalty(critic, real, fake) if cfg.gp_weight > 0 else fake.new_zeros(())
    return {
        f"{prefix}_d": d_loss / weight,
        f"{prefix}_g": L.g_adv_loss(fake_scores.detach(), GAN_KIND),
        f"{prefix}_gp": gp,
        f"{prefix}_wdist": (real_scores.detach().mean() - fake_scores.detach().mean()),
        f"{prefix}_l2": l2,
        "_backward": d_loss + weight * (cfg.gp_weight * gp + cfg.drift_weight * real_scores.float().pow(2).mean()),
    }


class LossModule(nn.Module):
    """Wraps `CSVRModel` so that a whole stage's forward (all branches) is one `forward` call (DDP-safe)."""

    def __init__(self, net: CSVRModel):
        super().__init__()
        self.net = net
        self.stage = "joint"
        self.loss_cfg: LossConfig | None = None
        self.frozen_features = False
        self.video_condition = "features"

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        cfg = self.loss_cfg
        if self.stage == "pose":
            out, _ = pose_losses(self.net, batch, cfg, weight=1.0)
            out["_total"] = out.pop("_backward")
            return out
        if self.stage == "context":
            out, _ = context_losses(self.net, batch, cfg)
            out["_total"] = out["context"]
            return out
        if self.stage == "video" and self.video_condition == "noise":
            # TGAN-v2's unconditional GAN: Gaussian noise in f_i's place, critics only (no clip to match)
            clip = batch["clip"]
            f_i = torch.randn(clip.shape[0], self.net.cfg.embed_dim, device=clip.device)
            out = video_losses(self.net, batch, cfg, f_i=f_i, l2_weight=0.0)
            out["_total"] = out.pop("_backward")
            return out
        if self.stage == "video":
            # the encoders (V-Network + g^V, the pose encoder) are frozen here; motion_align, which maps
            # the pose encoder's features to f_d, is trained with the generators
            with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen_features):
                f_s = self.net.video_embedding(batch["clip"])
                pose_map = self.net.pose_gen.motion_feature_map(batch["pose"][..., :2])
            if self.frozen_features:
                f_s, pose_map = f_s.detach(), pose_map.detach()
            f_d = self.net.motion_align(pose_map)
            out = video_losses(self.net, batch, cfg, f_s, f_d)
            out["_total"] = out.pop("_backward")
            return out
        if self.stage == "joint":
            return joint_losses(self.net, batch, cfg)
        raise ValueError(f"unknown stage {self.stage!r}")


def pose_losses(net: CSVRModel, batch: dict, cfg: LossConfig, weight: float) -> tuple[dict, list[torch.Tensor]]:
    """Eq. 1 terms for G_p / D_p (weight = sigma_p in the joint stage); also the encoder features."""
    p_in = batch["pose"][..., :2]
    p_gt = batch["future_pose"][..., :2]
    gen, feats = net.pose_gen(p_in)
    mask = batch["future_pose_mask"]
    l2 = L.pose_l2(gen.float(), p_gt.float(), mask)
    # the critic sees real and generated futures with the same joints blanked (unobserved in the real
    # one), so missing-joint zeros cannot give the real sequences away
    keep = mask[..., None].to(gen.dtype)
    out = _gan_terms("pose", net.pose_disc, gen * keep, p_gt * keep, weight, cfg, p_in, l2)
    out["_backward"] = out["_backward"] + weight * cfg.pose_l2_weight * l2
    out["pose"] = (out["pose_d"] + cfg.gp_weight * out["pose_gp"] + cfg.pose_l2_weight * l2).detach()
    out["_gen"] = gen.detach()
    return out, feats


def context_losses(net: CSVRModel, batch: dict, cfg: LossConfig, temperature: float | None = None,
                   kind: str | None = None) -> tuple[dict, torch.Tensor]:
    """Eq. 2 (or the Table IV ablations) with negatives gathered across ranks; returns (terms, x* = f_s)."""
    mcfg = net.cfg
    tau = temperature if temperature is not None else mcfg.temperature
    kind = kind or mcfg.context_loss
    x = net.video_embedding(batch["clip"])
    z = net.iframe_embeddings(batch["iframes"], batch["iframe_mask"])
    xg, zg = gather_with_grad(x.float()), gather_with_grad(z.float())
    mask = gather_with_grad(batch["iframe_mask"].to(torch.uint8)).bool()
    vid = gather_with_grad(batch["video_index"])
    if kind == "mi_infonce":
        loss = L.mi_infonce(xg, zg, mask, tau, video_ids=vid)
    elif kind == "infonce":
        loss = L.infonce(xg, L.select_iframe(zg, mask), tau)
    else:
        loss = L.context_l2(xg, L.select_iframe(zg, mask))
    with torch.no_grad():
        sim = F.normalize(xg, dim=1) @ F.normalize(zg, dim=2).reshape(-1, zg.shape[-1]).t()
        sim = sim.masked_fill(~mask.reshape(1, -1), float("-inf"))
        owner = torch.arange(len(xg), device=xg.device).repeat_interleave(zg.shape[1])
        acc = (owner[sim.argmax(dim=1)] == torch.arange(len(xg), device=xg.device)).float().mean()
    return {"context": loss, "context_acc": acc}, x


def video_losses(net: CSVRModel, batch: dict, cfg: LossConfig, f_s: torch.Tensor | None = None,
                 f_d: torch.Tensor | None = None, *, f_i: torch.Tensor | None = None,
                 l2_weight: float | None = None) -> dict:
    """Eqs. 6-8 for the enabled targets (reconstruct the clip, predict the future clip) from f_i
    (integrated from f_s and f_d unless given); `l2_weight` overrides `cfg.video_l2_weight` (0: the L2
    term is logged but not trained, as for the noise-driven video stage)."""
    if f_i is None:
        f_i = net.integrate(f_s.float(), f_d.float())
    l2_weight = cfg.video_l2_weight if l2_weight is None else l2_weight
    size = net.cfg.video_size
    parts, out = [], {}
    specs = {"reconstruct": ("video_r", net.video_gen_r, net.video_disc_r, "clip"),
             "predict": ("video_p", net.video_gen_p, net.video_disc_p, "future_clip")}
    for target_name in cfg.video_targets:
        prefix, gen_net, disc, key = specs[target_name]
        # the clip without colour jitter / blur when the augmentation provides it (make_augment video_targets)
        target = video_target(batch.get(f"{key}_target", batch[key]), size)
        fake = gen_net(f_i)
        l2 = L.video_l2(fake.float(), target.float())
        terms = _gan_terms(prefix, disc, fake, target, 1.0, cfg, None, l2)
        branch = terms.pop("_backward") + (l2_weight * l2 if l2_weight else 0.0)
        terms[prefix] = branch.detach()
        parts.append(branch)
        out.update(terms)
        out[f"_gen_{prefix}"] = fake.detach()
    total = sum(parts) / len(parts)  # Eq. 8 (L_r + L_p) / 2
    out["video"] = total.detach()
    out["_backward"] = total
    return out


def joint_losses(net: CSVRModel, batch: dict, cfg: LossConfig) -> dict:
    """Eq. 9: sigma_p L_pose + sigma_c L_context + L_video, all branches trained end to end."""
    pose, feats = pose_losses(net, batch, cfg, weight=cfg.sigma_p)
    ctx, f_s = context_losses(net, batch, cfg)
    f_d = net.motion_feature(feats)
    video = video_losses(net, batch, cfg, f_s, f_d)
    total = pose.pop("_backward") + cfg.sigma_c * ctx["context"] + video.pop("_backward")
    out = {**pose, **ctx, **video}
    out["total"] = (cfg.sigma_p * pose["pose"] + cfg.sigma_c * ctx["context"] + video["video"]).detach()
    out["_total"] = total
    return out


# ----------------------------------------------------------------------------------------- steps
def _step(model: nn.Module, batch: dict, optimizer: torch.optim.Optimizer, ctx: StepContext) -> dict[str, float]:
    optimizer.zero_grad(set_to_none=True)
    with ctx.autocast():
        terms = model(batch)
    total = terms.pop("_total")
    scalars = {k: v for k, v in terms.items() if not k.startswith("_")}
    ctx.check({**{f"loss/{k}": v for k, v in scalars.items()}, "loss/_total": total})
    total.backward()
    net = model.module.net if hasattr(model, "module") else model.net
    norms = grad_norms(net.groups(ctx.groups))
    ctx.check({k: torch.tensor(v) for k, v in norms.items()})  # finite losses can still give NaN gradients
    if ctx.grad_clip is not None:  # per group: one runaway critic must not scale every other gradient down
        for g in ctx.groups:
            torch.nn.utils.clip_grad_norm_([p for p in getattr(net, g).parameters() if p.requires_grad], ctx.grad_clip)
    optimizer.step()
    ctx.extras["last_outputs"] = {k: v for k, v in terms.items() if k.startswith("_gen")}
    out = {f"loss/{k}": float(v.detach().float()) for k, v in scalars.items()}
    out.update(norms)
    return out


def pose_step(model: nn.Module, batch: dict, optimizer: torch.optim.Optimizer, ctx: StepContext) -> dict[str, float]:
    """Pose CGAN alone (Eq. 1), one-stage update of G_p and D_p."""
    _set_stage(model, "pose", ctx)
    return _step(model, batch, optimizer, ctx)


def context_step(model: nn.Module, batch: dict, optimizer: torch.optim.Optimizer, ctx: StepContext) -> dict[str, float]:
    """Context matching alone (Eq. 2): V-Network, I-Network and both MLP heads."""
    _set_stage(model, "context", ctx)
    return _step(model, batch, optimizer, ctx)


def video_step(model: nn.Module, batch: dict, optimizer: torch.optim.Optimizer, ctx: StepContext) -> dict[str, float]:
    """Video generators alone (Eqs. 6-8), driven by f_i from the (frozen) encoders."""
    _set_stage(model, "video", ctx)
    return _step(model, batch, optimizer, ctx)


def joint_step(model: nn.Module, batch: dict, optimizer: torch.optim.Optimizer, ctx: StepContext) -> dict[str, float]:
    """All three branches end to end with Eq. 9; the GANs keep training (not frozen)."""
    _set_stage(model, "joint", ctx)
    return _step(model, batch, optimizer, ctx)


def _set_stage(model: nn.Module, stage: str, ctx: StepContext) -> None:
    inner = model.module if hasattr(model, "module") else model
    inner.stage = stage
    inner.loss_cfg = ctx.loss
    inner.frozen_features = ctx.frozen_features
    inner.video_condition = ctx.video_condition


STEPS: dict[str, Callable[..., dict[str, float]]] = {
    "pose": pose_step, "context": context_step, "video": video_step, "joint": joint_step}
