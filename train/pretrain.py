"""Staged CSVR pretraining (paper III-E, IV-B): pose CGAN, video generators, context branch, then joint.

Run folder layout (`RUN`):
    config.yaml                 validated config + code version (reproduce a run from its folder)
    log.jsonl, tb/              per-step scalars (see train.metrics_log)
    images/<stage>/step_XXXXXX_{poses,video}.png   generated poses / frames now and then
    checkpoints/<stage>/last.pt     scheduled checkpoint (resume point), final.pt when the stage ended
    checkpoints/final.pt        the last enabled stage's final weights (what fine-tuning loads)

Each stage builds a fresh `CSVRModel`, loads the module groups that its `init_from` stages trained
from their `final.pt`, trains only its own groups (`train.system.STAGE_GROUPS`) and saves. With
`--resume`, finished stages are skipped and an unfinished one continues from its `last.pt`
(model, optimizer, scheduler, RNG states and the input stream position).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Callable

import torch

from csvr.train import checkpoint as ckpt_mod
from csvr.train.config import PretrainConfig, StageConfig, save_config, to_dict
from csvr.train.distributed import DistInfo, barrier, default_loader_workers, init_from_env
from csvr.train.loop import (Position, ResumableBatches, autocast_context, build_optimizer, build_scheduler,
                        progress_bar, raise_if_non_finite, setup_runtime, to_device, wrap_ddp)
from csvr.train.metrics_log import MetricsLogger, StepTimer, save_pose_plot, save_video_grid
from csvr.train.steps import STEPS, LossModule, StepContext
from csvr.train.system import DISCRIMINATORS, GROUPS, CSVRModel, count_parameters, stage_groups

log = logging.getLogger(__name__)


def stage_dir(run_dir: Path, stage: str) -> Path:
    return run_dir / "checkpoints" / stage


# What a stage does not read: the pose CGAN needs only poses, context matching no future clip,
# the video generators no I-frames.
STAGE_SKIPS: dict[str, dict[str, object]] = {
    "pose": {"pixels": False, "max_iframes": 0},
    "context": {"future_frames": 0},
    "video": {"max_iframes": 0},
}


def build_data(cfg: PretrainConfig, store: str | Path, dist_info: DistInfo, split: str | None = "train",
               stage: str | None = None):
    """The training dataset (reading what `stage` uses; None: everything), its rank-split sampler and
    the on-device augmentation."""
    from csvr.train.data import ClipDataset, ClipSpec, ShardLocalSampler, StoreReader, make_augment

    d = cfg.data
    # the random crop is drawn in the reader (same distribution as ClipAugment's; it then maps poses with
    # the sample's crop_origin and crops no further), so the loader copies ~1.7x fewer bytes
    spec = ClipSpec(frames=d.frames, stride=d.stride, future_frames=d.future_frames, max_iframes=d.max_iframes,
                    crop=d.crop)
    spec = dataclasses.replace(spec, **STAGE_SKIPS.get(stage, {}))
    reader = StoreReader(store, allow_incomplete=d.allow_incomplete, verify_checksums=d.verify_checksums)
    ds = ClipDataset(reader, split=split, split_index=d.split_index, spec=spec)
    sampler = ShardLocalSampler(ds, num_replicas=dist_info.world_size, rank=dist_info.rank, shuffle=True,
                                seed=cfg.run.seed, drop_last=True)
    augment = make_augment(d.augment, d.crop, train=True, input_size=d.input_size, pose_norm=d.pose_norm,
                           video_targets=stage in (None, "video", "joint")).to(dist_info.device)
    return ds, sampler, augment


def _set_trainable(net: CSVRModel, groups: tuple[str, ...]) -> None:
    for name in GROUPS:
        getattr(net, name).requires_grad_(name in groups)


def _load_init(net: CSVRModel, run_dir: Path, stage: StageConfig) -> list[str]:
    """Copy into `net` the groups each `init_from` stage trained, from that stage's final checkpoint.

    Returns the names of the groups loaded (later `init_from` entries override earlier ones).
    """
    loaded = []
    for src in stage.init_from:
        path = stage_dir(run_dir, src) / "final.pt"
        if not path.is_file():
            raise ckpt_mod.CheckpointError(
                f"{path}: stage {stage.name!r} starts from stage {src!r}, whose final checkpoint is missing "
                f"(run stage {src!r} first or remove it from init_from)")
        ck = ckpt_mod.load(path)
        groups = ck.get("trained_groups", [])
        state = {k: v for k, v in ck["model"].items() if k.split(".", 1)[0] in groups}
        missing, unexpected = net.load_state_dict(state, strict=False)
        if unexpected:
            raise ckpt_mod.CheckpointError(f"{path}: unexpected weights {unexpected[:5]}")
        shape_ok = all(net.state_dict()[k].shape == v.shape for k, v in state.items())
        if not shape_ok:
            raise ckpt_mod.CheckpointError(f"{path}: weight shapes do not fit this model config")
        loaded += [g for g in groups if g not in loaded]
    return loaded


def _build_stage(cfg: PretrainConfig, stage: StageConfig, run_dir: Path, dist_info: DistInfo, splan: dict):
    net = CSVRModel(cfg.model, cfg.data.frames, cfg.data.future_frames)
    loaded = _load_init(net, run_dir, stage)
    groups = stage_groups(stage.name, cfg.loss.video_targets, stage.condition)
    _set_trainable(net, groups)
    net.to(dist_info.device)
    # frozen groups run in eval mode (fixed BN statistics); trained groups in train mode
    net.train()
    for name in GROUPS:
        if name not in groups:
            getattr(net, name).eval()
    gen_params = [p for g in groups if g not in DISCRIMINATORS for p in getattr(net, g).parameters()]
    disc_params = [p for g in groups if g in DISCRIMINATORS for p in getattr(net, g).parameters()]
    optimizer = build_optimizer(gen_params, disc_params, cfg.optim, splan["global_batch"])
    scheduler = build_scheduler(optimizer, cfg.optim, splan["steps"], warmup_steps=splan["warmup_steps"])
    module = LossModule(net)
    # every trained group takes part in every step (stage_groups leaves out a switched-off video target's
    # networks), so DDP needs no unused-parameter search; a group without gradient is an error (grad_norms)
    model = wrap_ddp(module, dist_info)
    return net, model, optimizer, scheduler, groups, loaded


def _save_images(run_dir: Path, stage: str, step: int, batch: dict, outputs: dict, video_size: int) -> None:
    from csvr.train.steps import video_target

    img_dir = run_dir / "images" / stage
    if "_gen" in outputs:
        save_pose_plot(img_dir / f"step_{step:06d}_poses.png", batch["pose"][0, :, :, :2],
                       batch["future_pose"][0, :, :, :2], outputs["_gen"][0], batch["future_pose_mask"][0],
                       current_mask=batch["pose_mask"][0])
    rows = {}
    if "_gen_video_r" in outputs:
        rows["clip (target)"] = video_target(batch.get("clip_target", batch["clip"])[:1], video_size)[0]
        rows["reconstructed"] = outputs["_gen_video_r"][0]
    if "_gen_video_p" in outputs:
        rows["future (target)"] = video_target(batch.get("future_clip_target", batch["future_clip"])[:1],
                                               video_size)[0]
        rows["predicted"] = outputs["_gen_video_p"][0]
    if rows:
        save_video_grid(img_dir / f"step_{step:06d}_video.png", rows)


def run_stage(cfg: PretrainConfig, stage: StageConfig, store: str | Path, run_dir: Path, dist_info: DistInfo,
              logger: MetricsLogger, resume: bool, step_hook: Callable[[str, int], None] | None = None,
              splan: dict | None = None) -> Path:
    """Train one stage for its planned steps (`splan`, an entry of `train.plan.pretrain_plan` plus
    `global_batch` and `batch_per_process`; computed here when None), continuing from its last.pt when
    resuming; returns final.pt."""
    if splan is None:
        splan = _stage_plans(cfg, store, dist_info.world_size)[0][stage.name]
    total_steps, batch_size = splan["steps"], splan["batch_per_process"]
    sdir = stage_dir(run_dir, stage.name)
    final, last = sdir / "final.pt", sdir / "last.pt"
    net, model, optimizer, scheduler, groups, loaded = _build_stage(cfg, stage, run_dir, dist_info, splan)
    ds, sampler, augment = build_data(cfg, store, dist_info, stage=stage.name)
    step, position = 0, Position()
    if resume and last.is_file():
        ck = ckpt_mod.load(last)
        progress = ckpt_mod.restore(ck, model=net, optimizer=optimizer, scheduler=scheduler, path=last)
        step = int(progress["step"])
        rank_rng = _rank_rng_path(last, dist_info.rank)
        if not dist_info.is_main and rank_rng.is_file():
            own = ckpt_mod.load(rank_rng)
            if int(own["step"]) == step:
                ckpt_mod.set_rng_state(own["rng"])
        position = Position(int(progress["epoch"]), int(progress["batch"]))
        log.info("stage %s: resumed from %s at step %d (epoch %d, batch %d)", stage.name, last, step,
                 position.epoch, position.batch)
    if dist_info.is_main:
        log.info("stage %s: %d steps, trains %s (%.2fM parameters)%s", stage.name, total_steps, list(groups),
                 sum(count_parameters(getattr(net, g)) for g in groups) / 1e6,
                 f", initialised from {loaded}" if loaded else "")
    batches = ResumableBatches(ds, sampler, batch_size, num_workers=default_loader_workers(cfg.data.num_workers),
                               pin_memory=cfg.data.pin_memory and dist_info.device.type == "cuda",
                               seed=cfg.run.seed, position=position, device=dist_info.device)
    steps_per_epoch = batches.batches_per_epoch()
    last_good = str(last) if last.is_file() else None

    def check(terms: dict[str, torch.Tensor]) -> None:
        raise_if_non_finite(terms, step=step + 1, stage=stage.name, checkpoint=last_good, device=dist_info.device,
                            logger=logger)

    ctx = StepContext(loss=cfg.loss, model=cfg.model, groups=groups, check=check,
                      autocast=lambda: autocast_context(dist_info.device, cfg.run.amp),
                      grad_clip=cfg.optim.grad_clip, frozen_features=(stage.name == "video"),
                      video_condition=stage.condition)
    step_fn = STEPS[stage.name]
    valid_groups = [g for g in GROUPS if g in groups or g in loaded]
    timer = StepTimer()
    it = iter(batches)
    bar = progress_bar(f"pretrain/{stage.name}", total_steps, step, dist_info.is_main)
    while step < total_steps:
        batch = next(it)
        batch = augment(to_device(batch, dist_info.device))
        if dist_info.device.type == "cuda":
            torch.cuda.synchronize(dist_info.device)
        timer.data_ready()
        lr = optimizer.param_groups[0]["lr"]  # the lr this step used
        scalars = step_fn(model, batch, optimizer, ctx)
        scheduler.step()
        step += 1
        if dist_info.device.type == "cuda":
            torch.cuda.synchronize(dist_info.device)
        timing = timer.step_done(splan["global_batch"])
        if step % cfg.run.log_every == 0 or step == total_steps:
            logger.log({"step": step, "stage": stage.name, "epoch": batches.position.epoch,
                        **scalars, "lr": lr, **timing})  # timing: samples_per_s, data_wait_frac, step_s
        if bar is not None:
            bar.update(1)
            bar.set_postfix({k.split("/")[-1]: f"{v:.3g}" for k, v in scalars.items()
                             if k in (f"loss/{stage.name}", "loss/total")})
        if dist_info.is_main and cfg.run.image_every and (step % cfg.run.image_every == 0 or step == total_steps):
            _save_images(run_dir, stage.name, step, batch, ctx.extras.get("last_outputs", {}), cfg.model.video_size)
        if step % cfg.run.checkpoint_every == 0 or step == total_steps:
            _save(cfg, net, optimizer, scheduler, stage, step, batches.position, groups, last, dist_info)
            last_good = str(last)
        if step_hook is not None:
            step_hook(stage.name, step)
        timer.reset()  # checkpoint / image time is not data wait
    if bar is not None:
        bar.close()
    if dist_info.is_main:
        ck = ckpt_mod.make_checkpoint(kind="pretrain-stage", model=net, optimizer=None, scheduler=None,
                                      progress={"stage": stage.name, "step": step}, config=to_dict(cfg),
                                      extra={"trained_groups": list(groups), "valid_groups": valid_groups,
                                             "model_config": to_dict(cfg.model)})
        ckpt_mod.save_atomic(ck, final)
    barrier()
    return final


def _stage_plans(cfg: PretrainConfig, store: str | Path, world_size: int) -> tuple[dict[str, dict], dict]:
    """stage name -> its plan entry (with the run-wide batch sizes), and the whole plan."""
    from csvr.train.plan import pretrain_plan, train_split_size

    plan = pretrain_plan(cfg, train_split_size(str(store), cfg.data.split_index, cfg.data.allow_incomplete),
                         world_size)
    per_stage = {s["stage"]: {**s, "global_batch": plan["global_batch"],
                              "batch_per_process": plan["batch_per_process"]} for s in plan["stages"]}
    return per_stage, plan


def _rank_rng_path(path: Path, rank: int) -> Path:
    return path.with_name(f"{path.stem}.rank{rank}.rng.pt")


def _save(cfg: PretrainConfig, net: CSVRModel, optimizer, scheduler, stage: StageConfig, step: int,
          position: Position, groups: tuple[str, ...], path: Path, dist_info: DistInfo) -> None:
    if not dist_info.is_main:  # every other rank keeps its own RNG streams (noise, augmentation)
        ckpt_mod.save_atomic({"format": ckpt_mod.FORMAT, "kind": "rng", "rng": ckpt_mod.rng_state(), "step": step},
                             _rank_rng_path(path, dist_info.rank))
    if dist_info.is_main:
        ck = ckpt_mod.make_checkpoint(
            kind="pretrain-resume", model=net, optimizer=optimizer, scheduler=scheduler,
            progress={"stage": stage.name, "step": step, "epoch": position.epoch, "batch": position.batch},
            config=to_dict(cfg), extra={"trained_groups": list(groups), "model_config": to_dict(cfg.model)})
        ckpt_mod.save_atomic(ck, path)
    barrier()


def pretrain(cfg: PretrainConfig, store: str | Path, run_dir: str | Path, *, resume: bool = False,
             step_hook: Callable[[str, int], None] | None = None, dist_info: DistInfo | None = None) -> Path:
    """Run every enabled stage in order; returns the path of `checkpoints/final.pt`.

    `step_hook(stage, step)` is called after every step (tests use it to simulate a kill).
    """
    run_dir = Path(run_dir)
    dist_info = dist_info or init_from_env(cfg.run.device)
    setup_runtime(cfg.run)
    ckpt_mod.seed_everything(cfg.run.seed + dist_info.rank)
    if not resume and (run_dir / "checkpoints").exists() and any((run_dir / "checkpoints").rglob("*.pt")):
        raise FileExistsError(f"{run_dir}: already holds checkpoints; pass --resume to continue it or pick a "
                              "new --run-dir")
    from csvr.train.plan import format_plan

    plans, plan = _stage_plans(cfg, store, dist_info.world_size)
    if dist_info.is_main:
        save_config(cfg, run_dir, {"store": str(store), "world_size": dist_info.world_size,
                                   "command": "pretrain", "plan": plan})
        log.info("%s", format_plan(plan))
    logger = MetricsLogger(run_dir, enabled=dist_info.is_main, tensorboard=cfg.run.tensorboard)
    final_path = None
    try:
        for stage in cfg.stages:
            if not stage.enabled:
                log.info("stage %s: disabled in the config, skipped", stage.name)
                continue
            final = stage_dir(run_dir, stage.name) / "final.pt"
            if resume and final.is_file():
                log.info("stage %s: already finished (%s), skipped", stage.name, final)
                final_path = final
                continue
            t0 = time.perf_counter()
            # each stage starts from the same seed, so a resumed run reproduces a stage regardless of the
            # RNG use of earlier stages (the resume checkpoint overrides this for a continued stage)
            ckpt_mod.seed_everything(cfg.run.seed + 7919 * (cfg.stages.index(stage) + 1) + dist_info.rank)
            final_path = run_stage(cfg, stage, store, run_dir, dist_info, logger, resume, step_hook,
                                   splan=plans[stage.name])
            if dist_info.is_main:
                log.info("stage %s: done in %.1f s -> %s", stage.name, time.perf_counter() - t0, final_path)
    finally:
        logger.close()
    if final_path is None:
        raise ValueError("no stage is enabled in the config; nothing was trained")
    out = run_dir / "checkpoints" / "final.pt"
    if dist_info.is_main:
        ck = ckpt_mod.load(final_path)
        ckpt_mod.save_atomic(ck, out)
    barrier()
    return out


def load_pretrained_model(path: str | Path, device: str | torch.device = "cpu") -> CSVRModel:
    """Rebuild the whole pretrained CSVR network from a pretraining checkpoint (e.g. RUN/checkpoints/final.pt).

    `model.vnet.forward_pooled(batch["clip"])` gives the V-Network features used for retrieval;
    `valid_groups` in the checkpoint says which groups hold trained weights. Returned in eval mode.
    """
    from csvr.train.config import ModelConfig, _from_dict

    ck = ckpt_mod.load(path)
    if ck.get("kind") not in ("pretrain-stage", "pretrain-resume"):
        raise ckpt_mod.CheckpointError(f"{path}: a {ck.get('kind')!r} checkpoint, not a pretraining checkpoint")
    mc = _from_dict(ModelConfig, ck["model_config"], f"{path}: model_config")
    data = ck["config"]["data"]
    net = CSVRModel(mc, int(data["frames"]), int(data["future_frames"]))
    ckpt_mod.restore(ck, model=net, rng=False, path=path)
    return net.to(device).eval()
