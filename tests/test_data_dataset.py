"""ClipDataset / EvalClipDataset over a tiny contract store whose pixels encode their frame index."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from train.data import ClipDataset, ClipSpec, EvalClipDataset, ShardLocalSampler
from train.data.fakestore import fake_keypoints, fake_main_actor, write_fake_store

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return write_fake_store(tmp_path_factory.mktemp("data_ds") / "fake.zarr")


def test_shapes_and_dtypes(store):
    ds = ClipDataset(store, split="train", spec=ClipSpec(frames=16, stride=4, future_frames=16, max_iframes=4))
    s = ds[(0, 123)]
    expect = {
        "clip": ((16, 128, 171, 3), torch.uint8), "future_clip": ((16, 128, 171, 3), torch.uint8),
        "frame_indices": ((32,), torch.int64), "pose": ((16, 17, 3), torch.float32),
        "future_pose": ((16, 17, 3), torch.float32), "pose_mask": ((16, 17), torch.bool),
        "future_pose_mask": ((16, 17), torch.bool), "iframes": ((4, 128, 171, 3), torch.uint8),
        "iframe_mask": ((4,), torch.bool), "iframe_fallback": ((), torch.bool), "label": ((), torch.int64),
        "video_index": ((), torch.int64),
    }
    for key, (shape, dtype) in expect.items():
        assert tuple(s[key].shape) == shape and s[key].dtype == dtype, key


def test_frames_follow_stride_and_future_follows_clip(store):
    ds = ClipDataset(store, split="train")
    for seed in range(5):
        s = ds[(1, seed)]
        idx = s["frame_indices"].numpy()
        assert np.all(np.diff(idx) == 4) and not bool(s["short_video"])  # clip and future: one stride-4 run
        pixels = np.concatenate([s["clip"][:, 0, 0, 0].numpy(), s["future_clip"][:, 0, 0, 0].numpy()])
        assert (pixels == idx % 256).all()  # the frames really are those indices
        assert (s["clip"][:, 3, 7, 1] == 1).all() and int(s["video_index"]) == 1 and int(s["label"]) == 1
    assert ds[(1, 7)]["frame_indices"].tolist() == ds[(1, 7)]["frame_indices"].tolist()  # seed -> same sample


def test_iframes_are_exactly_those_in_the_window(store):
    ds = ClipDataset(store, split="train", spec=ClipSpec(max_iframes=8))
    seen_counts = set()
    for seed in range(12):
        s = ds[(0, seed)]
        start = int(s["frame_indices"][0])
        expected = [f for f in range(0, 150, 12) if start <= f < start + 64]
        got = s["iframe_indices"][s["iframe_mask"]].tolist()
        assert got == expected and int(s["num_iframes_in_window"]) == len(expected)
        assert not bool(s["iframe_fallback"])
        imgs = s["iframes"][s["iframe_mask"]]
        assert imgs[:, 0, 0, 0].tolist() == [f % 256 for f in expected]  # the images are those frames
        assert (s["iframes"][~s["iframe_mask"]] == 0).all()  # padding is masked
        seen_counts.add(len(expected))
    assert seen_counts <= {5, 6}


def test_iframe_fallback_is_flagged(store):
    spec = ClipSpec(frames=4, stride=2, future_frames=4, max_iframes=3)
    ds = ClipDataset(store, split="train", spec=spec)
    s = ds.load(2, 20)  # video 2 has a single I-frame at 0; window [20, 28) holds none
    assert bool(s["iframe_fallback"]) and int(s["num_iframes_in_window"]) == 0
    assert s["iframe_mask"].tolist() == [True, False, False] and int(s["iframe_indices"][0]) == 0
    assert int(s["iframes"][0, 0, 0, 0]) == 0


def test_short_video_loops_or_pads_never_zeros(store):
    ds = ClipDataset(store, split="train")  # video 2 has 40 frames < 125-frame span
    s = ds.load(2, 30)
    idx = s["frame_indices"].numpy()
    assert bool(s["short_video"]) and idx.tolist() == [(30 + 4 * k) % 40 for k in range(32)]
    assert (s["clip"][:, 0, 0, 0].numpy() == idx[:16]).all() and (s["clip"][:, 0, 0, 1] == 2).all()
    pad = ClipDataset(store, split="train", spec=ClipSpec(short_video="pad"))
    s = pad.load(2, 0)
    assert s["frame_indices"].max() == 39 and (s["future_clip"][-1, 0, 0, 0] == 39)


def test_pose_is_the_main_actor_with_observed_mask(store):
    ds = ClipDataset(store, split="train", spec=ClipSpec(pose_max_gap=0))
    for seed in range(6):
        s = ds[(0, seed)]
        idx = s["frame_indices"].numpy()
        kp = fake_keypoints(0, idx, 2)
        ma = fake_main_actor(idx)
        pose = torch.cat([s["pose"], s["future_pose"]]).numpy()
        mask = torch.cat([s["pose_mask"], s["future_pose_mask"]]).numpy()
        for t in range(len(idx)):
            for j in range(17):
                observed = ma[t] >= 0 and not (j == 3 and idx[t] % 7 == 3)
                assert mask[t, j] == observed
                if observed:
                    np.testing.assert_allclose(pose[t, j], kp[t, ma[t], j], atol=2e-3)
                else:
                    assert (pose[t, j] == 0).all()


def test_eval_clips_deterministic_and_spread(store):
    ds = EvalClipDataset(store, split="test", spec=ClipSpec(future_frames=0), num_clips=10)
    assert len(ds) == 20
    starts = [int(ds[i]["frame_indices"][0]) for i in range(10)]
    assert starts[0] == 0 and starts[-1] == 160 - 61 and starts == sorted(starts)
    assert [int(ds[i]["clip_index"]) for i in range(10)] == list(range(10))
    assert int(ds[10]["video_index"]) == 5
    assert ds[3]["frame_indices"].tolist() == ds[3]["frame_indices"].tolist()


@pytest.mark.filterwarnings("ignore:.*pin_memory")
def test_dataloader_workers_persistent_pinned(store):
    ds = ClipDataset(store, split="train", spec=ClipSpec(frames=4, future_frames=4, max_iframes=2))
    sampler = ShardLocalSampler(ds, num_replicas=1, rank=0, seed=3)
    loader = DataLoader(ds, batch_size=2, sampler=sampler, num_workers=2, persistent_workers=True,
                        pin_memory=True, multiprocessing_context="fork")
    for epoch in range(2):
        sampler.set_epoch(epoch)
        batches = list(loader)
        vids = torch.cat([b["video_index"] for b in batches]).tolist()
        assert sorted(vids) == [0, 1, 2]
        assert batches[0]["clip"].shape[1:] == (4, 128, 171, 3)


def test_dataset_pickles_and_runs_in_spawned_worker(store):
    import pickle

    ds = ClipDataset(store, split="train", spec=ClipSpec(frames=4, future_frames=4, max_iframes=2))
    a = ds[(1, 42)]
    ds2 = pickle.loads(pickle.dumps(ds))
    b = ds2[(1, 42)]
    assert all(torch.equal(a[k], b[k]) for k in a)
    loader = DataLoader(ds, batch_size=3, sampler=ShardLocalSampler(ds, num_replicas=1, rank=0, seed=1),
                        num_workers=1, multiprocessing_context="spawn")
    (batch,) = list(loader)
    assert sorted(batch["video_index"].tolist()) == [0, 1, 2]
