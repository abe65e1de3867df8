"""Per-video features on disk (HDF5 via h5py), so retrieval and probes reuse one extraction.

Layout of a features file (schema `csvr-features/1`):

    /<split>/features   float32 (V, D)   one row per video (clip features averaged over its clips)
    /<split>/labels     int64   (V,)
    /<split>/video_ids  str     (V,)     the store's `videos/id` (or any stable id)
    root attrs: schema, created, plus caller attrs (model, backbone, checkpoint, checkpoint_sha256,
                store, clips_per_video, ...); nested values are stored as JSON strings.

A file holds any number of splits ("train", "test", ...). Writes go to a temporary file that is
renamed into place, so a killed extraction never leaves a half-written file that looks complete.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from csvr.contracts import atomic_write
from csvr.evaluate.metrics import VideoAccumulator, as_numpy

log = logging.getLogger(__name__)

SCHEMA = "csvr-features/1"


@dataclass
class FeatureSet:
    """Features of the videos of one split: rows of `features`, `labels` and `video_ids` align."""

    features: np.ndarray  # (V, D) float32
    labels: np.ndarray  # (V,) int64
    video_ids: list[str]
    split: str
    attrs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.features = np.asarray(as_numpy(self.features), dtype=np.float32)
        self.labels = np.asarray(as_numpy(self.labels), dtype=np.int64)
        self.video_ids = [str(v) for v in self.video_ids]
        if self.features.ndim != 2:
            raise ValueError(f"split {self.split!r}: features must be (V, D), got {self.features.shape}")
        n = len(self.features)
        if self.labels.shape != (n,) or len(self.video_ids) != n:
            raise ValueError(
                f"split {self.split!r}: {n} feature rows, labels {self.labels.shape}, "
                f"{len(self.video_ids)} video ids: they must align"
            )
        if len(set(self.video_ids)) != n:
            raise ValueError(f"split {self.split!r}: duplicate video ids")
        if not self.split or "/" in self.split:
            raise ValueError(f"invalid split name {self.split!r}")

    def __len__(self) -> int:
        return len(self.labels)


def _attr_value(v: Any) -> Any:
    if isinstance(v, (str, int, float, bool, np.integer, np.floating)):
        return v
    return json.dumps(v, sort_keys=True, default=str)


def write_features(path: str | Path, sets: Iterable[FeatureSet], attrs: Mapping[str, Any] | None = None) -> Path:
    """Write the given splits (and root attrs) to `path` atomically; replaces an existing file."""
    path = Path(path)
    sets = list(sets)
    if not sets:
        raise ValueError(f"{path}: no feature sets to write")
    names = [s.split for s in sets]
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: split names repeat: {names}")
    dims = {s.features.shape[1] for s in sets}
    if len(dims) > 1:
        raise ValueError(f"{path}: splits have different feature sizes {sorted(dims)}")

    def write(tmp: Path) -> None:
        with h5py.File(tmp, "w") as f:
            f.attrs["schema"] = SCHEMA
            f.attrs["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
            for k, v in (attrs or {}).items():
                f.attrs[k] = _attr_value(v)
            for s in sets:
                g = f.create_group(s.split)
                g.create_dataset("features", data=s.features, compression="gzip", compression_opts=4)
                g.create_dataset("labels", data=s.labels)
                g.create_dataset("video_ids", data=np.array(s.video_ids, dtype=object), dtype=h5py.string_dtype())
                for k, v in s.attrs.items():
                    g.attrs[k] = _attr_value(v)

    atomic_write(path, write)
    log.info("wrote features %s: %s", path, ", ".join(f"{s.split}={len(s)}x{s.features.shape[1]}" for s in sets))
    return path


def _decode_attrs(attrs: h5py.AttributeManager) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in attrs.items():
        if isinstance(v, bytes):
            v = v.decode()
        if isinstance(v, np.generic):
            v = v.item()
        if isinstance(v, str) and v[:1] in "[{":
            try:
                v = json.loads(v)
            except json.JSONDecodeError:
                pass
        out[k] = v
    return out


def _open(path: Path) -> h5py.File:
    if not path.is_file():
        raise FileNotFoundError(f"features file not found: {path}")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise ValueError(f"{path}: not a readable HDF5 file ({e})") from e
    schema = f.attrs.get("schema")
    if schema != SCHEMA:
        f.close()
        raise ValueError(f"{path}: unknown features schema {schema!r} (expected {SCHEMA!r})")
    return f


def read_attrs(path: str | Path) -> dict[str, Any]:
    """Root attributes of a features file (JSON-encoded values decoded)."""
    with _open(Path(path)) as f:
        return _decode_attrs(f.attrs)


def read_features(path: str | Path, split: str) -> FeatureSet:
    """Read one split of a features file."""
    path = Path(path)
    with _open(path) as f:
        if split not in f:
            raise KeyError(f"{path}: no split {split!r} (has {sorted(f.keys())})")
        g = f[split]
        for name in ("features", "labels", "video_ids"):
            if name not in g:
                raise ValueError(f"{path}: split {split!r} lacks dataset {name!r}")
        ids = [v.decode() if isinstance(v, bytes) else str(v) for v in g["video_ids"][()]]
        return FeatureSet(g["features"][()], g["labels"][()], ids, split, _decode_attrs(g.attrs))


# --------------------------------------------------------------------------------------------------
# Extraction: the model and the loader are passed in by the pipeline.
# --------------------------------------------------------------------------------------------------

FeatureFn = Callable[[Any], Any]
"""Maps a batch input (e.g. clips (B, 3, T, H, W) float, on device) to features (B, D)."""


def extract_video_features(
    feature_fn: FeatureFn,
    batches: Iterable[Mapping[str, Any]],
    split: str,
    video_ids: Mapping[int, str] | None = None,
    input_key: str | None = "clip",
) -> FeatureSet:
    """Run `feature_fn` over clip batches and average the clip features of each video (streaming:
    only per-video sums are kept, never the batches or the clip features).

    Each batch is a mapping with `input_key` (the model input), `label` (B,) and `video_index` (B,)
    -- the keys of the contract's eval dataset after `ClipAugment(train=False)`; with
    `input_key=None` the whole batch is passed (models that also read `pose`). `video_ids` maps a
    video index to its string id (the store's `videos/id`); without it the index is used. Runs under
    `torch.no_grad()`.
    """
    import torch

    acc = VideoAccumulator()
    with torch.no_grad():
        for i, batch in enumerate(batches):
            for key in ("label", "video_index") + ((input_key,) if input_key is not None else ()):
                if key not in batch:
                    raise KeyError(f"batch {i} lacks key {key!r} (has {sorted(batch)})")
            out = as_numpy(feature_fn(batch if input_key is None else batch[input_key]))
            labels = as_numpy(batch["label"]).astype(np.int64)
            if out.ndim != 2 or len(out) != len(labels):
                raise ValueError(f"feature_fn returned shape {out.shape} for a batch of {len(labels)}")
            try:
                acc.add(out.astype(np.float32), as_numpy(batch["video_index"]).astype(np.int64), labels)
            except ValueError as e:
                raise ValueError(f"split {split!r}: {e}") from e
            del batch, out
    if not len(acc):
        raise ValueError(f"split {split!r}: the loader yielded no batches")
    return feature_set(acc, split, video_ids)


def feature_set(acc: VideoAccumulator, split: str, video_ids: Mapping[int, str] | None = None) -> FeatureSet:
    """The `FeatureSet` of per-video mean features accumulated batch by batch (`VideoAccumulator`)."""
    if not len(acc):
        raise ValueError(f"split {split!r}: no clips")
    ids = [video_ids[int(u)] if video_ids is not None else str(int(u)) for u in acc.ids()]
    clips = acc.counts()
    attrs = {"clips_per_video_min": int(clips.min()), "clips_per_video_max": int(clips.max())}
    return FeatureSet(acc.means().astype(np.float32), acc.labels(), ids, split, attrs)
