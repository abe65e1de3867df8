"""The loader over the real preprocessing pipeline's output (conftest `synthetic_store`)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from csvr.train.data import ClipAugment, ClipDataset, ClipSpec, EvalClipDataset, ShardLocalSampler, StoreReader

torch.set_num_threads(1)
SPEC = ClipSpec(frames=8, stride=2, future_frames=8, max_iframes=4)


@pytest.mark.slow
def test_direct_reads_equal_zarr_on_every_array(synthetic_store):
    fast, slow = StoreReader(synthetic_store), StoreReader(synthetic_store, direct=False)
    rng = np.random.default_rng(0)
    for name in ("frames", "poses/keypoints", "poses/boxes", "poses/main_actor", "iframes/images",
                 "iframes/frame_index"):
        n = slow.array(name).shape[0]
        rows = rng.integers(0, n, 12)
        assert np.array_equal(fast.read_rows(name, rows), slow.read_rows(name, rows)), name
        assert fast.direct_reader(name) is not None, f"{name}: the pipeline's layout should be read directly"


@pytest.mark.slow
def test_samples_from_pipeline_store(synthetic_store):
    reader = StoreReader(synthetic_store)
    frames = reader.array("frames")
    ds = ClipDataset(reader, split="train", spec=SPEC)
    for seed in range(4):
        s = ds[(seed % len(ds), seed)]
        v = int(s["video_index"])
        start, n = reader.video_rows(v)
        idx = s["frame_indices"].numpy()
        assert np.array_equal(s["clip"].numpy(), frames.oindex[np.sort(start + idx[:8])][np.argsort(np.argsort(idx[:8]))])
        if not bool(s["short_video"]):
            assert np.all(np.diff(idx) == 2)
        _, if_index = reader.video_iframes(v)
        window = set(range(int(idx[0]), int(idx[0]) + 16)) if not bool(s["short_video"]) else None
        if window is not None:
            expected = [int(f) for f in if_index if f in window][:4]
            got = s["iframe_indices"][s["iframe_mask"]].tolist()
            assert (got == expected) if expected else (bool(s["iframe_fallback"]) and len(got) == 1)
        assert s["pose_mask"].float().mean() > 0.5  # ground-truth poses: the actor is observed
    batch = next(iter(DataLoader(ds, batch_size=2, sampler=ShardLocalSampler(ds, num_replicas=1, rank=0))))
    out = ClipAugment(crop=112)(batch, generator=torch.Generator().manual_seed(0))
    assert out["clip"].shape == (2, 3, 8, 112, 112) and out["iframes"].shape == (2, 4, 3, 112, 112)
    ev = EvalClipDataset(reader, split="test", spec=SPEC, num_clips=10)
    assert len(ev) == 10 * len(ev.videos) and int(ev[9]["clip_index"]) == 9
