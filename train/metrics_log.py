"""Per-step training logs (JSONL + TensorBoard), step timing, gradient norms and PNG snapshots.

`log.jsonl` holds one JSON object per line with keys `step`, `stage`, `epoch`, `loss/<term>`, `lr`,
`grad_norm/<module>`, `samples_per_s`, `data_wait_frac` (plus `time` and stage-specific extras such as
`acc/top1`). The same scalars go to TensorBoard under `<stage>/<key>`. Only rank 0 writes.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from csvr.contracts import COCO_EDGES
from csvr.plotting import pyplot

log = logging.getLogger(__name__)



class StepTimer:
    """Splits each step's wall time into data wait (from the previous step's end) and compute."""

    def __init__(self) -> None:
        self._t_end = time.perf_counter()
        self._t_data = self._t_end

    def data_ready(self) -> None:
        """Call when the batch has arrived (on the device)."""
        self._t_data = time.perf_counter()

    def step_done(self, samples: int) -> dict[str, float]:
        """Call after the optimizer step; returns samples/s, data-wait fraction and step seconds."""
        now = time.perf_counter()
        total = max(now - self._t_end, 1e-9)
        wait = max(self._t_data - self._t_end, 0.0)
        self._t_end = now
        return {"samples_per_s": samples / total, "data_wait_frac": wait / total, "step_s": total}

    def reset(self) -> None:
        """Restart the clock (after evaluation, checkpointing, image saving)."""
        self._t_end = time.perf_counter()
        self._t_data = self._t_end


class MissingGradientError(RuntimeError):
    """A module group that the step trains got no gradient (it did not take part in the loss)."""


def grad_norms(groups: dict[str, torch.nn.Module]) -> dict[str, float]:
    """L2 norm of the gradients of each named, trained module group.

    Parameters with `requires_grad=False` (frozen) are ignored; a trainable parameter without a
    gradient after backward means its group was listed as trained but did not reach the loss, which
    is a bug (on one process it silently stays untrained; under DDP it deadlocks the reducer), so it
    raises `MissingGradientError` naming the group and the parameters.
    """
    out: dict[str, float] = {}
    for name, module in groups.items():
        params = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
        missing = [n for n, p in params if p.grad is None]
        if missing:
            raise MissingGradientError(
                f"module group {name!r} is trained in this step but {len(missing)} of its {len(params)} trainable "
                f"parameters got no gradient (first: {missing[:3]}); it does not take part in the loss")
        if params:
            sq = torch.stack([p.grad.detach().float().pow(2).sum() for _, p in params])
            out[f"grad_norm/{name}"] = float(sq.sum().sqrt())
    return out


class MetricsLogger:
    """Writes scalar records to `run_dir/log.jsonl` and TensorBoard (rank 0 only; no-op elsewhere)."""

    def __init__(self, run_dir: str | Path, enabled: bool = True, tensorboard: bool = True):
        self.run_dir = Path(run_dir)
        self.enabled = enabled
        self._fh = None
        self._tb = None
        if not enabled:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.run_dir / "log.jsonl", "a", buffering=1)
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(log_dir=str(self.run_dir / "tb"))

    def log(self, record: dict[str, Any]) -> None:
        """Append one record (must contain `step` and `stage`); non-finite numbers are written as strings."""
        if not self.enabled:
            return
        clean = {k: _jsonable(v) for k, v in record.items()}
        clean.setdefault("time", time.time())
        self._fh.write(json.dumps(clean) + "\n")
        if self._tb is not None:
            step, stage = int(record["step"]), record.get("stage", "train")
            for key, value in record.items():
                if key in ("step", "stage", "epoch", "time") or not isinstance(value, (int, float)):
                    continue
                self._tb.add_scalar(f"{stage}/{key}", float(value), step)

    def close(self) -> None:
        """Flush and close the JSONL file and TensorBoard writer."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        if self._tb is not None:
            self._tb.flush()
            self._tb.close()
            self._tb = None


