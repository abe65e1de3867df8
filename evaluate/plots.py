"""The report's figures: training curves, per-class accuracy, confusion matrix, retrieval, pose and frame examples."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from csvr.contracts import COCO_EDGES
from csvr.plotting import pyplot

from csvr.evaluate.metrics import as_numpy
from csvr.evaluate.training_log import log_series

GROUP_ORDER: tuple[str, ...] = ("motion", "context", "both")
# Figure 4 colours: orange = motion, blue = context, black = both.
GROUP_COLOURS: dict[str, str] = {"motion": "#e67e00", "context": "#1f5fbf", "both": "#111111"}


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
