"""The report of a run folder: `report.md` assembled from its metrics.json, training logs and example arrays, with plots.

Reads only files (no model, no store), so it runs on any finished run folder and in tests:

    RUN_DIR/**/*.jsonl          training logs, one JSON object per line (format in docs/evaluation.md)
    RUN_DIR/metrics.json        metrics written by `csvr evaluate run` (schema `csvr-metrics/1`)
    RUN_DIR/eval/examples.npz   optional arrays for the example figures (keys in `EXAMPLE_KEYS`)

and writes `RUN_DIR/report.md` and `RUN_DIR/plots/*.png` (or into `out_dir`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from csvr.evaluate import paper
from csvr.evaluate.markdown import ablation_markdown, fmt, markdown_table
from csvr.evaluate.metrics_io import load_metrics, write_metrics
from csvr.evaluate.plots import (
    order_by_group, plot_confusion_matrix, plot_frames_comparison, plot_per_class_accuracy, plot_pose_prediction,
    plot_retrieval_examples, plot_training_curves,
)
from csvr.evaluate.training_log import log_series, read_jsonl_log

log = logging.getLogger(__name__)

EXAMPLE_KEYS: dict[str, str] = {
    "retrieval_query_frames": "(Q, H, W, 3) uint8: one frame per query (test) video",
    "retrieval_neighbour_frames": "(Q, K, H, W, 3) uint8: one frame per retrieved training video",
    "retrieval_query_labels": "(Q,) int",
    "retrieval_neighbour_labels": "(Q, K) int",
    "retrieval_neighbour_sims": "(Q, K) float, optional: cosine similarities",
    "pose_observed": "(N, T, 17, 2) float: observed (input) poses, normalised x/W, y/H",
    "pose_future_real": "(N, T', 17, 2) float: ground-truth future poses",
    "pose_future_generated": "(N, T', 17, 2) float: generated future poses",
    "pose_future_mask": "(N, T', 17) bool, optional: observed future joints",
    "frames_real": "(N, T, H, W, 3) uint8 or float [0,1]: real current clip",
    "frames_reconstructed": "(N, T, H, W, 3): generated reconstruction of the current clip",
    "frames_future_real": "(N, T', H, W, 3): real future clip",
    "frames_future_generated": "(N, T', H, W, 3): generated future clip",
}


def _recognition_section(m: Mapping[str, Any], classes: Sequence[str], groups: Mapping[str, str] | None,
                         plots: Path, out_dir: Path) -> list[str]:
    rec = m["recognition"]
    lines = ["## Action recognition", ""]
    lines.append(markdown_table(
        ["clip top-1 (%)", "video top-1 (%)", "test videos", "clips"],
        [[fmt(rec.get("clip_top1")), fmt(rec.get("video_top1")), rec.get("num_videos", "–"), rec.get("num_clips", "–")]],
    ))
    ft = (m.get("run") or {}).get("finetune_checkpoint")
    if ft:
        lines += ["", f"Fine-tuned model: `{ft}` (the last epoch; no checkpoint is selected on the test split)."]
    chance = 1.0 / len(classes) if classes else None
    if chance:
        lines += ["", f"Chance level: {100 * chance:.1f}% ({len(classes)} classes)."]
    variants: dict[str, Sequence[float | None]] = dict(m.get("per_class_variants") or {})
    if rec.get("per_class") is not None and "this run" not in variants:
        variants = {"this run": rec["per_class"], **variants}
    if variants and classes:
        png = plot_per_class_accuracy(variants, classes, plots / "per_class_accuracy.png", groups,
                                      title="Per-class accuracy (grouped like the paper's Figure 4)")
        lines += ["", "### Per-class accuracy", "", f"![per-class accuracy]({png.relative_to(out_dir).as_posix()})", ""]
        index = {c: i for i, c in enumerate(classes)}
        body = []
        for g, cs in order_by_group(classes, groups):
            for c in cs:
                body.append([c, g] + [fmt(v[index[c]]) for v in variants.values()])
            means = []
            for v in variants.values():
                vals = [v[index[c]] for c in cs if v[index[c]] is not None]
                means.append(fmt(float(np.mean(vals))) if vals else "–")
            body.append([f"**mean {g}**", g] + [f"**{x}**" for x in means])
        lines.append(markdown_table(["class", "group"] + [f"{k} (%)" for k in variants], body))
    if rec.get("confusion_matrix") is not None and classes:
        png = plot_confusion_matrix(rec["confusion_matrix"], classes, plots / "confusion_matrix.png",
                                    title="Confusion matrix (video level)")
        lines += ["", f"![confusion matrix]({png.relative_to(out_dir).as_posix()})"]
    return lines + [""]


def _retrieval_section(m: Mapping[str, Any]) -> list[str]:
    ret = m["retrieval"]
    recall = {int(k): v for k, v in ret.get("recall", {}).items()}
    ks = sorted(recall)
    lines = ["## Video retrieval (features of the pretrained network, no fine-tuning)", ""]
    body = [["ours"] + [fmt(recall[k]) for k in ks]]
    run = m.get("run", {})
    ref = paper.TABLE_VIII_CSVR.get(str(run.get("backbone", "")), {}).get(str(run.get("dataset", "")))
    if ref:
        body.append([f"paper (CSVR {run['backbone']}, K400-pretrained)"] + [fmt(ref.get(k), 1.0) for k in ks])
    lines.append(markdown_table([""] + [f"R@{k} (%)" for k in ks], body))
    lines += ["", f"{ret.get('num_queries', '?')} test queries against {ret.get('num_gallery', '?')} training "
                  "videos, cosine similarity; a query is a hit at k when any of its k nearest training videos "
                  "shares its label."]
    return lines + [""]


def _pretext_section(m: Mapping[str, Any]) -> list[str]:
    p = m["pretext"]
    gen = p.get("generation") or {}
    rows = [
        ["context matching top-1 (%) ↑", fmt(p.get("context_top1")), fmt(paper.TABLE_II["context_top1"][-1], 1.0)],
        ["pose prediction MSE ×100 ↓", fmt(p.get("pose_mse_x100"), 1.0, 2), fmt(paper.TABLE_II["pose_mse_x100"][-1], 1.0)],
        ["video generation IS ↑ (our classifier)", fmt(gen.get("inception_score"), 1.0, 2), fmt(paper.TABLE_II["video_is"][-1], 1.0)],
    ]
    if gen.get("inception_score_real") is not None:
        rows.append(["IS of real clips (ceiling for this classifier)", fmt(gen["inception_score_real"], 1.0, 2), "–"])
    for key, label, digits in (("psnr", "reconstruction PSNR (dB) ↑", 2), ("ssim", "reconstruction SSIM ↑", 3),
                               ("psnr_future", "prediction PSNR (dB) ↑", 2), ("ssim_future", "prediction SSIM ↑", 3)):
        if gen.get(key) is not None:
            rows.append([label, fmt(gen[key], 1.0, digits), "–"])
    lines = ["## Pretext tasks (Table II measures)", "",
             markdown_table(["measure", "ours", "paper (UCF101, epoch 120)"], rows), ""]
    if gen.get("baselines"):
        lines += _video_baselines_section(gen)
    return lines


VIDEO_BASELINE_ROWS = (
    ("mean_frame", "training mean frame (every frame)"),
    ("first_frame", "first frame repeated (scored on frames 2..T)"),
    ("last_frame", "last observed frame repeated"),
    ("autoencoder", "conv autoencoder (upper reference)"),
)


def _video_baselines_section(gen: Mapping[str, Any]) -> list[str]:
    """The generators' PSNR / SSIM next to the baselines of `evaluate.video_baselines`."""
    b = gen["baselines"]
    rec, pred = b.get("reconstruction") or {}, b.get("prediction") or {}

    def cells(d: Mapping[str, Any] | None) -> list[str]:
        d = d or {}
        return [fmt(d.get("psnr"), 1.0, 2), fmt(d.get("ssim"), 1.0, 3)]

    body = [["**generator (ours)**"] + cells({"psnr": gen.get("psnr"), "ssim": gen.get("ssim")})
            + cells({"psnr": gen.get("psnr_future"), "ssim": gen.get("ssim_future")})]
    for key, label in VIDEO_BASELINE_ROWS:
        if key in rec or key in pred:
            body.append([label] + cells(rec.get(key)) + cells(pred.get(key)))
    lines = ["### Video generation against baselines", "",
             markdown_table(["frames from", "reconstruction PSNR (dB) ↑", "reconstruction SSIM ↑",
                             "prediction PSNR (dB) ↑", "prediction SSIM ↑"], body), ""]
    notes = []
    mean_rec, mean_pred = (rec.get("mean_frame") or {}).get("psnr"), (pred.get("mean_frame") or {}).get("psnr")
    verdicts = []
    for what, ours, base in (("reconstruction", gen.get("psnr"), mean_rec), ("prediction", gen.get("psnr_future"), mean_pred)):
        if ours is not None and base is not None:
            d = float(ours) - float(base)
            verdicts.append(f"{what} {d:+.2f} dB over the mean frame"
                            + (" (at or below it: nothing learned about the clip)" if d <= 0 else ""))
    if verdicts:
        notes.append("Generator vs the training mean frame: " + "; ".join(verdicts) + ".")
    train = b.get("train") or {}
    n = b.get("num_test_clips") or {}
    if train:
        limit = f", the first {train['max_clips']} of the pass" if train.get("max_clips") else ""
        notes.append(f"Same test frames as the generator ({n.get('reconstruction', 0)} reconstruction / "
                     f"{n.get('prediction', 0)} prediction clips), same size, range and crop. Mean frame over "
                     f"{train.get('frames', '?')} frames of {train.get('clips', '?')} train clips{limit} "
                     f"({train.get('source') or 'train split'}).")
    ae = b.get("autoencoder") or {}
    if ae:
        frac = ae.get("code_fraction")
        notes.append(f"Autoencoder: per-frame conv net, {ae.get('steps')} Adam steps of {ae.get('batch')} frames "
                     f"(lr {ae.get('lr')}, seed {ae.get('seed')}) on {ae.get('train_frames')} train frames, code "
                     f"{ae.get('code')} channels at 1/4 side"
                     + (f" ({100 * frac:.0f}% of the pixel values)" if frac else "") + ".")
    notes.append("A generator at or below the mean-frame row has learned nothing about the clip; the copy rows "
                 "are what repeating one real frame scores, the autoencoder row what a small conv net trained "
                 "briefly on train frames reaches (see docs/evaluation.md, \"Reading the video numbers\").")
    return lines + [" ".join(notes), ""]


