"""Fine-tuning for action recognition (paper IV-B): the pretrained integrated-feature model + a classifier.

Variants (the ablations of Table I):
- `fi` (default): f_i = integration(f_s, f_d), f_s = g^V(pool(V-Network(clip))), f_d = align(G_p encoder(poses))
- `fs`: the V-Network alone (pooled features)
- `fd`: the pose encoder alone (f_d)
- `concat`: f_s and f_d concatenated then projected (the concat integration of Table I)
- `scratch`: the `fi` network with random initialisation (no checkpoint)
- `scratch_fs`: the `fs` network (the V-Network alone) with random initialisation (no checkpoint)
Each ends in dropout (0.3) and a new linear classifier. A checkpoint is refused, with the reason, when
its backbone differs from the config, when it lacks trained weights for a group the variant needs, or
when shapes do not match.

Each epoch: train, then clip-level top-1 on the test split (centre crop, `eval_clips_per_video` clips
per video, every clip scored on its own). The per-epoch test top-1 is a curve for monitoring: no
checkpoint is chosen by it (that would select the model on the test split). `checkpoints/last.pt`
(resume) is the one checkpoint, loads with `torch.load(weights_only=True)`, and is what evaluation uses.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from csvr.train import checkpoint as ckpt_mod
from csvr.train.config import ConfigError, FinetuneConfig, ModelConfig, _from_dict, save_config, to_dict
from csvr.train.distributed import DistInfo, barrier, default_loader_workers, init_from_env
from csvr.train.loop import (Position, ResumableBatches, autocast_context, build_optimizer, build_scheduler,
                        progress_bar, raise_if_non_finite, setup_runtime, to_device, wrap_ddp)
from csvr.train.metrics_log import MetricsLogger, StepTimer, grad_norms
from csvr.train.models.backbones import build_backbone
from csvr.train.models.context import MLPHead
from csvr.train.models.integration import build_integration
from csvr.train.models.pose import MotionAligner, PoseEncoder
from csvr.train.system import JOINTS, _opt

log = logging.getLogger(__name__)

# module groups each variant loads from the pretrained checkpoint (names as in train.system.CSVRModel)
VARIANT_GROUPS: dict[str, tuple[str, ...]] = {
    "fi": ("vnet", "head_v", "pose_gen", "motion_align", "integration"),
    "concat": ("vnet", "head_v", "pose_gen"),
    "fs": ("vnet",),
    "fd": ("pose_gen",),
    "scratch": (),
    "scratch_fs": (),
}
# the network a variant builds: the scratch variants are the fi / fs networks without a checkpoint
ARCHITECTURE = {"scratch": "fi", "scratch_fs": "fs"}
SCRATCH_VARIANTS = tuple(ARCHITECTURE)
# groups loaded when the checkpoint has them, else left at random init without complaint
VARIANT_OPTIONAL: dict[str, tuple[str, ...]] = {"concat": ("motion_align",), "fd": ("motion_align",)}


class DownstreamNet(nn.Module):
    """The fine-tuning network of one variant (see module docstring)."""

    def __init__(self, cfg: ModelConfig, variant: str, num_classes: int, dropout: float):
        super().__init__()
        self.variant = variant
        self.arch = arch = ARCHITECTURE.get(variant, variant)
        c = cfg.embed_dim
        head_hidden = int(_opt(cfg, "head_hidden", 512))
        pose_hidden = int(_opt(cfg, "pose_hidden", max(8, round(128 * cfg.width))))
        self.feature_layer = int(_opt(cfg, "feature_layer", None) or cfg.pose_layers)
        uses_video = arch in ("fi", "concat", "fs")
        uses_pose = arch in ("fi", "concat", "fd")
        if uses_video:
            self.vnet = build_backbone(cfg.backbone, width=cfg.width)
        if uses_video and arch != "fs":
            self.head_v = MLPHead(self.vnet.feature_dim, c, hidden=head_hidden)
        if uses_pose:
            # only the layers up to the feature layer: the deeper ones never reach f_d (and would get no gradient)
            self.pose_encoder = PoseEncoder(JOINTS, pose_hidden, self.feature_layer)
            self.motion_align = MotionAligner(pose_hidden, c, hidden=head_hidden)
        if arch == "fi":
            self.integration = build_integration(cfg.integration, c, gamma_offset=float(cfg.options.get("gamma_offset", 1.0)))
        elif arch == "concat":
            self.integration = build_integration("concat", c)
        feat_dim = self.vnet.feature_dim if arch == "fs" else c
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(feat_dim, num_classes)

    def features(self, clip: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
        """The variant's representation before dropout and classifier."""
        if self.arch == "fs":
            return self.vnet.forward_pooled(clip)
        f_d = self.motion_align(self.pose_encoder(pose)[self.feature_layer - 1])
        if self.arch == "fd":
            return f_d
        f_s = self.head_v(self.vnet.forward_pooled(clip))
        return self.integration(f_s, f_d)

    def forward(self, clip: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.features(clip, pose)))


