"""Evaluation of a run from callables: recognition, retrieval, pretext metrics, examples, report.

Everything model- or store-specific is passed in as an `EvalComponents` of plain callables and batch
iterables, so `evaluate_run` runs (and is tested) without checkpoints; `evaluate_checkpoints` (`csvr evaluate
run`) builds the real components from run folders and a store (`evaluate.components`) and calls it. Section builders (`recognition_metrics`, ...) turn arrays
into the dicts stored in metrics.json (schema in docs/evaluation.md).
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from csvr.evaluate import metrics as M
from csvr.evaluate import video_baselines as VB
from csvr.evaluate.features import FeatureSet, extract_video_features, feature_set, write_features
from csvr.evaluate.metrics_io import write_metrics
from csvr.evaluate.report import build_report

log = logging.getLogger(__name__)

Batches = Callable[[], Iterable[Mapping[str, Any]]]
"""A zero-argument factory returning a fresh iterable of eval batches (the contract's eval dataset
after `ClipAugment(train=False)`): keys `clip`, `label` (B,), `video_index` (B,), plus whatever the
model callables need (`pose`, `future_pose`, `*_mask`, `iframes`, `iframe_mask`, ...). `classify`,
`features` and `pretext` all receive the whole batch (the downstream model also reads `pose`)."""


@dataclass
class EvalComponents:
    """What an evaluation needs from the model and the store (each part optional)."""

    test_batches: Batches  # clips of the test split (10 per video, centre crop)
    train_batches: Batches | None = None  # clips of the train split (retrieval gallery)
    classify: Callable[[Mapping[str, Any]], Any] | None = None  # fine-tuned model: batch -> logits (B, C)
    features: Callable[[Mapping[str, Any]], Any] | None = None  # pretrained V-network: batch -> features (B, D)
    pretext: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None  # batch -> pretext outputs (PRETEXT_KEYS)
    video_frame: Callable[[str, int], np.ndarray] | None = None  # (split, video_index) -> one (H, W, 3) uint8 frame
    video_ids: Mapping[int, str] | None = None  # video_index -> store id
    attrs: dict[str, Any] = field(default_factory=dict)  # model/checkpoint info for features.h5 and metrics
    # batches for `pretext` when it needs another clip recipe than the test pass (future clip, I-frames)
    # or a batch of distinct videos (context matching is within a batch); None = the first test batches
    pretext_batches: Batches | None = None
    # train-split batches with the generators' clip recipe (the pretraining run's crop / input size), for
    # the video baselines' mean frame and autoencoder; None = the retrieval gallery pass (`train_batches`)
    # is tapped, which has the recognition recipe (the same frames when crop and input size agree)
    baseline_batches: Batches | None = None


PRETEXT_KEYS: dict[str, str] = {
    "video_emb": "(B, C) g^V outputs of the clips",
    "iframe_emb": "(M, C) g^I outputs of the valid I-frames of the batch",
    "iframe_owner": "(M,) clip index (0..B-1) of each I-frame",
    "video_index": "(B,) optional, video of each clip (added from the batch when absent)",
    "pose_pred": "(B, T', 17, 2) generated future poses (normalised coordinates)",
    "pose_target": "(B, T', 17, 2) real future poses",
    "pose_mask": "(B, T', 17) bool, observed target joints",
    "pose_observed": "(B, T, 17, 2) optional, input poses (for the example figure)",
    "real": "(B, T, H, W, 3) float [0,1], real current clip at the generator's resolution",
    "reconstructed": "(B, T, H, W, 3) float [0,1], reconstruction",
    "future_real": "(B, T', H, W, 3) float [0,1], optional",
    "future_generated": "(B, T', H, W, 3) float [0,1], optional",
    "observed": "(B, T, H, W, 3) float [0,1], optional, the current clip at the generator's size when `real` is "
                "absent (added by the pipeline from the batch's `clip`: the last-observed-frame baseline)",
    "generated_logits": "(B, C) optional, classifier logits of generated clips (Inception Score)",
    "real_logits": "(B, C) optional, classifier logits of the matching real clips (IS ceiling)",
}


# --------------------------------------------------------------------------------------------------
# Section builders (arrays -> metrics.json sections)
# --------------------------------------------------------------------------------------------------


def recognition_metrics(clip_scores: Any, clip_labels: Any, video_index: Any, num_classes: int) -> dict[str, Any]:
    """Clip- and video-level top-1, per-class accuracy and confusion matrix (both at video level)."""
    acc = M.RecognitionAccumulator(num_classes)
    acc.add(clip_scores, clip_labels, video_index)
    return recognition_section(acc)


def recognition_section(acc: M.RecognitionAccumulator) -> dict[str, Any]:
    """The `recognition` section from a streaming accumulator (the clip batches already gone)."""
    vids, vscores, vlabels = acc.video_scores()
    vpred = vscores.argmax(axis=1)
    n = acc.num_classes
    return {
        "clip_top1": acc.clip_top1(),
        "video_top1": float(np.mean(vpred == vlabels)),
        "num_clips": int(acc.num_clips),
        "num_videos": int(len(vids)),
        "clips_per_video": int(acc.videos.counts().max()),
        "per_class": M.per_class_accuracy(vlabels, vpred, n).tolist(),
        "confusion_matrix": M.confusion_matrix(vlabels, vpred, n).tolist(),
    }


def retrieval_metrics(gallery: FeatureSet, queries: FeatureSet, ks: Sequence[int] = M.RETRIEVAL_KS) -> dict[str, Any]:
    """R@k of test videos (queries) against training videos (gallery)."""
    recall = M.retrieval_recall_at_k(queries.features, queries.labels, gallery.features, gallery.labels, ks)
    return {"recall": {str(k): v for k, v in recall.items()}, "num_queries": len(queries), "num_gallery": len(gallery)}


def retrieval_examples(
    gallery: FeatureSet,
    queries: FeatureSet,
    frame_of: Callable[[str, int], np.ndarray],
    num_queries: int = 4,
    k: int = 5,
) -> dict[str, np.ndarray]:
    """Arrays for the retrieval figure: queries of distinct classes (first test video of each of the
    first classes), their k nearest training videos, and one frame of each (via `frame_of`)."""
    k = min(k, len(gallery))
    rows, seen = [], set()
    for i, lab in enumerate(queries.labels):
        if int(lab) not in seen:
            seen.add(int(lab))
            rows.append(i)
        if len(rows) == num_queries:
            break
    idx, sims = M.nearest_neighbours(queries.features[rows], gallery.features, k)

    def frame(split: str, fs: FeatureSet, r: int) -> np.ndarray:
        return np.asarray(frame_of(split, _video_index(fs.video_ids[r])))

    return {
        "retrieval_query_frames": np.stack([frame(queries.split, queries, r) for r in rows]),
        "retrieval_neighbour_frames": np.stack([np.stack([frame(gallery.split, gallery, j) for j in row]) for row in idx]),
        "retrieval_query_labels": queries.labels[rows],
        "retrieval_neighbour_labels": gallery.labels[idx],
        "retrieval_neighbour_sims": sims.astype(np.float32),
    }


def _video_index(video_id: str) -> int:
    """The video index encoded in a feature set's id: `extract_video_features` ids are `<index>` or
    `<index>:<store id>` (see `video_id_map`)."""
    return int(str(video_id).split(":", 1)[0])


def video_id_map(ids: Sequence[str]) -> dict[int, str]:
    """video_index -> `<index>:<store id>`, a stable id that keeps the index recoverable."""
    return {i: f"{i}:{v}" for i, v in enumerate(ids)}


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def pretext_metrics(outputs: Sequence[Mapping[str, Any]], is_splits: int = 1,
                    baselines: VB.VideoBaselines | None = None) -> dict[str, Any]:
    """Table II measures from per-batch pretext outputs (keys in `PRETEXT_KEYS`).

    Context-matching top-1 is computed within each batch (as in training) and averaged over clips;
    pose MSE x100 over all observed future joints; generation: Inception Score of generated clips
    with our classifier (and of the real clips, its ceiling), and PSNR/SSIM against the real frames,
    summed batch by batch (`FrameQualityAccumulator`). With `baselines` (a fitted
    `evaluate.video_baselines.VideoBaselines`), the baselines are scored on the same real frames
    (`generation.baselines`).
    """
    res: dict[str, Any] = {}
    ctx_hits, ctx_n = 0.0, 0
    pp, pt, pm = [], [], []
    gen: dict[str, list] = {"generated_logits": [], "real_logits": []}
    quality = {"": M.FrameQualityAccumulator(), "_future": M.FrameQualityAccumulator()}
    for out in outputs:
        o = {k: M.as_numpy(v) for k, v in out.items() if v is not None}
        if "video_emb" in o and "iframe_emb" in o:
            b = len(o["video_emb"])
            ctx_hits += b * M.context_matching_top1(o["video_emb"], o["iframe_emb"], o.get("iframe_owner"),
                                                    o.get("video_index"))
            ctx_n += b
        if "pose_pred" in o and "pose_target" in o:
            pp.append(o["pose_pred"])
            pt.append(o["pose_target"])
            pm.append(o["pose_mask"] if "pose_mask" in o else np.ones(o["pose_pred"].shape[:-1], bool))
        for k in gen:
            if k in o:
                gen[k].append(o[k])
        if "real" in o and "reconstructed" in o:
            quality[""].add(o["reconstructed"], o["real"])
            if baselines is not None:
                baselines.add_reconstruction(o["real"])
        if "future_real" in o and "future_generated" in o:
            quality["_future"].add(o["future_generated"], o["future_real"])
            if baselines is not None:
                baselines.add_prediction(o.get("real", o.get("observed")), o["future_real"])
    if ctx_n:
        res["context_top1"] = ctx_hits / ctx_n
    if pp:
        res["pose_mse_x100"] = M.pose_mse_x100(np.concatenate(pp), np.concatenate(pt), np.concatenate(pm))
    g: dict[str, Any] = {}
    if gen["generated_logits"]:
        probs = _softmax(np.concatenate(gen["generated_logits"]).astype(np.float64))
        g["inception_score"], g["inception_score_std"] = M.inception_score(probs, min(is_splits, len(probs)))
        g["num_generated"] = int(len(probs))
    if gen["real_logits"]:
        probs = _softmax(np.concatenate(gen["real_logits"]).astype(np.float64))
        g["inception_score_real"], _ = M.inception_score(probs, min(is_splits, len(probs)))
    for suffix, acc in quality.items():
        if acc.num_frames:
            g[f"psnr{suffix}"] = acc.psnr()
            g[f"ssim{suffix}"] = acc.ssim()
    if baselines is not None and any(a.num_frames for a in quality.values()):
        g["baselines"] = baselines.section()
    if g:
        res["generation"] = g
    return res


# --------------------------------------------------------------------------------------------------
# The whole evaluation
# --------------------------------------------------------------------------------------------------


def _fit_baselines(comps: EvalComponents, train_frames: VB.TrainFrames | None) -> VB.VideoBaselines | None:
    """The video baselines from the train clips gathered (or read now), or the train-free ones only."""
    if train_frames is None:
        return None
    source = comps.baseline_batches
    if source is None and comps.features is None:
        source = comps.train_batches  # no gallery pass took place
    if source is not None and not train_frames.num_clips:
        train_frames.source = ("train split, generator clip recipe" if comps.baseline_batches is not None
                               else "train split (recognition clip recipe)")
        train_frames.consume(source())
    if not train_frames.num_clips or train_frames.skipped:
        if not train_frames.skipped:
            log.warning("video baselines: no train clips, so no mean-frame or autoencoder baseline")
        return VB.VideoBaselines(None, None, None)
    return train_frames.fit()


@dataclass
class TestPass:
    """What ONE streaming pass over the test batches keeps: per-video accumulators, never the clips."""

    recognition: M.RecognitionAccumulator | None
    features: M.VideoAccumulator | None
    pretext: list[dict[str, np.ndarray]]
    batches: int = 0


def _with_observed(out: dict[str, np.ndarray], batch: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Add `observed` (the current clip at the generator's size) to prediction-only outputs, so the
    last-observed-frame baseline has the frames it repeats."""
    clip_shape = tuple(np.shape(batch["clip"])) if "clip" in batch else ()
    if "future_real" in out and "real" not in out and len(clip_shape) == 5 and clip_shape[1] == 3:
        out["observed"] = VB.clip_frames(batch["clip"], int(out["future_real"].shape[-2]))
    return out


