"""Report builder: `metrics.json` + `report.md` + PNG plots from a run folder.

Reads only files (no model, no store), so it runs on any finished run folder and in tests:

    RUN_DIR/**/*.jsonl          training logs, one JSON object per line (format in docs/evaluation.md)
    RUN_DIR/metrics.json        metrics written by `csvr evaluate run` (schema `csvr-metrics/1`)
    RUN_DIR/eval/examples.npz   optional arrays for the example figures (keys in `EXAMPLE_KEYS`)

and writes `RUN_DIR/report.md` and `RUN_DIR/plots/*.png` (or into `out_dir`).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from csvr.contracts import COCO_EDGES, atomic_write_text, read_jsonl
from csvr.plotting import pyplot

from evaluate import paper
from evaluate.metrics import as_numpy

log = logging.getLogger(__name__)

METRICS_SCHEMA = "csvr-metrics/1"
GROUP_ORDER: tuple[str, ...] = ("motion", "context", "both")
# Figure 4 colours: orange = motion, blue = context, black = both.
GROUP_COLOURS: dict[str, str] = {"motion": "#e67e00", "context": "#1f5fbf", "both": "#111111"}
RESERVED_LOG_KEYS = frozenset({"step", "stage", "epoch", "time", "wall_time", "event", "split"})
NONFINITE_STRINGS = frozenset({"nan", "inf", "-inf", "+inf", "infinity", "-infinity"})


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


# --------------------------------------------------------------------------------------------------
# Training logs
# --------------------------------------------------------------------------------------------------


def _log_record_problem(rec: dict[str, Any]) -> str | None:
    if not isinstance(rec.get("step"), int) or isinstance(rec.get("step"), bool):
        return "missing or non-integer 'step'"
    if not isinstance(rec.get("stage"), str):
        return "missing or non-string 'stage'"
    return None


def read_jsonl_log(path: str | Path) -> list[dict[str, Any]]:
    """Read a training log (``csvr.contracts.read_jsonl``): one JSON object per line with int `step` and
    str `stage`. Blank lines are skipped; a malformed LAST line (a run killed mid-write) is dropped with a
    warning; a malformed line elsewhere is an error naming the file and line.
    """
    return read_jsonl(path, check=_log_record_problem)


def log_series(records: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Numeric series per key and stage: {key: {stage: (steps, values)}}; non-numeric keys ignored.

    Non-finite values are kept (as NaN/Inf) so GAN blow-ups stay visible rather than hidden.
    """
    acc: dict[str, dict[str, tuple[list[int], list[float]]]] = {}
    for rec in records:
        if "event" in rec:
            # event records (e.g. {"event": "non_finite_loss", "term": "loss/pose_l2", "value": "nan"})
            # mark their term at that step, so the blow-up shows on the right panel
            if isinstance(rec.get("term"), str):
                steps, vals = acc.setdefault(rec["term"], {}).setdefault(rec["stage"], ([], []))
                steps.append(rec["step"])
                vals.append(_as_float(rec.get("value")))
            continue
        for key, val in rec.items():
            if isinstance(val, str) and val.strip().lower() in NONFINITE_STRINGS:
                val = float(val.strip().lower().replace("infinity", "inf"))  # the trainer writes NaN/Inf as strings
            if key in RESERVED_LOG_KEYS or isinstance(val, bool) or not isinstance(val, (int, float)):
                continue
            steps, vals = acc.setdefault(key, {}).setdefault(rec["stage"], ([], []))
            steps.append(rec["step"])
            vals.append(float(val))
    return {k: {s: (np.asarray(st), np.asarray(v)) for s, (st, v) in d.items()} for k, d in acc.items()}