def _remap(group: str, key: str) -> str | None:
    """Checkpoint key (CSVRModel naming) -> DownstreamNet key; None to skip."""
    if group == "pose_gen":
        prefix = "pose_gen.encoder."
        return "pose_encoder." + key[len(prefix):] if key.startswith(prefix) else None
    return key


def load_pretrained(net: DownstreamNet, path: str | Path, cfg: FinetuneConfig) -> list[str]:
    """Load the groups the variant needs from a pretraining checkpoint; clear errors when it does not fit."""
    variant = cfg.variant
    ck = ckpt_mod.load(path)
    if ck.get("kind") not in ("pretrain-stage", "pretrain-resume"):
        raise ckpt_mod.CheckpointError(f"{path}: a {ck.get('kind')!r} checkpoint, not a pretraining checkpoint")
    mc = ck.get("model_config", {})
    if mc.get("backbone") != cfg.model.backbone and variant != "fd":
        raise ckpt_mod.CheckpointError(
            f"{path}: pretrained with backbone {mc.get('backbone')!r} but the fine-tuning config asks for "
            f"{cfg.model.backbone!r} (set model.backbone to match)")
    valid = set(ck.get("valid_groups", ck.get("trained_groups", [])))
    need = VARIANT_GROUPS[variant]
    missing = [g for g in need if g not in valid and g not in cfg.allow_random]
    if missing:
        raise ckpt_mod.CheckpointError(
            f"{path}: does not fit variant {variant!r}: it has no trained weights for {missing} (trained: "
            f"{sorted(valid)}); pretrain the stage that trains them, choose another variant, or list them "
            "in allow_random to start them from random initialisation")
    if variant in ("fi",) and "integration" in valid and mc.get("integration") != cfg.model.integration:
        raise ckpt_mod.CheckpointError(f"{path}: integration {mc.get('integration')!r} was pretrained but the "
                                       f"config asks for {cfg.model.integration!r}")
    load_groups = [g for g in need if g in valid] + [g for g in VARIANT_OPTIONAL.get(variant, ()) if g in valid]
    if variant == "concat" and mc.get("integration") == "concat" and "integration" in valid:
        load_groups.append("integration")
    state: dict[str, torch.Tensor] = {}
    for key, value in ck["model"].items():
        group = key.split(".", 1)[0]
        if group in load_groups:
            new = _remap(group, key)
            if new is not None and new.startswith("pose_encoder.layers.") and \
                    int(new.split(".")[2]) >= net.feature_layer:
                continue  # pose encoder layers above the feature layer are not part of the downstream network
            if new is not None:
                state[new] = value
    own = net.state_dict()
    bad = [k for k, v in state.items() if k not in own or own[k].shape != v.shape]
    if bad:
        detail = ", ".join(f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape) if k in own else 'absent'}"
                           for k in bad[:4])
        raise ckpt_mod.CheckpointError(f"{path}: weights do not fit the {variant!r} network ({detail}); "
                                       "was it pretrained with different model settings?")
    net.load_state_dict(state, strict=False)
    return load_groups


def model_config_for(cfg: FinetuneConfig, pretrained: str | Path | None) -> ModelConfig:
    """The architecture: from the checkpoint (its `model_config`) when given, checked against the config."""
    if pretrained is None:
        return cfg.model
    ck = ckpt_mod.load(pretrained)
    raw = ck.get("model_config")
    if raw is None:
        raise ckpt_mod.CheckpointError(f"{pretrained}: carries no model_config; cannot rebuild its networks")
    try:
        mc = _from_dict(ModelConfig, raw, "checkpoint.model_config")
    except ConfigError as exc:
        raise ckpt_mod.CheckpointError(f"{pretrained}: {exc}") from None
    if cfg.variant != "fd" and mc.backbone != cfg.model.backbone:
        raise ckpt_mod.CheckpointError(
            f"{pretrained}: pretrained with backbone {mc.backbone!r} but the fine-tuning config asks for "
            f"{cfg.model.backbone!r} (set model.backbone to match)")
    return mc