def build_report(
    run_dir: str | Path,
    metrics: Mapping[str, Any] | None = None,
    out_dir: str | Path | None = None,
    groups: Mapping[str, str] | None = None,
) -> dict[str, Path]:
    """Write report.md, metrics.json and plots for a run folder; returns {name: path} of what was written.

    `metrics` (if given) is written to metrics.json first; otherwise RUN_DIR/metrics.json is read.
    `groups` overrides metrics["class_groups"]. Every section is optional and appears when its data
    exists, so the report also works for a pretraining-only run (training curves only).
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run folder not found: {run_dir}")
    out_dir = Path(out_dir) if out_dir is not None else run_dir
    plots = out_dir / "plots"
    written: dict[str, Path] = {}
    if metrics is not None:
        written["metrics"] = write_metrics(out_dir / "metrics.json", metrics)
        m: dict[str, Any] = load_metrics(written["metrics"])
    elif (run_dir / "metrics.json").is_file():
        m = load_metrics(run_dir / "metrics.json")
        if out_dir != run_dir:
            written["metrics"] = write_metrics(out_dir / "metrics.json", {k: v for k, v in m.items() if k != "schema"})
    else:
        m = {}
    classes: list[str] = list(m.get("classes") or [])
    groups = dict(groups) if groups is not None else (m.get("class_groups") or None)
    run = m.get("run", {})

    lines = [f"# CSVR evaluation report: {run.get('name', run_dir.name)}", ""]
    if run:
        lines += [markdown_table(["key", "value"], [[k, f"`{v}`"] for k, v in run.items()]), ""]

    if "recognition" in m:
        lines += _recognition_section(m, classes, groups, plots, out_dir)
        for key in ("per_class_accuracy", "confusion_matrix"):
            if (plots / f"{key}.png").is_file():
                written[key] = plots / f"{key}.png"
    if "retrieval" in m:
        lines += _retrieval_section(m)
    if "pretext" in m:
        lines += _pretext_section(m)

    ablation = m.get("ablation") or {}
    if ablation:
        lines += ["## Ablations (ours next to the paper)", ""]
        for table, ours in ablation.items():
            lines += [ablation_markdown(table, ours), ""]

    logs = sorted(run_dir.rglob("*.jsonl"))
    curve_lines = []
    for logp in logs:
        records = read_jsonl_log(logp)
        if not records:
            continue
        rel = logp.relative_to(run_dir)
        stem = "_".join(rel.with_suffix("").parts)
        png = plot_training_curves(records, plots / f"curves_{stem}.png", title=f"Training curves: {rel.as_posix()}")
        if png is not None:
            written[f"curves_{stem}"] = png
            curve_lines += [f"### `{rel.as_posix()}`", "", f"![training curves]({png.relative_to(out_dir).as_posix()})", ""]
        other = [k for k in log_series(records) if not k.startswith("loss/") and k != "lr"]
        if other:
            png2 = plot_training_curves(records, plots / f"stats_{stem}.png", keys=sorted(other),
                                        title=f"Training statistics: {rel.as_posix()}")
            if png2 is not None:
                written[f"stats_{stem}"] = png2
                curve_lines += [f"![training statistics]({png2.relative_to(out_dir).as_posix()})", ""]
    if curve_lines:
        lines += ["## Training curves", "", "Every `loss/*` term and the learning rate per stage (faint: raw; "
                  "bold: moving average; red x: non-finite value).", ""] + curve_lines

    examples_path = run_dir / "eval" / "examples.npz"
    if examples_path.is_file():
        lines += _examples_section(examples_path, classes, plots, out_dir, written)

    report = out_dir / "report.md"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text("\n".join(lines).rstrip() + "\n", encoding="utf-8")
    written["report"] = report
    log.info("report written: %s (%d plots)", report, sum(1 for p in written.values() if p.suffix == ".png"))
    return written


def _examples_section(path: Path, classes: Sequence[str], plots: Path, out_dir: Path, written: dict[str, Path]) -> list[str]:
    try:
        ex = dict(np.load(path))
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: cannot read examples ({e})") from e
    unknown = set(ex) - set(EXAMPLE_KEYS)
    if unknown:
        log.warning("%s: ignoring unknown example arrays %s", path, sorted(unknown))
    lines = ["## Examples", ""]
    if {"retrieval_query_frames", "retrieval_neighbour_frames", "retrieval_query_labels", "retrieval_neighbour_labels"} <= set(ex):
        written["retrieval_examples"] = png = plot_retrieval_examples(
            ex["retrieval_query_frames"], ex["retrieval_neighbour_frames"], ex["retrieval_query_labels"],
            ex["retrieval_neighbour_labels"], plots / "retrieval_examples.png", classes or None,
            ex.get("retrieval_neighbour_sims"))
        lines += ["### Retrieval", "", f"![retrieval examples]({png.relative_to(out_dir).as_posix()})", ""]
    if {"pose_observed", "pose_future_real", "pose_future_generated"} <= set(ex):
        n = len(ex["pose_observed"])
        lines += ["### Generated vs real future poses", ""]
        for i in range(min(n, 3)):
            mask = ex["pose_future_mask"][i] if "pose_future_mask" in ex else None
            png = plot_pose_prediction(ex["pose_observed"][i], ex["pose_future_real"][i], ex["pose_future_generated"][i],
                                       plots / f"pose_prediction_{i}.png", mask)
            written[f"pose_prediction_{i}"] = png
            lines += [f"![pose prediction {i}]({png.relative_to(out_dir).as_posix()})", ""]
    frame_rows = [("frames_real", "real clip"), ("frames_reconstructed", "reconstructed"),
                  ("frames_future_real", "real future"), ("frames_future_generated", "predicted future")]
    present = [(k, name) for k, name in frame_rows if k in ex]
    if present:
        n = min(len(ex[k]) for k, _ in present)
        lines += ["### Generated vs real frames", ""]
        for i in range(min(n, 2)):
            png = plot_frames_comparison({name: ex[k][i] for k, name in present}, plots / f"frames_{i}.png",
                                         title="Video generation: real vs generated frames")
            written[f"frames_{i}"] = png
            lines += [f"![frames {i}]({png.relative_to(out_dir).as_posix()})", ""]
    return lines