def _as_float(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def _smooth(v: np.ndarray, n: int) -> np.ndarray:
    if n <= 1 or len(v) < n:
        return v
    finite = np.where(np.isfinite(v), v, np.nan)
    out = np.full_like(finite, np.nan)
    for i in range(len(v)):
        window = finite[max(0, i - n + 1) : i + 1]
        if np.any(np.isfinite(window)):
            out[i] = np.nanmean(window)
    return out


def plot_training_curves(
    records: Sequence[Mapping[str, Any]], out: str | Path, keys: Sequence[str] | None = None, title: str = ""
) -> Path | None:
    """One panel per logged series (default: every `loss/*` term, then `lr`), stages side by side.

    Stages are laid out one after another along x in order of first appearance (their steps offset
    so that a stage whose steps restart at 0 does not overlap the previous one), separated by dashed
    lines. Raw values are faint, a moving average is bold. Returns None when nothing is plottable.
    """
    series = log_series(records)
    if keys is None:
        keys = sorted(k for k in series if k.startswith("loss/"))
        keys += [k for k in ("lr",) if k in series]
    keys = [k for k in keys if k in series]
    if not keys:
        return None
    stages: list[str] = []
    for rec in records:
        if rec["stage"] not in stages:
            stages.append(rec["stage"])
    # x offset per stage: stages that follow one another in the log are laid end to end; a stage whose
    # records are interleaved with the previous one's (e.g. per-epoch `eval` records inside `finetune`)
    # shares that stage's step axis and gets no separator.
    first_at = {s: next(i for i, r in enumerate(records) if r["stage"] == s) for s in stages}
    last_at = {s: max(i for i, r in enumerate(records) if r["stage"] == s) for s in stages}
    offset: dict[str, int] = {}
    separators: list[float] = []
    start = min(r["step"] for r in records if r["stage"] == stages[0])  # the first stage keeps its steps
    for i, s in enumerate(stages):
        steps = [r["step"] for r in records if r["stage"] == s]
        if i and first_at[s] < last_at[stages[i - 1]]:
            offset[s] = offset[stages[i - 1]]
            start = max(start, max(steps) + offset[s] + 1)
            continue
        if i:
            separators.append(start)
        offset[s] = start - min(steps)
        start = start + (max(steps) - min(steps)) + 1
    x_lo = min(r["step"] for r in records if r["stage"] == stages[0])
    plt = pyplot()
    ncol = min(3, len(keys))
    nrow = math.ceil(len(keys) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(5.2 * ncol, 3.3 * nrow), squeeze=False)
    cmap = plt.get_cmap("tab10")
    for ax, key in zip(axes.flat, keys):
        for si, stage in enumerate(stages):
            if stage not in series[key]:
                continue
            x, y = series[key][stage]
            x = x + offset[stage]
            colour = cmap(si % 10)
            ax.plot(x, y, color=colour, alpha=0.25, lw=0.8)
            ax.plot(x, _smooth(y, max(1, len(y) // 25)), color=colour, lw=1.8, label=stage,
                    marker="o" if len(y) < 3 else None, ms=4)
            bad = ~np.isfinite(y)
            if bad.any():
                ax.scatter(x[bad], np.full(bad.sum(), 0.04), marker="x", s=60, color="red", zorder=5,
                           transform=ax.get_xaxis_transform(), label=f"{stage}: non-finite")
        for sx in separators:
            ax.axvline(sx, color="grey", ls="--", lw=0.8)
        finite = np.concatenate([v[np.isfinite(v)] for _, v in series[key].values()] or [np.array([])])
        if key == "lr" or (finite.size and finite.min() > 0 and finite.max() / max(finite.min(), 1e-30) > 100):
            ax.set_yscale("log")
        ax.set_xlim(x_lo - 0.5, max(start - 0.5, x_lo + 0.5))  # every panel spans all stages, so they line up
        ax.set_title(key, fontsize=11)
        ax.set_xlabel("step (stages in order)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    for ax in list(axes.flat)[len(keys) :]:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=13)
        fig.tight_layout(rect=(0, 0, 1, 1 - 0.5 / fig.get_figheight()))  # keep the title off the top panels
    else:
        fig.tight_layout()
    return _save(fig, out)


def _save(fig: Any, out: str | Path) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    pyplot().close(fig)
    return out


# --------------------------------------------------------------------------------------------------
# Recognition plots
# --------------------------------------------------------------------------------------------------


def load_class_groups(path: str | Path) -> dict[str, str]:
    """Class -> group ("motion" | "context" | "both") from a synthetic.json-style file (`groups` key)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: cannot read class groups ({e})") from e
    groups = data.get("groups") if isinstance(data, dict) else None
    if not isinstance(groups, dict):
        raise ValueError(f"{path}: no 'groups' mapping {{class: motion|context|both}}")
    bad = {c: g for c, g in groups.items() if g not in GROUP_ORDER}
    if bad:
        raise ValueError(f"{path}: unknown groups {bad} (expected one of {GROUP_ORDER})")
    return {str(c): str(g) for c, g in groups.items()}


def order_by_group(classes: Sequence[str], groups: Mapping[str, str] | None) -> list[tuple[str, list[str]]]:
    """Classes split into (group, classes) in Figure-4 order; classes without a group go to 'other'."""
    if not groups:
        return [("all", list(classes))]
    out = [(g, [c for c in classes if groups.get(c) == g]) for g in GROUP_ORDER]
    other = [c for c in classes if groups.get(c) not in GROUP_ORDER]
    if other:
        out.append(("other", other))
    return [(g, cs) for g, cs in out if cs]


def plot_per_class_accuracy(
    per_class: Mapping[str, Sequence[float | None]],
    classes: Sequence[str],
    out: str | Path,
    groups: Mapping[str, str] | None = None,
    title: str = "Per-class accuracy",
) -> Path:
    """Grouped bars like the paper's Figure 4: one bar per variant (e.g. f_d, f_s, f_i) per class,
    classes ordered motion | context | both, tick labels coloured by group (orange/blue/black)."""
    for name, vals in per_class.items():
        if len(vals) != len(classes):
            raise ValueError(f"per-class accuracy {name!r} has {len(vals)} values for {len(classes)} classes")
    grouped = order_by_group(classes, groups)
    ordered = [c for _, cs in grouped for c in cs]
    index = {c: i for i, c in enumerate(classes)}
    plt = pyplot()
    variants = list(per_class)
    width = 0.8 / max(1, len(variants))
    many = len(ordered) > 30  # e.g. UCF101's 101 classes: narrower bars, smaller labels, capped width
    width_in = min(max(7.0, 0.55 * len(ordered) * max(1, len(variants)) ** 0.5 + 2), 32.0)
    fig, ax = plt.subplots(figsize=(width_in, 5.2 if many else 4.6))
    x = np.arange(len(ordered))
    cmap = plt.get_cmap("Set2")
    for vi, name in enumerate(variants):
        vals = np.array([np.nan if per_class[name][index[c]] is None else per_class[name][index[c]] for c in ordered], float)
        ax.bar(x + (vi - (len(variants) - 1) / 2) * width, 100 * vals, width, label=name, color=cmap(vi % 8),
               edgecolor="black", linewidth=0.4)
    ax.set_xticks(x)
    ax.set_xticklabels(ordered, rotation=90 if many else 45, ha="center" if many else "right", fontsize=6 if many else 9)
    for tick, c in zip(ax.get_xticklabels(), ordered):
        tick.set_color(GROUP_COLOURS.get(groups.get(c, "") if groups else "", "#111111"))
    pos = 0
    for gi, (g, cs) in enumerate(grouped):
        if gi:
            ax.axvline(pos - 0.5, color="grey", ls="--", lw=0.8)
        ax.text(pos + (len(cs) - 1) / 2, 104, g, ha="center", va="bottom", fontsize=10, fontweight="bold",
                color=GROUP_COLOURS.get(g, "#111111"))
        pos += len(cs)
    ax.set_ylim(0, 112)
    ax.set_xlim(-0.6, len(ordered) - 0.4)
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title, pad=18)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return _save(fig, out)


def plot_confusion_matrix(cm: Any, classes: Sequence[str], out: str | Path, title: str = "Confusion matrix") -> Path:
    """Row-normalised confusion matrix (rows = true class) with counts written in the cells."""
    cm = as_numpy(cm).astype(np.int64)
    if cm.shape != (len(classes), len(classes)):
        raise ValueError(f"confusion matrix {cm.shape} does not fit {len(classes)} classes")
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    plt = pyplot()
    size = min(max(4.5, 0.45 * len(classes) + 2.5), 26.0)
    tick_fs = 8 if len(classes) <= 30 else 5
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)))
    ax.set_yticks(range(len(classes)))
    ax.set_xticklabels(classes, rotation=45 if len(classes) <= 30 else 90, ha="right" if len(classes) <= 30 else "center",
                       fontsize=tick_fs)
    ax.set_yticklabels(classes, fontsize=tick_fs)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if len(classes) <= 30:
        for i in range(len(classes)):
            for j in range(len(classes)):
                if cm[i, j]:
                    ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                            color="white" if norm[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, label="fraction of true class")
    ax.set_title(title)
    fig.tight_layout()
    return _save(fig, out)


# --------------------------------------------------------------------------------------------------
# Example figures: retrieval, poses, frames
# --------------------------------------------------------------------------------------------------


def to_display_image(img: Any) -> np.ndarray:
    """uint8 (H, W, 3) from uint8 or float frames; floats in [0, 1] are scaled, other floats min-max."""
    a = as_numpy(img)
    if a.dtype == np.uint8:
        return a
    a = a.astype(np.float64)
    lo, hi = float(np.nanmin(a)), float(np.nanmax(a))
    if lo < -1e-3 or hi > 1 + 1e-3:  # e.g. normalised tensors or [-1, 1] generator output
        a = (a - lo) / max(hi - lo, 1e-12)
    return (np.clip(a, 0, 1) * 255).round().astype(np.uint8)


def _label_name(classes: Sequence[str] | None, i: int) -> str:
    return classes[i] if classes is not None and 0 <= i < len(classes) else str(i)


def plot_retrieval_examples(
    query_frames: Any,
    neighbour_frames: Any,
    query_labels: Any,
    neighbour_labels: Any,
    out: str | Path,
    classes: Sequence[str] | None = None,
    neighbour_sims: Any | None = None,
) -> Path:
    """Each row: a query (test) video frame, then its nearest training videos; green frame = same class."""
    q, n = as_numpy(query_frames), as_numpy(neighbour_frames)
    ql, nl = as_numpy(query_labels).astype(int), as_numpy(neighbour_labels).astype(int)
    if q.ndim != 4 or n.ndim != 5 or n.shape[0] != q.shape[0] or nl.shape != n.shape[:2] or ql.shape != (len(q),):
        raise ValueError(f"retrieval example shapes do not fit: query {q.shape}, neighbours {n.shape}, "
                         f"labels {ql.shape}/{nl.shape}")
    sims = None if neighbour_sims is None else as_numpy(neighbour_sims)
    rows, k = n.shape[:2]
    plt = pyplot()
    aspect = q.shape[1] / max(q.shape[2], 1)  # frame height / width
    fig, axes = plt.subplots(rows, k + 1, figsize=(2.1 * (k + 1), (2.1 * aspect + 0.55) * rows + 0.5), squeeze=False)
    for r in range(rows):
        panels = [(q[r], ql[r], "query", None)] + [(n[r, j], nl[r, j], f"#{j + 1}", j) for j in range(k)]
        for c, (img, lab, tag, j) in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(to_display_image(img))
            ax.set_xticks([])
            ax.set_yticks([])
            colour = "#1f5fbf" if j is None else ("#2ca02c" if lab == ql[r] else "#d62728")
            for spine in ax.spines.values():
                spine.set_color(colour)
                spine.set_linewidth(4)
            text = f"{tag}: {_label_name(classes, int(lab))}"
            if j is not None and sims is not None:
                text += f"\ncos {sims[r, j]:.2f}"
            ax.set_title(text, fontsize=8, color=colour)
    fig.suptitle("Retrieval: test query (blue) and its nearest training videos (green = same class)", fontsize=10)
    fig.tight_layout(h_pad=1.2)
    return _save(fig, out)


def _draw_skeleton(ax: Any, joints: np.ndarray, colour: str, mask: np.ndarray | None = None, alpha: float = 1.0) -> None:
    vis = np.ones(17, bool) if mask is None else mask.astype(bool)
    for a, b in COCO_EDGES:
        if vis[a] and vis[b]:
            ax.plot(joints[[a, b], 0], joints[[a, b], 1], color=colour, lw=2, alpha=alpha, solid_capstyle="round")
    ax.scatter(joints[vis, 0], joints[vis, 1], s=8, color=colour, alpha=alpha, zorder=3)


def plot_pose_prediction(
    observed: Any,
    future_real: Any,
    future_generated: Any,
    out: str | Path,
    future_mask: Any | None = None,
    max_panels: int = 10,
) -> Path:
    """Skeletons over time for ONE sequence: top row observed input then real future (black),
    bottom row the generated future (orange) over the faint real one. Coordinates normalised (y down)."""
    obs, real, gen = as_numpy(observed), as_numpy(future_real), as_numpy(future_generated)
    if obs.ndim != 3 or obs.shape[1:] != (17, 2) or real.shape != gen.shape or real.shape[1:] != (17, 2):
        raise ValueError(f"pose shapes must be (T, 17, 2); got observed {obs.shape}, real {real.shape}, "
                         f"generated {gen.shape}")
    mask = None if future_mask is None else as_numpy(future_mask).astype(bool)
    t_obs = np.linspace(0, len(obs) - 1, min(len(obs), max(1, max_panels // 2))).round().astype(int)
    t_fut = np.linspace(0, len(real) - 1, min(len(real), max_panels - len(t_obs))).round().astype(int)
    ncol = max(len(t_obs) + len(t_fut), 1)
    allpts = np.concatenate([obs.reshape(-1, 2), real.reshape(-1, 2), gen.reshape(-1, 2)])
    allpts = allpts[np.all(np.isfinite(allpts), axis=1)]
    lo, hi = allpts.min(axis=0), allpts.max(axis=0)
    # square-ish panels around the figure: widen the narrow axis to 3/4 of the long one
    centre, half = (lo + hi) / 2, np.maximum((hi - lo) / 2, 0.75 * float((hi - lo).max()) / 2)
    lo, hi = centre - half, centre + half
    pad = 0.08 * max(float((hi - lo).max()), 1e-3)
    plt = pyplot()
    fig, axes = plt.subplots(2, ncol, figsize=(1.9 * ncol, 5.0), squeeze=False)
    for ax in axes.flat:
        ax.set_xlim(lo[0] - pad, hi[0] + pad)
        ax.set_ylim(hi[1] + pad, lo[1] - pad)  # image coordinates: y down
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
    for c, t in enumerate(t_obs):
        _draw_skeleton(axes[0, c], obs[t], "#1f5fbf")
        axes[0, c].set_title(f"input t={t}", fontsize=8)
        axes[1, c].axis("off")
    for i, t in enumerate(t_fut):
        c = len(t_obs) + i
        m = None if mask is None else mask[t]
        _draw_skeleton(axes[0, c], real[t], "#111111", m)
        axes[0, c].set_title(f"real +{t + 1}", fontsize=8)
        _draw_skeleton(axes[1, c], real[t], "#111111", m, alpha=0.2)
        _draw_skeleton(axes[1, c], gen[t], "#e67e00")
        axes[1, c].set_title(f"generated +{t + 1}", fontsize=8, color="#e67e00")
    fig.suptitle("Pose prediction: input (blue), real future (black), generated future (orange)", fontsize=10)
    fig.tight_layout(h_pad=1.6)
    return _save(fig, out)


def plot_frames_comparison(
    rows: Mapping[str, Any], out: str | Path, max_frames: int = 8, title: str = "Generated vs real frames"
) -> Path:
    """A grid with one row per named clip (T, H, W, 3), e.g. {"real": ..., "generated": ...}; frames
    sampled evenly when T > max_frames."""
    clips = {name: as_numpy(v) for name, v in rows.items()}
    if not clips:
        raise ValueError("no clips to plot")
    for name, v in clips.items():
        if v.ndim != 4 or v.shape[-1] != 3:
            raise ValueError(f"clip {name!r} must be (T, H, W, 3), got {v.shape}")
    t = max(len(v) for v in clips.values())
    cols = np.linspace(0, t - 1, min(t, max_frames)).round().astype(int)
    plt = pyplot()
    fig, axes = plt.subplots(len(clips), len(cols), figsize=(1.6 * len(cols) + 0.6, 1.7 * len(clips) + 0.5), squeeze=False)
    for r, (name, clip) in enumerate(clips.items()):
        for c, ti in enumerate(cols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if ti < len(clip):
                ax.imshow(to_display_image(clip[ti]))
            else:
                ax.axis("off")
            if r == 0:
                ax.set_title(f"t={ti}", fontsize=8)
            if c == 0:
                ax.set_ylabel(name, fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, out)


# --------------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------------


def _fmt(v: Any, scale: float = 100.0, digits: int = 1) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return f"{float(v) * scale:.{digits}f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub Markdown table (cells converted with str)."""
    lines = ["| " + " | ".join(map(str, header)) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(map(str, r)) + " |" for r in rows]
    return "\n".join(lines)


def ablation_markdown(
    table: str,
    ours: Mapping[str, Mapping[str, float | None]],
    datasets: Sequence[str] | None = None,
    paper_datasets: Sequence[str] | None = None,
) -> str:
    """An ablation table (paper Table I/III/IV/V) with our top-1 (fractions, printed in %) beside the
    paper's. `ours`: {row key: {dataset: top-1}}; rows we did not run show '–'. Unknown row keys raise."""
    rows = paper.ablation_rows(table)
    known = {r.key for r in rows}
    unknown = set(ours) - known
    if unknown:
        raise ValueError(f"table {table}: unknown row keys {sorted(unknown)} (known: {sorted(known)})")
    if datasets is None:
        datasets = sorted({d for v in ours.values() for d in v})
    if paper_datasets is None:
        paper_datasets = list(rows[0].paper)
    header = ["Row"] + [f"ours {d}" for d in datasets] + [f"paper {d}" for d in paper_datasets]
    body = []
    for r in rows:
        mine = ours.get(r.key, {})
        body.append([r.label] + [_fmt(mine.get(d)) for d in datasets]
                    + [_fmt(r.paper.get(d), scale=1.0) for d in paper_datasets])
    text = f"**{paper.TABLE_TITLES[table.upper()]}** (top-1 %)\n\n" + markdown_table(header, body)
    if table.upper() in paper.TABLE_NOTES:
        text += f"\n\n*Note: {paper.TABLE_NOTES[table.upper()]}*"
    return text


# --------------------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------------------


def load_metrics(path: str | Path) -> dict[str, Any]:
    """Read and check a metrics.json (schema `csvr-metrics/1`)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise FileNotFoundError(f"{path}: cannot read metrics ({e})") from e
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e.msg}, line {e.lineno})") from e
    if not isinstance(data, dict) or data.get("schema") != METRICS_SCHEMA:
        raise ValueError(f"{path}: not a {METRICS_SCHEMA} metrics file (schema={data.get('schema') if isinstance(data, dict) else None!r})")
    return data


def write_metrics(path: str | Path, metrics: Mapping[str, Any]) -> Path:
    """Write metrics.json (adds the schema tag; NaN written as null)."""
    def clean(v: Any) -> Any:
        if isinstance(v, Mapping):
            return {str(k): clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        if isinstance(v, np.ndarray):
            return clean(v.tolist())
        if isinstance(v, np.generic):
            v = v.item()
        if isinstance(v, float) and not math.isfinite(v):
            return None
        return v

    data = {"schema": METRICS_SCHEMA, **clean(dict(metrics))}
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def _recognition_section(m: Mapping[str, Any], classes: Sequence[str], groups: Mapping[str, str] | None,
                         plots: Path, out_dir: Path) -> list[str]:
    rec = m["recognition"]
    lines = ["## Action recognition", ""]
    lines.append(markdown_table(
        ["clip top-1 (%)", "video top-1 (%)", "test videos", "clips"],
        [[_fmt(rec.get("clip_top1")), _fmt(rec.get("video_top1")), rec.get("num_videos", "–"), rec.get("num_clips", "–")]],
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
                body.append([c, g] + [_fmt(v[index[c]]) for v in variants.values()])
            means = []
            for v in variants.values():
                vals = [v[index[c]] for c in cs if v[index[c]] is not None]
                means.append(_fmt(float(np.mean(vals))) if vals else "–")
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
    body = [["ours"] + [_fmt(recall[k]) for k in ks]]
    run = m.get("run", {})
    ref = paper.TABLE_VIII_CSVR.get(str(run.get("backbone", "")), {}).get(str(run.get("dataset", "")))
    if ref:
        body.append([f"paper (CSVR {run['backbone']}, K400-pretrained)"] + [_fmt(ref.get(k), 1.0) for k in ks])
    lines.append(markdown_table([""] + [f"R@{k} (%)" for k in ks], body))
    lines += ["", f"{ret.get('num_queries', '?')} test queries against {ret.get('num_gallery', '?')} training "
                  "videos, cosine similarity; a query is a hit at k when any of its k nearest training videos "
                  "shares its label."]
    return lines + [""]


def _pretext_section(m: Mapping[str, Any]) -> list[str]:
    p = m["pretext"]
    gen = p.get("generation") or {}
    rows = [
        ["context matching top-1 (%) ↑", _fmt(p.get("context_top1")), _fmt(paper.TABLE_II["context_top1"][-1], 1.0)],
        ["pose prediction MSE ×100 ↓", _fmt(p.get("pose_mse_x100"), 1.0, 2), _fmt(paper.TABLE_II["pose_mse_x100"][-1], 1.0)],
        ["video generation IS ↑ (our classifier)", _fmt(gen.get("inception_score"), 1.0, 2), _fmt(paper.TABLE_II["video_is"][-1], 1.0)],
    ]
    if gen.get("inception_score_real") is not None:
        rows.append(["IS of real clips (ceiling for this classifier)", _fmt(gen["inception_score_real"], 1.0, 2), "–"])
    for key, label, digits in (("psnr", "reconstruction PSNR (dB) ↑", 2), ("ssim", "reconstruction SSIM ↑", 3),
                               ("psnr_future", "prediction PSNR (dB) ↑", 2), ("ssim_future", "prediction SSIM ↑", 3)):
        if gen.get(key) is not None:
            rows.append([label, _fmt(gen[key], 1.0, digits), "–"])
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
        return [_fmt(d.get("psnr"), 1.0, 2), _fmt(d.get("ssim"), 1.0, 3)]

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