@torch.no_grad()
def evaluate_clips(model: nn.Module, loader, augment, device: torch.device, amp: str) -> dict[str, float]:
    """Clip-level top-1 (and mean loss) over an evaluation loader; summed over ranks."""
    model.eval()
    correct = total = 0
    loss_sum = 0.0
    for batch in loader:
        batch = augment(to_device(batch, device))
        with autocast_context(device, amp):
            logits = model(batch["clip"], batch["pose"][..., :2])
        logits = logits.float()
        loss_sum += float(F.cross_entropy(logits, batch["label"], reduction="sum"))
        correct += int((logits.argmax(1) == batch["label"]).sum())
        total += len(logits)
    t = torch.tensor([correct, total, loss_sum], dtype=torch.float64, device=device)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(t)
    correct, total, loss_sum = int(t[0]), int(t[1]), float(t[2])
    model.train()
    return {"acc/top1": correct / max(total, 1), "loss/eval": loss_sum / max(total, 1), "eval_clips": total}


def _eval_loader(cfg: FinetuneConfig, store, dist_info: DistInfo):
    from csvr.train.data import ClipSpec, EvalClipDataset

    d = cfg.data
    spec = ClipSpec(frames=d.frames, stride=d.stride, future_frames=0, max_iframes=0, crop=d.crop)  # centre crop
    ds = EvalClipDataset(store, split="test", split_index=d.split_index, spec=spec,
                         num_clips=cfg.eval_clips_per_video, allow_incomplete=d.allow_incomplete)
    n = len(ds)
    if cfg.max_eval_videos:
        n = min(n, cfg.max_eval_videos * cfg.eval_clips_per_video)
    idx = list(range(dist_info.rank, n, dist_info.world_size))
    # threads, not forked workers: the training loader's threads are alive in this process, and a fork
    # taken while one of them holds a lock (allocator, decompressor) can deadlock the child
    from csvr.train.data.threaded import ThreadedLoader

    return ThreadedLoader(ds, cfg.batch_size, idx, threads=max(1, default_loader_workers(cfg.data.num_workers)),
                          device=dist_info.device, safe=True)


@dataclass
class _Run:
    """What one fine-tuning run holds between its steps (built by `_build_run`, in this order)."""

    cfg: FinetuneConfig
    dist_info: DistInfo
    run_dir: Path
    last_path: Path
    net: DownstreamNet
    mcfg: ModelConfig
    num_classes: int
    plan: dict
    batches: ResumableBatches
    optimizer: torch.optim.Optimizer
    scheduler: Any
    model: nn.Module | None = None
    train_aug: Any = None
    eval_aug: Any = None
    eval_loader: Any = None
    logger: MetricsLogger | None = None


def finetune(cfg: FinetuneConfig, store: str | Path, run_dir: str | Path, *, pretrained: str | Path | None = None,
             resume: bool = False, dist_info: DistInfo | None = None, epoch_hook=None) -> dict:
    """Fine-tune and evaluate every epoch (the test top-1 only as a monitoring curve); returns
    {"last_top1", "epochs", "run_dir", "variant", "num_classes"}."""
    from csvr.train.data import make_augment

    run_dir = Path(run_dir)
    dist_info = dist_info or init_from_env(cfg.run.device)
    setup_runtime(cfg.run)
    ckpt_mod.seed_everything(cfg.run.seed + dist_info.rank)
    _check_request(cfg, pretrained, resume, run_dir / "checkpoints" / "last.pt")
    r = _build_run(cfg, store, run_dir, pretrained, dist_info)
    start_epoch, last_top1 = _resume(r) if resume and r.last_path.is_file() else (0, None)
    d = cfg.data
    r.model = wrap_ddp(r.net, dist_info)  # every module of a variant is used
    r.train_aug = make_augment(d.augment, d.crop, train=True, input_size=d.input_size,
                               pose_norm=d.pose_norm).to(dist_info.device)
    r.eval_aug = make_augment([], d.crop, train=False, input_size=d.input_size,
                              pose_norm=d.pose_norm).to(dist_info.device)
    r.eval_loader = _eval_loader(cfg, store, dist_info)
    r.logger = MetricsLogger(run_dir, enabled=dist_info.is_main, tensorboard=cfg.run.tensorboard)
    steps_per_epoch = r.plan["steps_per_epoch"]
    it = iter(r.batches)
    step = start_epoch * steps_per_epoch
    bar = progress_bar("finetune", cfg.epochs * steps_per_epoch, step, dist_info.is_main, unit="step")
    try:
        for epoch in range(start_epoch, cfg.epochs):
            r.model.train()
            timer = StepTimer()
            for _ in range(steps_per_epoch):
                step = _train_step(r, next(it), step, epoch, timer, bar)
            last_top1 = _end_epoch(r, epoch, step)
            barrier()
            if epoch_hook is not None:
                epoch_hook(epoch + 1)
    finally:
        if bar is not None:
            bar.close()
        r.logger.close()
    result = {"last_top1": last_top1, "epochs": cfg.epochs, "run_dir": str(run_dir),
              "variant": cfg.variant, "num_classes": r.num_classes}
    if dist_info.is_main:
        (run_dir / "result.json").write_text(json.dumps(result, indent=2))
    return result


