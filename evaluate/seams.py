"""Where evaluation meets the trainer and the loader: building `EvalComponents` from a run + store.

Connected here (store side, read with zarr per docs/contracts.md section 4): class names, video ids,
one display frame per video, class groups, eval batches over `train.data.EvalClipDataset`.
NOT yet connected (marked `SEAM`): turning a checkpoint into the callables `classify`, `features`
and `pretext` -- that needs the trainer's model construction and checkpoint layout (issue 6). Until
the lead connects them, `load_model_callables` raises `SeamNotConnected` naming what is missing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


class SeamNotConnected(RuntimeError):
    """A part of the evaluation that needs code from another stage which is not wired in yet."""


class StoreInfo:
    """The little evaluation needs from a `csvr-store/1` store, read with zarr directly."""

    def __init__(self, path: str | Path, allow_incomplete: bool = False) -> None:
        import zarr

        self.path = str(path)
        try:
            self.root = zarr.open_group(self.path, mode="r")
        except Exception as e:  # noqa: BLE001 - zarr raises several types; the message names the store
            raise ValueError(f"{self.path}: cannot open as a Zarr store ({e})") from e
        attrs = dict(self.root.attrs)
        if attrs.get("schema") != "csvr-store/1":
            raise ValueError(f"{self.path}: unknown store schema {attrs.get('schema')!r} (expected 'csvr-store/1')")
        if not attrs.get("complete", False) and not allow_incomplete:
            raise ValueError(f"{self.path}: store is incomplete (preprocessing did not finish)")
        self.attrs = attrs
        self.classes: list[str] = [str(c) for c in attrs.get("classes", [])]
        self.ids: list[str] = [str(v) for v in self.root["videos/id"][...]]
        self._frame_start = np.asarray(self.root["videos/frame_start"][...], dtype=np.int64)
        self._num_frames = np.asarray(self.root["videos/num_frames"][...], dtype=np.int64)

    def middle_frame(self, split: str, video_index: int) -> np.ndarray:
        """One (H, W, 3) uint8 frame (the middle one) of video-table row `video_index`; `split` unused
        (rows index the whole table), kept for the `EvalComponents.video_frame` signature."""
        n = int(self._num_frames[video_index])
        if n <= 0:
            raise ValueError(f"{self.path}: video {self.ids[video_index]} has no stored frames")
        return np.asarray(self.root["frames"][int(self._frame_start[video_index]) + n // 2])

    def class_groups(self, groups_file: str | Path | None = None) -> dict[str, str] | None:
        """Class -> motion|context|both from `groups_file`, else from `synthetic.json` in a dataset root
        recorded in the store attrs (`source_root`, `root` or `options.root`); None when unknown (UCF101)."""
        from evaluate.report import load_class_groups

        if groups_file is not None:
            return load_class_groups(groups_file)
        candidates = [self.attrs.get("source_root"), self.attrs.get("root"), (self.attrs.get("options") or {}).get("root")]
        for root in candidates:
            if root and (Path(root) / "synthetic.json").is_file():
                return load_class_groups(Path(root) / "synthetic.json")
        return None


def eval_batches(
    store: str | Path,
    split: str,
    *,
    num_clips: int = 10,
    batch_size: int = 16,
    device: str = "cpu",
    split_index: int = 1,
    num_workers: int = 0,
    spec: Any | None = None,
) -> Callable[[], Iterable[Mapping[str, Any]]]:
    """A factory of eval batches: `num_clips` clips per video of `split`, centre-cropped and
    normalised by `ClipAugment(train=False)` (docs/contracts.md section 7)."""
    try:
        from torch.utils.data import DataLoader

        from train.data import ClipAugment, EvalClipDataset  # SEAM: the loader issue's public API
    except ImportError as e:
        raise SeamNotConnected(f"train.data does not provide EvalClipDataset/ClipAugment yet ({e})") from e

    ds = EvalClipDataset(store, split=split, split_index=split_index, num_clips=num_clips,
                         **({"spec": spec} if spec is not None else {}))
    augment = ClipAugment(crop=112, train=False)

    def batches() -> Iterable[Mapping[str, Any]]:
        loader = DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=num_workers)
        for batch in loader:
            batch = {k: (v.to(device) if hasattr(v, "to") else v) for k, v in batch.items()}
            yield augment(batch)

    return batches


def load_model_callables(
    pretrain_run: str | Path | None, finetune_run: str | Path | None, device: str = "cpu"
) -> dict[str, Callable[..., Any] | None]:
    """SEAM (issue 6): build the evaluation callables from checkpoints.

    Must return {"classify": batch -> logits (B, C) (fine-tuned model from `finetune_run`; e.g.
                              `DownstreamNet(batch["clip"], batch["pose"])`),
                 "features": batch -> pooled V-network features (B, D) (pretrained, from `pretrain_run`;
                              e.g. `CSVRModel.vnet.forward_pooled(batch["clip"])`),
                 "pretext": batch -> dict with `evaluate.pipeline.PRETEXT_KEYS` (pretrained model)},
    any of them None when its run is not given. See docs/evaluation.md, "Connecting the trainer".
    """
    raise SeamNotConnected(
        "evaluate.seams.load_model_callables is not connected to the trainer yet: it needs the "
        "model construction and checkpoint layout of train/ (issue 6). Use `csvr evaluate report` "
        "on a run folder that already has metrics.json, or `csvr evaluate retrieval` on a features file."
    )
