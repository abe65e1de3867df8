"""Checkpoints: atomic saves that `torch.load(weights_only=True)` can read, and exact-resume RNG state.

A checkpoint is a dict of tensors and primitive containers only (no pickled classes): model and
optimizer/scheduler state dicts, the RNG states of torch (CPU and CUDA), NumPy and Python's `random`
(converted to tensors/lists), the training position, and the config as a plain dict. Saving writes a
temporary file in the same folder and renames it over the target, so a killed run never leaves a
half-written checkpoint behind.
"""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from csvr.contracts import atomic_write

log = logging.getLogger(__name__)

FORMAT = "csvr-checkpoint/1"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable, or does not fit what loads it; the message names the file."""


def save_atomic(obj: dict, path: str | Path) -> Path:
    """Save `obj` with torch.save to `path` atomically (temp file + fsync + rename: `atomic_write`)."""
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            torch.save(obj, fh)

    return atomic_write(path, write)


def load(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint with `weights_only=True`; refuses files that are not csvr checkpoints."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001  (torch raises several types; the message names the file)
        raise CheckpointError(f"{path}: cannot be read as a weights-only checkpoint ({exc})") from exc
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a {FORMAT} checkpoint (format={obj.get('format') if isinstance(obj, dict) else type(obj).__name__})")
    return obj


# ------------------------------------------------------------------------------------------ RNG state
def rng_state() -> dict:
    """Every global RNG state as tensors and primitive containers (weights_only-safe)."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"name": np_state[0], "keys": torch.from_numpy(np_state[1].astype(np.int64)),
                  "pos": int(np_state[2]), "has_gauss": int(np_state[3]), "gauss": float(np_state[4])},
        "python": {"version": py_state[0], "state": list(py_state[1]),
                   "gauss": py_state[2]},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what `rng_state` captured."""
    torch.set_rng_state(state["torch"].cpu())
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def seed_everything(seed: int) -> None:
    """Seed torch (all devices), NumPy and Python's random."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def set_deterministic(enabled: bool) -> None:
    """Deterministic kernels (and the cuBLAS workspace setting they need) when `enabled`."""
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    else:
        torch.use_deterministic_algorithms(False)


# ----------------------------------------------------------------------------------- build and restore
def make_checkpoint(*, kind: str, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None,
                    scheduler: Any | None, progress: dict, config: dict, extra: dict | None = None) -> dict:
    """Assemble a checkpoint dict from the live objects (unwraps DDP)."""
    net = model.module if hasattr(model, "module") else model
    return {
        "format": FORMAT,
        "kind": kind,
        "model": {k: v.detach().cpu() for k, v in net.state_dict().items()},
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "rng": rng_state(),
        "progress": dict(progress),
        "config": config,
        **(extra or {}),
    }


def restore(ckpt: dict, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None,
            scheduler: Any | None = None, rng: bool = True, path: str | Path = "<checkpoint>") -> dict:
    """Load model (strict), optimizer, scheduler and RNG state from `ckpt`; returns its progress dict."""
    net = model.module if hasattr(model, "module") else model
    try:
        net.load_state_dict(ckpt["model"], strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: model weights do not fit this model: {exc}") from None
    if optimizer is not None and ckpt.get("optimizer") is not None:
        optimizer.load_state_dict(ckpt["optimizer"])
    if scheduler is not None and ckpt.get("scheduler") is not None:
        scheduler.load_state_dict(ckpt["scheduler"])
    if rng and ckpt.get("rng") is not None:
        set_rng_state(ckpt["rng"])
    return dict(ckpt.get("progress", {}))