def _check_request(cfg: FinetuneConfig, pretrained: str | Path | None, resume: bool, last_path: Path) -> None:
    """Refuse a variant/checkpoint mismatch and a run folder that already holds a run (without --resume)."""
    if cfg.variant in SCRATCH_VARIANTS and pretrained is not None:
        raise ConfigError(f"variant {cfg.variant!r} trains from random initialisation; do not pass --pretrained")
    if cfg.variant not in SCRATCH_VARIANTS and pretrained is None:
        raise ConfigError(f"variant {cfg.variant!r} needs --pretrained CHECKPOINT (or use variant 'scratch' / 'scratch_fs')")
    if not resume and last_path.exists():
        raise FileExistsError(f"{last_path.parent.parent}: already holds checkpoints; pass --resume or pick a new --run-dir")


def _build_run(cfg: FinetuneConfig, store: str | Path, run_dir: Path, pretrained: str | Path | None,
               dist_info: DistInfo) -> _Run:
    """The training data, the network (pretrained groups loaded), the plan, the optimiser and the schedule."""
    from csvr.train.data import ClipDataset, ClipSpec, ShardLocalSampler, StoreReader
    from csvr.train.plan import finetune_plan, format_plan

    d = cfg.data
    spec = ClipSpec(frames=d.frames, stride=d.stride, future_frames=0, max_iframes=0, crop=d.crop)  # reader-side crop
    reader = StoreReader(store, allow_incomplete=d.allow_incomplete, verify_checksums=d.verify_checksums)
    ds = ClipDataset(reader, split="train", split_index=d.split_index, spec=spec)
    classes = ds.reader.attrs.get("classes") or []
    num_classes = max(len(classes), int(ds.reader.videos["label"].max()) + 1)
    mcfg = model_config_for(cfg, pretrained)
    net = DownstreamNet(mcfg, cfg.variant, num_classes, cfg.dropout)
    loaded = load_pretrained(net, pretrained, cfg) if pretrained is not None else []
    net.to(dist_info.device)
    plan = finetune_plan(cfg, len(ds), dist_info.world_size)
    if dist_info.is_main:
        save_config(cfg, run_dir, {"store": str(store), "pretrained": str(pretrained) if pretrained else None,
                                   "loaded_groups": loaded, "num_classes": num_classes,
                                   "world_size": dist_info.world_size, "command": "finetune", "plan": plan})
        log.info("fine-tune variant %s: %d classes, loaded %s from %s", cfg.variant, num_classes, loaded, pretrained)
    sampler = ShardLocalSampler(ds, num_replicas=dist_info.world_size, rank=dist_info.rank, shuffle=True,
                                seed=cfg.run.seed, drop_last=True)
    if dist_info.is_main:
        log.info("%s", format_plan(plan))
    batches = ResumableBatches(ds, sampler, plan["batch_per_process"], num_workers=default_loader_workers(d.num_workers),
                               pin_memory=d.pin_memory and dist_info.device.type == "cuda",
                               seed=cfg.run.seed, position=Position(), device=dist_info.device)
    splan = plan["stages"][0]
    optimizer = build_optimizer(list(net.parameters()), [], cfg.optim, plan["global_batch"])
    scheduler = build_scheduler(optimizer, cfg.optim, splan["steps"], warmup_steps=splan["warmup_steps"])
    return _Run(cfg, dist_info, run_dir, run_dir / "checkpoints" / "last.pt", net, mcfg, num_classes, plan,
                batches, optimizer, scheduler)