def _jsonable(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        value = value.item()
    if isinstance(value, (np.floating, np.integer)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


# -------------------------------------------------------------------------------------------- images
def _pose_limits(poses: list[torch.Tensor], masks: list[torch.Tensor | None]) -> tuple[np.ndarray, np.ndarray]:
    """Shared (x, y) limits around every drawn joint, with a 10% margin; the [0, 1] box when none is."""
    pts = [p.detach().float().cpu().numpy()[m.cpu().numpy().astype(bool)] if m is not None
           else p.detach().float().cpu().numpy().reshape(-1, 2) for p, m in zip(poses, masks)]
    pts = np.concatenate([q for q in pts if len(q)] or [np.array([[0.0, 0.0], [1.0, 1.0]])])
    lo, hi = pts.min(0), pts.max(0)
    pad = 0.1 * max(float((hi - lo).max()), 1e-3)
    return lo - pad, hi + pad


def save_pose_plot(path: str | Path, current: torch.Tensor, future_real: torch.Tensor,
                   future_gen: torch.Tensor, mask: torch.Tensor | None = None, max_frames: int = 8,
                   current_mask: torch.Tensor | None = None) -> Path:
    """Skeleton plot of one sample: rows = observed poses, real future, generated future.

    Poses are (T, 17, 2) with y down, in crop or person-centred coordinates (`data.pose_norm`); every
    panel shares the limits of the drawn joints. Joints unobserved in the real poses (`current_mask`,
    `mask` for the future) are not drawn; generated poses are drawn where the real future was observed.
    """
    plt = pyplot()
    rows = [("current", current), ("future (real)", future_real), ("future (generated)", future_gen)]
    cols = min(max_frames, max(r[1].shape[0] for r in rows))
    fig, axes = plt.subplots(3, cols, figsize=(1.6 * cols, 5.0), squeeze=False)
    lo, hi = _pose_limits([current, future_real, future_gen], [current_mask, mask, mask])
    for r, (title, poses) in enumerate(rows):
        p = poses.detach().float().cpu().numpy()
        idx = np.linspace(0, p.shape[0] - 1, cols).round().astype(int)
        for c, t in enumerate(idx):
            ax = axes[r][c]
            row_mask = current_mask if r == 0 else mask
            m = row_mask[t].cpu().numpy().astype(bool) if (row_mask is not None and t < row_mask.shape[0]) \
                else np.ones(17, bool)
            for a, b in COCO_EDGES:
                if m[a] and m[b]:
                    ax.plot([p[t, a, 0], p[t, b, 0]], [p[t, a, 1], p[t, b, 1]], "-", lw=1.2,
                            color=("tab:blue", "tab:green", "tab:red")[r])
            ax.scatter(p[t, m, 0], p[t, m, 1], s=4, color="k")
            ax.set_xlim(lo[0], hi[0])
            ax.set_ylim(hi[1], lo[1])
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(title, fontsize=7)
            ax.set_title(f"t={t}", fontsize=6)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def _to_uint8_frames(video: torch.Tensor) -> np.ndarray:
    """(3, T, H, W) float in [-1, 1] (generator range; clamped) -> (T, H, W, 3) uint8."""
    v = ((video.detach().float().cpu() + 1) / 2).clamp(0, 1)
    return (v.permute(1, 2, 3, 0).numpy() * 255).round().astype(np.uint8)


def save_video_grid(path: str | Path, rows: dict[str, torch.Tensor], max_frames: int = 8) -> Path:
    """Write a PNG grid: one row per named clip (3, T, H, W) in [-1, 1], frames left to right."""
    from PIL import Image

    frames = {name: _to_uint8_frames(v) for name, v in rows.items()}
    scale = max(1, 96 // max(f.shape[1] for f in frames.values()))  # small generated videos: enlarge
    if scale > 1:
        frames = {k: f.repeat(scale, axis=1).repeat(scale, axis=2) for k, f in frames.items()}
    h = max(f.shape[1] for f in frames.values())
    w = max(f.shape[2] for f in frames.values())
    cols = min(max_frames, max(f.shape[0] for f in frames.values()))
    canvas = np.full((len(frames) * (h + 2), cols * (w + 2), 3), 255, np.uint8)
    for r, f in enumerate(frames.values()):
        idx = np.linspace(0, f.shape[0] - 1, cols).round().astype(int)
        for c, t in enumerate(idx):
            img = f[t]
            canvas[r * (h + 2):r * (h + 2) + img.shape[0], c * (w + 2):c * (w + 2) + img.shape[1]] = img
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(canvas).save(path)
    (path.with_suffix(".txt")).write_text("rows: " + ", ".join(frames) + "\n")
    return path