def _test_pass(comps: EvalComponents, max_pretext_batches: int | None, num_classes: int) -> TestPass:
    """ONE pass over the test batches running classify, features and (on the first batches) pretext.

    Streaming: each batch is dropped once its outputs are folded into per-video sums (recognition
    scores, retrieval features); only the pretext outputs of the first `max_pretext_batches` batches
    are kept, so memory does not grow with the number of test videos."""
    import torch

    res = TestPass(M.RecognitionAccumulator(num_classes) if comps.classify is not None else None,
                   M.VideoAccumulator() if comps.features is not None else None, [])
    with torch.no_grad():
        for i, batch in enumerate(comps.test_batches()):
            for key in ("clip", "label", "video_index"):
                if key not in batch:
                    raise KeyError(f"test batch {i} lacks key {key!r} (has {sorted(batch)})")
            labels = M.as_numpy(batch["label"]).astype(np.int64)
            vidx = M.as_numpy(batch["video_index"]).astype(np.int64)
            res.batches += 1
            if res.recognition is not None:
                res.recognition.add(M.as_numpy(comps.classify(batch)).astype(np.float32), labels, vidx)
            if res.features is not None:
                res.features.add(M.as_numpy(comps.features(batch)).astype(np.float32), vidx, labels)
            if (comps.pretext is not None and comps.pretext_batches is None
                    and (max_pretext_batches is None or i < max_pretext_batches)):
                out = {k: M.as_numpy(v) for k, v in comps.pretext(batch).items() if v is not None}
                out.setdefault("video_index", vidx)
                res.pretext.append(_with_observed(out, batch))
            del batch
        if comps.pretext is not None and comps.pretext_batches is not None:
            for i, batch in enumerate(comps.pretext_batches()):
                if max_pretext_batches is not None and i >= max_pretext_batches:
                    break
                out = {k: M.as_numpy(v) for k, v in comps.pretext(batch).items() if v is not None}
                if "video_index" in batch:
                    out.setdefault("video_index", M.as_numpy(batch["video_index"]).astype(np.int64))
                res.pretext.append(_with_observed(out, batch))
    if not res.batches:
        raise ValueError("the test loader yielded no batches")
    return res


