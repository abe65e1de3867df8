"""`csvr evaluate run`: evaluate a pretraining run and a fine-tuning run on a store, end to end.

Recognition (fine-tuned model) and retrieval features (pretrained V-Network, no fine-tuning) come
from ONE pass over the test clips (10 per video by default) plus one pass over the training clips
(the retrieval gallery); the pretext measures from a few batches of one clip per test video, so that
context matching is scored among distinct videos. The runs' `log.jsonl` files are copied into
`OUT/logs/` so the report draws every loss term of both runs.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from evaluate.pipeline import EvalComponents, evaluate_run, video_id_map
from evaluate.seams import LoadedModels, StoreInfo, eval_batches, load_models, resolve_device

log = logging.getLogger(__name__)

PRETEXT_BATCH = 16  # clips (distinct videos) per batch for context matching: chance level 1/16


def collect_logs(out_dir: str | Path, runs: Mapping[str, str | Path | None]) -> dict[str, Path]:
    """Copy each run's `log.jsonl` to `OUT/logs/<name>/log.jsonl` (the report plots every *.jsonl
    under its folder); runs without a log are skipped with a warning."""
    out: dict[str, Path] = {}
    for name, run in runs.items():
        if run is None:
            continue
        src = Path(run) / "log.jsonl" if Path(run).is_dir() else Path(run).parent.parent / "log.jsonl"
        if not src.is_file():
            log.warning("%s: no training log to plot", src)
            continue
        dst = Path(out_dir) / "logs" / name / "log.jsonl"
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
        out[name] = dst
    return out


def evaluate_checkpoints(
    store: str | Path,
    out_dir: str | Path,
    *,
    pretrain_run: str | Path | None = None,
    finetune_run: str | Path | None = None,
    groups: str | Path | None = None,
    num_clips: int = 10,
    batch_size: int = 16,
    device: str = "auto",
    num_workers: int | None = None,
    pretext_batches: int = 4,
    models: LoadedModels | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Path]:
    """Evaluate the runs' checkpoints on `store`; writes metrics.json, report.md, plots/,
    eval/features.h5 and eval/examples.npz into `out_dir`. Returns the written paths.

    `device="auto"`: CUDA when available, else CPU; `num_workers=None`: loader workers from
    `train.distributed.default_loader_workers(None)`. Every pass streams from the store."""
    if pretrain_run is None and finetune_run is None and models is None:
        raise ValueError("give a pretraining run and/or a fine-tuning run")
    t0 = time.perf_counter()
    info = StoreInfo(store)
    device = resolve_device(device)
    models = models or load_models(pretrain_run, finetune_run, device)
    fns, recipe = models.callables, models.recipe
    kw = dict(num_clips=num_clips, batch_size=batch_size, device=device, num_workers=num_workers,
              split_index=recipe.split_index,
              spec=recipe.spec(), crop=recipe.crop, input_size=recipe.input_size, pose_norm=recipe.pose_norm)
    pre = models.pretrain_recipe
    comps = EvalComponents(
        test_batches=eval_batches(store, "test", **kw),
        train_batches=eval_batches(store, "train", **kw) if fns.get("features") else None,
        classify=fns.get("classify"), features=fns.get("features"), pretext=fns.get("pretext"),
        pretext_batches=(eval_batches(store, "test", num_clips=1, batch_size=PRETEXT_BATCH, device=device,
                                      num_workers=num_workers,
                                      split_index=pre.split_index, spec=pre.spec(pretext=True), crop=pre.crop,
                                      input_size=pre.input_size, pose_norm=pre.pose_norm)
                         if fns.get("pretext") and pre is not None else None),
        # the video baselines' training clips: the pretraining clip recipe, like the generators' targets
        baseline_batches=(eval_batches(store, "train", num_clips=1, batch_size=PRETEXT_BATCH, device=device,
                                       num_workers=num_workers, split_index=pre.split_index, spec=pre.spec(),
                                       crop=pre.crop, input_size=pre.input_size, pose_norm=pre.pose_norm)
                          if fns.get("pretext") and pre is not None else None),
        video_frame=info.middle_frame, video_ids=video_id_map(info.ids),
        attrs={"store": str(store), "pretrain_checkpoint": str(models.pretrain_checkpoint or ""),
               "finetune_checkpoint": str(models.finetune_checkpoint or "")},
    )
    collect_logs(out_dir, {"pretrain": pretrain_run, "finetune": finetune_run})
    run_info = {
        "name": Path(out_dir).resolve().parent.name or str(out_dir),
        "dataset": info.attrs.get("dataset", ""), "store": str(store),
        "backbone": models.info.get("backbone") or "",
        "pretrain_checkpoint": str(models.pretrain_checkpoint or ""),
        "finetune_checkpoint": str(models.finetune_checkpoint or ""),
        "finetune_variant": models.info.get("finetune_variant") or "",
        "clips": f"{recipe.frames} frames, stride {recipe.stride}, centre crop {recipe.crop}"
                 + (f" resized to {recipe.input_size}" if recipe.input_size not in (None, recipe.crop) else "")
                 + f", {num_clips} clips per video",
    }
    written = evaluate_run(out_dir, comps, info.classes, info.class_groups(groups), run_info=run_info,
                           max_pretext_batches=pretext_batches, extra=extra)
    log.info("evaluation done in %.1f s -> %s", time.perf_counter() - t0, written["report"])
    return written