def _resume(r: _Run) -> tuple[int, float]:
    """Restore weights, optimiser, schedule and the data position from `last.pt`; (epoch, last top-1)."""
    ck = ckpt_mod.load(r.last_path)
    progress = ckpt_mod.restore(ck, model=r.net, optimizer=r.optimizer, scheduler=r.scheduler, path=r.last_path)
    r.batches.position = Position(int(progress["data_epoch"]), int(progress["data_batch"]))
    log.info("fine-tune resumed from %s at epoch %d", r.last_path, int(progress["epoch"]))
    return int(progress["epoch"]), float(progress["top1"])  # an older last.pt also holds "best_top1": ignored


def _train_step(r: _Run, batch: dict, step: int, epoch: int, timer: StepTimer, bar: Any) -> int:
    """One optimiser step on one batch (cross-entropy); logs every `run.log_every` steps; returns the new step."""
    cfg, device = r.cfg, r.dist_info.device
    batch = r.train_aug(to_device(batch, device))
    timer.data_ready()
    r.optimizer.zero_grad(set_to_none=True)
    with autocast_context(device, cfg.run.amp):
        logits = r.model(batch["clip"], batch["pose"][..., :2])
    loss = F.cross_entropy(logits.float(), batch["label"])
    raise_if_non_finite({"loss/ce": loss}, step=step + 1, stage="finetune",
                        checkpoint=str(r.last_path) if r.last_path.is_file() else None, device=device)
    loss.backward()
    norms = grad_norms({n: m for n, m in r.net.named_children() if any(True for _ in m.parameters())})
    if cfg.optim.grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(r.net.parameters(), cfg.optim.grad_clip)
    lr = r.optimizer.param_groups[0]["lr"]  # the lr this step used
    r.optimizer.step()
    r.scheduler.step()
    step += 1
    timing = timer.step_done(r.plan["global_batch"])
    if bar is not None:
        bar.update(1)
    if step % cfg.run.log_every == 0:
        acc = float((logits.argmax(1) == batch["label"]).float().mean())
        if bar is not None:
            bar.set_postfix(epoch=f"{epoch + 1}/{cfg.epochs}", loss=f"{float(loss.detach()):.3g}")
        r.logger.log({"step": step, "stage": "finetune", "epoch": epoch, "loss/ce": float(loss.detach()),
                      "acc/train_top1": acc, **norms, "lr": lr,
                      **timing})  # timing: samples_per_s, data_wait_frac, step_s
    return step


def _end_epoch(r: _Run, epoch: int, step: int) -> float:
    """The test split's clip top-1 (a monitoring curve, never a selection) and `last.pt`; returns the top-1."""
    cfg = r.cfg
    metrics = evaluate_clips(r.model, r.eval_loader, r.eval_aug, r.dist_info.device, cfg.run.amp)
    top1 = metrics["acc/top1"]
    r.logger.log({"step": step, "stage": "eval", "epoch": epoch, **metrics})
    if r.dist_info.is_main:
        log.info("epoch %d/%d: clip top-1 %.4f (test split, monitoring only)", epoch + 1, cfg.epochs, top1)
        progress = {"epoch": epoch + 1, "step": step, "top1": top1,
                    "data_epoch": r.batches.position.epoch, "data_batch": r.batches.position.batch}
        extra = {"num_classes": r.num_classes, "variant": cfg.variant, "model_config": to_dict(r.mcfg),
                 "metrics": {k: float(v) for k, v in metrics.items()}}
        if (epoch + 1) % cfg.run.checkpoint_every == 0 or epoch + 1 == cfg.epochs:
            ckpt_mod.save_atomic(ckpt_mod.make_checkpoint(
                kind="finetune", model=r.net, optimizer=r.optimizer, scheduler=r.scheduler, progress=progress,
                config=to_dict(cfg), extra=extra), r.last_path)
    return top1


def load_finetuned(path: str | Path, device: str | torch.device = "cpu") -> DownstreamNet:
    """Rebuild a fine-tuned network from its checkpoint alone (`last.pt`), in eval mode.

    Call it as `net(batch["clip"], batch["pose"][..., :2])` on an augmented batch -> logits (B, classes).
    """
    ck = ckpt_mod.load(path)
    if ck.get("kind") != "finetune":
        raise ckpt_mod.CheckpointError(f"{path}: a {ck.get('kind')!r} checkpoint, not a fine-tuning checkpoint")
    mc = _from_dict(ModelConfig, ck["model_config"], f"{path}: model_config")
    net = DownstreamNet(mc, ck["variant"], int(ck["num_classes"]), float(ck["config"].get("dropout", 0.0)))
    net.load_state_dict(ck["model"])
    return net.to(device).eval()