def evaluate_run(
    run_dir: str | Path,
    components: EvalComponents,
    classes: Sequence[str],
    class_groups: Mapping[str, str] | None = None,
    run_info: Mapping[str, Any] | None = None,
    ks: Sequence[int] = M.RETRIEVAL_KS,
    max_pretext_batches: int | None = 8,
    extra: Mapping[str, Any] | None = None,
    video_baselines: VB.VideoBaselineConfig | None = VB.VideoBaselineConfig(),
) -> dict[str, Path]:
    """Compute every metric the components allow, write eval/features.h5, eval/examples.npz,
    metrics.json, report.md and plots into `run_dir`; returns the written paths.

    The test split is read once (classification, features and pretext outputs from the same
    batches); the train split once more for the retrieval gallery. Both passes stream: a batch is
    dropped once its logits / features are added to per-video sums.

    When the pretext outputs hold generated frames, the video baselines (`evaluate.video_baselines`,
    settings `video_baselines`; None = none) are scored on the same real frames: the train clips for
    the mean frame and the autoencoder come from `components.baseline_batches` (a pass of its own,
    stopped at `max_train_clips`), else from the retrieval gallery pass as it streams by, else
    only the train-free baselines (first / last frame repeated) are scored.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    metrics: dict[str, Any] = {"run": dict(run_info or {}), "classes": list(classes)}
    if class_groups:
        metrics["class_groups"] = dict(class_groups)
    examples: dict[str, np.ndarray] = {}
    written: dict[str, Path] = {}
    comps = components

    test = _test_pass(comps, max_pretext_batches, len(classes))
    outputs = test.pretext
    size = VB.frame_size(outputs) if video_baselines is not None else None
    train_frames = VB.TrainFrames(size, video_baselines) if size else None
    if test.recognition is not None:
        metrics["recognition"] = recognition_section(test.recognition)
        log.info("recognition: clip top-1 %.3f, video top-1 %.3f", metrics["recognition"]["clip_top1"],
                 metrics["recognition"]["video_top1"])

    if test.features is not None and comps.train_batches is not None:
        queries = feature_set(test.features, "test", comps.video_ids)
        gallery_batches = comps.train_batches()
        if train_frames is not None and comps.baseline_batches is None:
            train_frames.source = "train split, retrieval gallery pass (recognition clip recipe)"
            gallery_batches = train_frames.tap(gallery_batches)
        gallery = extract_video_features(comps.features, gallery_batches, "train", comps.video_ids, input_key=None)
        written["features"] = write_features(run_dir / "eval" / "features.h5", [gallery, queries],
                                             {**comps.attrs, **(run_info or {})})
        metrics["retrieval"] = retrieval_metrics(gallery, queries, ks)
        metrics["retrieval"]["features"] = "eval/features.h5"
        log.info("retrieval: %s", metrics["retrieval"]["recall"])
        if comps.video_frame is not None:
            examples.update(retrieval_examples(gallery, queries, comps.video_frame))

    if comps.pretext is not None:
        metrics["pretext"] = pretext_metrics(outputs, baselines=_fit_baselines(comps, train_frames))
        if outputs:
            first = outputs[0]
            n = min(3, len(first.get("pose_pred", [])))
            if n and "pose_observed" in first:
                examples["pose_observed"] = first["pose_observed"][:n]
                examples["pose_future_real"] = first["pose_target"][:n]
                examples["pose_future_generated"] = first["pose_pred"][:n]
                if "pose_mask" in first:
                    examples["pose_future_mask"] = first["pose_mask"][:n]
            for key, name in (("real", "frames_real"), ("reconstructed", "frames_reconstructed"),
                              ("future_real", "frames_future_real"), ("future_generated", "frames_future_generated")):
                if key in first:
                    examples[name] = first[key][:2]

    if extra:
        metrics.update(extra)
    if examples:
        path = run_dir / "eval" / "examples.npz"
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, **examples)
        written["examples"] = path
    written["metrics"] = write_metrics(run_dir / "metrics.json", metrics)
    written.update(build_report(run_dir))
    return written


# --------------------------------------------------------------------------------------------------
# `csvr evaluate run`: from run folders
# --------------------------------------------------------------------------------------------------

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
    models: Any = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Path]:
    """Evaluate the runs' checkpoints on `store`; writes metrics.json, report.md, plots/,
    eval/features.h5 and eval/examples.npz into `out_dir`. Returns the written paths.

    Recognition (fine-tuned model) and retrieval features (pretrained V-Network) come from ONE pass over
    the test clips plus one over the training clips (the retrieval gallery); the pretext measures from a
    few batches of one clip per test video, so context matching is scored among distinct videos. The
    runs' `log.jsonl` files are copied into `OUT/logs/` so the report draws every loss term.

    `device="auto"`: CUDA when available, else CPU; `num_workers=None`: loader workers from
    `train.distributed.default_loader_workers(None)`. Every pass streams from the store."""
    if pretrain_run is None and finetune_run is None and models is None:
        raise ValueError("give a pretraining run and/or a fine-tuning run")
    # the trainer-facing side (checkpoints, loader) is imported here, so the rest of this module runs without it
    from csvr.evaluate.components import StoreInfo, eval_batches, load_models, resolve_device

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
